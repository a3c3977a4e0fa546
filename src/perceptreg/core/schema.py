"""Files we read, checked against a schema: a bad file is one line naming it and the field.

    meta = load_model_file(path, MemmapMeta, "write the dataset again")

Each file format declares its fields as a pydantic model next to the code that writes it;
this module turns pydantic's report into the project's one-line ``PerceptregError``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from perceptreg.core.checkpoint import CheckpointError, read_json


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
