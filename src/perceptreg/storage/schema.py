"""Files we read, checked against a schema: a bad file is one line naming it and the field.

    meta = load_model_file(path, MemmapMeta, "write the dataset again")

Each file format declares its fields as a pydantic model next to the code that writes it;
this module turns pydantic's report into the project's one-line ``PerceptregError``.
A file that names others by their SHA-256 (state.json, a direction's JSON), and every
results file a command writes and another reads back (attack, noise and interpolation
metrics, layers.json, sweep.json, pixel_probes.json), is ``sealed``: ``write_sealed`` adds
the SHA-256 of its own content, ``load_sealed_file`` checks it, so a flipped bit is named
in the file it is in (not in the file whose recorded digest it changed, nor read as a number).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_serializer

from perceptreg.storage.fileio import CheckpointError, read_json, write_json
from perceptreg.storage.version import code_version

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


class Sealed(BaseModel):
    """The schema of a sealed file declares its checksum through this base."""
    checksum: str | None = Field(default=None, pattern=SHA256)  # files written before the seal have none
    code_version: str | None = None  # the code that wrote it (version.code_version); older files have none

    @model_serializer(mode="wrap")
    def _as_written(self, handler):
        """An older file without the code's version reads back as it was written: without the key."""
        values = handler(self)
        if values.get("code_version", "") is None:
            del values["code_version"]
        return values


def settings_record(cls, required: tuple[str, ...], **more) -> type[BaseModel]:
    """The schema of a settings dataclass ``cls`` as a results file records it, to read by
    attribute without running ``cls``'s checks of this machine (its cores, its devices): each
    field of ``cls`` with its type, required when named in ``required`` (the fields every file
    written so far holds), a field added since with its default (so those files still open);
    ``more``: fields beside them, or in place of them with a range, as pydantic's (type,
    default); no other key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: (hints[f.name], ... if f.name in required else f.default) for f in dataclasses.fields(cls)}
    return create_model(f"{cls.__name__}Record", __config__=ConfigDict(extra="forbid", frozen=True), **(fields | more))


def sealed(values: dict) -> dict:
    """``values`` with the version of the code writing it (``version.code_version``) and the
    SHA-256 of its own content as "checksum" (what ``load_sealed_file`` checks). Taken of the
    values as JSON gives them back (tuples as lists, keys as strings), so that the file read
    back has the digest it was written with."""
    stamp = code_version()
    values = json.loads(json.dumps({**values, "code_version": stamp} if stamp else values))
    return {**values, "checksum": _digest(values)}


def write_sealed(path: Path, values: dict) -> None:
    """``values`` written atomically to ``path`` as sealed JSON: the one writer of a sealed file."""
    write_json(path, sealed(values))


def _digest(values: dict) -> str:
    content = {k: v for k, v in values.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_sealed_file(path: Path, schema: type[BaseModel], fix: str) -> dict:
    """``load_model_file`` for a sealed file: also its content against its checksum (files
    written before the seal have none, and are read as they are; ``schema`` is a ``Sealed``)."""
    if not Path(path).exists():
        raise CheckpointError(f"{path} is missing; {fix}")
    raw = read_json(path)
    values = validated(raw, schema, path, fix)  # what is wrong, named, before that something is
    if values["checksum"] is not None and values["checksum"] != _digest(raw):
        raise CheckpointError(f"{path}: its content differs from its checksum; the file is damaged: {fix}")
    return values
