"""Files we read, checked against a schema: a bad file is one line naming it and the field.

    meta = load_model_file(path, MemmapMeta, "write the dataset again")

Each file format declares its fields as a pydantic model next to the code that writes it;
this module turns pydantic's report into the project's one-line ``PerceptregError``.
A file that names others by their SHA-256 (state.json, a direction's JSON) is ``sealed``:
it carries the SHA-256 of its own content, so a flipped bit in it is blamed on it, not on
the file whose recorded digest it changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from perceptreg.core.checkpoint import CheckpointError, read_json

SHA256 = r"^[0-9a-f]{64}$"  # a hex SHA-256, as a field's pattern


def describe(error: ValidationError) -> str:
    """pydantic's first complaint as "field a.b: what is wrong (got X)"."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the top level"
    got = repr(first.get("input"))
    return f"field {where}: {first['msg'].lower()} (got {got[:40]})"


def load_model_file(path: Path, schema: type[BaseModel], fix: str) -> dict:
    """The JSON file at ``path`` as a dict, validated by ``schema``; else an error saying ``fix``."""
    if not Path(path).exists():
        raise CheckpointError(f"{path} is missing; {fix}")
    return validated(read_json(path), schema, path, fix)


def validated(raw, schema: type[BaseModel], path: Path, fix: str) -> dict:
    """``raw`` (read from ``path``) checked by ``schema``, as a dict; else an error saying ``fix``."""
    try:
        return schema.model_validate(raw).model_dump()
    except ValidationError as err:
        raise CheckpointError(f"{path}: {describe(err)}; {fix}") from err


def sealed(values: dict) -> dict:
    """``values`` with the SHA-256 of its own content as "checksum" (what ``load_sealed_file`` checks)."""
    return {**values, "checksum": _digest(values)}


def _digest(values: dict) -> str:
    content = {k: v for k, v in values.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_sealed_file(path: Path, schema: type[BaseModel], fix: str) -> dict:
    """``load_model_file`` for a sealed file: also its content against its checksum (files
    written before the seal have none; ``schema`` declares "checksum")."""
    if not Path(path).exists():
        raise CheckpointError(f"{path} is missing; {fix}")
    raw = read_json(path)
    values = validated(raw, schema, path, fix)  # what is wrong, named, before that something is
    if values["checksum"] is not None and values["checksum"] != _digest(raw):
        raise CheckpointError(f"{path}: its content differs from its checksum; the file is damaged: {fix}")
    return values
