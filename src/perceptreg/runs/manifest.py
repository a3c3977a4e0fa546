"""The checkpoint's manifest and the model's metadata: state.json and model.json.

state.json is the commit point of a run of `train`: it names the epoch's
``state-``/``model-NNNNNN.safetensors`` with their SHA-256, and holds the model's metadata
(what model.json publishes). Readers trust only the files it names, checked against their
digests: a reader during training sees the last complete epoch.

Format 2 of state.json (``STATE_FORMAT``, since issue 38) must carry its checksum and the
digest of metrics.jsonl as committed (``files.metrics_digest``). A state.json without
"format" was written before (main f9ee0de and older): still read, its checksum still
required; its metrics.jsonl, unsealed, must still hold one row per committed epoch
(``committed_metrics``). model.json of both kinds (``TrainedModelFile``,
``AttachedModelFile``) refuses a key it does not know and values out of range.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from perceptreg.core.config import ATTACH_MODES, MAX_EPOCHS, MAX_LAYERS, MAX_SIDE, MODES
from perceptreg.data import digest_of
from perceptreg.runs.files import (
    ATTACHED_FORMAT,
    CONFIG,
    METRICS,
    MODEL,
    MODEL_FORMAT,
    MODEL_META,
    STATE,
    STATE_META,
    metrics_digest,
    read_metrics,
)
from perceptreg.storage import fileio
from perceptreg.storage.fileio import CheckpointError
from perceptreg.storage.schema import SHA256, Sealed, load_sealed_file, validated

DAMAGED = "the run's files are damaged: restore them, or train the run again"
STATE_FORMAT = "perceptreg.state/2"
MAX_CLASSES = 100_000  # a classifier's head is allocated from it
# strict: "2" or 1e30 is no epoch; bounded: a shape is allocated (a forward pass of one image)
Side = Annotated[int, Field(strict=True, ge=1, le=MAX_SIDE)]
Size = Annotated[int, Field(strict=True, ge=1, le=2**31)]  # of an activation's dimension
Epoch = Annotated[int, Field(strict=True, ge=0, le=2 * MAX_EPOCHS)]  # epochs + decoder_epochs
Digest = Annotated[str, Field(pattern=SHA256)]


class _ModelFile(BaseModel):
    """What model.json of both kinds holds: what built the run's model."""
    model_config = ConfigDict(extra="forbid")
    format: str  # which of the two (a Literal in each)
    num_classes: int = Field(strict=True, ge=1, le=MAX_CLASSES)
    input_shape: tuple[Side, Side, Side]
    classes: list[str] = Field(min_length=1, max_length=MAX_CLASSES)
    dataset: str
    versions: dict[str, str]
    sha256: Digest | None = None  # in model.json: of model.safetensors (state.json's entry has none)

    @model_validator(mode="after")
    def _one_name_per_class(self):
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names for num_classes {self.num_classes}")
        return self


class TrainedModelFile(_ModelFile):
    """model.json of a run of `train` (and the "model" entry of its state.json)."""
    format: Literal[MODEL_FORMAT]  # type: ignore[valid-type]
    arch: str
    latent_shape: list[Size] = Field(min_length=1, max_length=4)
    lam: float = Field(ge=0)
    mode: Literal[MODES]  # type: ignore[valid-type]
    decoder_loss: str = "pixel (the paper's)"  # DecoderLoss.describe(); runs written before it have none
    epoch: Epoch
    metrics: dict[str, float | int | str | bool | None]  # the epoch's row of metrics.jsonl


class AttachedModelFile(_ModelFile):
    """model.json of a run of `attach`: the layers seen, and each one's activation shape."""
    format: Literal[ATTACHED_FORMAT]  # type: ignore[valid-type]
    layers: list[str] = Field(min_length=1, max_length=MAX_LAYERS)
    mode: Literal[ATTACH_MODES]  # type: ignore[valid-type]
    activation_shapes: dict[str, list[Size]]
    metrics_sha256: Digest | None = None  # of metrics.jsonl (runs written before issue 38 have none)

    @model_validator(mode="after")
    def _a_shape_per_layer(self):
        if len(set(self.layers)) != len(self.layers) or set(self.activation_shapes) != set(self.layers):
            raise ValueError(f"layers {self.layers} and activation_shapes {sorted(self.activation_shapes)} must "
                             f"name the same layers, once each")
        return self


class OptimizerMeta(BaseModel):
    """The optimizer's JSON half (its tensors are in the state file): ``checkpoint.flatten_optimizer``."""
    model_config = ConfigDict(extra="forbid")
    param_groups: list[dict] = Field(min_length=1)
    scalars: dict[str, float | int | bool | None]


class ManifestFiles(BaseModel):
    """The epoch's two files, by plain name inside the run folder."""
    model_config = ConfigDict(extra="forbid")
    state: str = Field(pattern=r"^[\w.-]+\.safetensors$")
    model: str = Field(pattern=r"^[\w.-]+\.safetensors$")


class StateFile(Sealed):
    """state.json: the checkpoint's commit point, sealed (``schema.Sealed``), its checksum
    required. A key it does not know is refused (a misspelt one would be read as its default)."""
    model_config = ConfigDict(extra="forbid")
    format: Literal[STATE_FORMAT] | None = None  # type: ignore[valid-type]  # None: before issue 38
    checksum: Digest  # required: a state.json without one would be trusted as it is
    epoch: Epoch
    world_size: int = Field(default=1, strict=True, ge=1, le=2**16)
    optimizer: dict  # checked as OptimizerMeta where it is read back (``writing.load_state``)
    scaler: dict | None = None
    files: ManifestFiles | None = None  # runs written before the manifest have none
    sha256: dict[str, Digest] = {}
    model: TrainedModelFile | None = None
    metrics_sha256: Digest | None = None  # of metrics.jsonl's rows as committed (``files.metrics_digest``)

    @model_validator(mode="after")
    def _format_2_is_complete(self):
        if self.format is not None and None in (self.files, self.model, self.metrics_sha256):
            raise ValueError(f"a state.json of format {self.format} names its files, its model and the "
                             f"digest of {METRICS}")
        return self


def read_state(run_dir: Path) -> dict | None:
    """state.json, validated and checked against its own checksum (``schema.sealed``); None
    before the first checkpoint (and in runs of `attach`)."""
    path = Path(run_dir) / STATE_META
    return load_sealed_file(path, StateFile, DAMAGED) if os.path.lexists(path) else None


def completed_epochs(run_dir: Path) -> int:
    """The last epoch whose checkpoint was written (0 if none): what a resume starts after."""
    state = read_state(run_dir)
    return state["epoch"] if state is not None else 0


def has_manifest(state: dict | None) -> bool:
    """Whether state.json names the checkpoint's files (runs of `train` since the manifest)."""
    return state is not None and state["files"] is not None


def model_meta(run_dir: Path, state: dict | None) -> dict | None:
    """What built the run's model: the manifest's entry when there is one, else model.json
    (None when neither exists: no model yet)."""
    if has_manifest(state) and state["model"] is not None:
        return state["model"]
    path = Path(run_dir) / MODEL_META
    if not os.path.lexists(path):  # a link to nowhere is read: the reader names it
        return None
    raw = fileio.read_json(path)
    attached = isinstance(raw, dict) and raw.get("format") == ATTACHED_FORMAT
    return validated(raw, AttachedModelFile if attached else TrainedModelFile, path, DAMAGED)


def committed_metrics(run_dir: Path, state: dict | None, meta: dict | None) -> list[dict]:
    """The rows of metrics.jsonl that the run committed, checked: of a run of `train`, the
    rows up to state.json's epoch, one per epoch, against the digest state.json records
    (format 2; an older state.json records none: its rows are read as they are); of a run of
    `attach`, every row, against model.json's digest. Missing, empty, cut or edited is an
    error naming the file, never a history silently shorter. Rows after the committed epoch
    (a kill between a row and its checkpoint) are left out."""
    path = Path(run_dir) / METRICS
    epochs = state["epoch"] if state is not None else None
    digest = state.get("metrics_sha256") if state is not None else (meta or {}).get("metrics_sha256")
    recorded_in = Path(run_dir) / (STATE_META if state is not None else MODEL_META)
    if not os.path.lexists(path):  # a link to nowhere, or to itself, is read: the reader names it
        if digest is None and not epochs:
            return []  # nothing committed, or an old attach run
        if digest != metrics_digest([]):
            raise CheckpointError(f"{path} is missing; {recorded_in} records its rows: restore it, or train the "
                                  f"run again")
        return []
    rows = read_metrics(run_dir)
    if epochs is not None:
        rows = [row for row in rows if row["epoch"] <= epochs]
        if [row["epoch"] for row in rows] != list(range(1, epochs + 1)):
            raise CheckpointError(f"{path}: rows of epochs {_span([row['epoch'] for row in rows])}, but "
                                  f"{recorded_in} committed epochs 1..{epochs} (the file was cut, emptied or "
                                  f"edited); restore it, or train the run again")
    if digest is not None and metrics_digest(rows) != digest:
        raise CheckpointError(f"{path}: its rows differ from the digest {recorded_in} records (edited or "
                              f"damaged); restore it, or train the run again")
    return rows


def _span(epochs: list[int]) -> str:
    return "none" if not epochs else ", ".join(map(str, epochs[:5])) + (", ..." if len(epochs) > 5 else "")


def check_arch(run_dir: Path, config_arch: str, meta: dict | None, recorded_in: str) -> None:
    """config.json's arch is the one its model was built with (``meta``, read from
    ``recorded_in``): else the config was damaged, and it is named."""
    if meta is not None and meta.get("arch") is not None and meta["arch"] != config_arch:
        raise CheckpointError(f"{Path(run_dir) / CONFIG}: setting arch: {config_arch!r}, but the model in "
                              f"{recorded_in} is a {meta['arch']!r}; correct config.json, or train the run again")


def verified(path: Path, expected: str | None, recorded_in: Path) -> Path:
    """``path``, if its SHA-256 is the one recorded (safetensors files carry no checksum)."""
    if not path.exists():
        raise CheckpointError(f"{path} is missing; {recorded_in} names it: restore it or train again")
    fileio.guarded(path, folder=recorded_in.parent)  # a name read from a file stays in its folder
    if expected is not None and digest_of(path) != expected:
        raise CheckpointError(f"{path}: its SHA-256 differs from the one in {recorded_in}; the file is "
                              f"damaged: restore it or train again")
    return path


def model_file(run_dir: Path, state: dict | None, meta: dict | None) -> Path:
    """The run's model weights, checked against their recorded SHA-256."""
    return _checkpoint_file(Path(run_dir), "model", state, (meta or {}).get("sha256"))


def state_file(run_dir: Path, state: dict | None) -> Path:
    """The tensors to resume from (weights, optimizer, RNG), checked against their SHA-256."""
    return _checkpoint_file(Path(run_dir), "state", state, None)


def _checkpoint_file(run_dir: Path, kind: str, state: dict | None, unversioned_digest: str | None) -> Path:
    if has_manifest(state):
        name = state["files"][kind]
        return verified(run_dir / name, state["sha256"].get(name), run_dir / STATE_META)
    unversioned, recorded_in = (MODEL, MODEL_META) if kind == "model" else (STATE, STATE_META)
    return verified(run_dir / unversioned, unversioned_digest, run_dir / recorded_in)
