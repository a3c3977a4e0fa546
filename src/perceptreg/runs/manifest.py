"""The checkpoint's manifest and the model's metadata: state.json and model.json.

state.json is the commit point of a run of `train`: it names the epoch's
``state-``/``model-NNNNNN.safetensors`` with their SHA-256, and holds the model's metadata
(what model.json publishes). Readers trust only the files it names, checked against their
digests: a reader during training sees the last complete epoch.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from perceptreg.data import digest_of
from perceptreg.runs.files import CONFIG, MODEL, MODEL_META, STATE, STATE_META
from perceptreg.storage import fileio
from perceptreg.storage.fileio import CheckpointError
from perceptreg.storage.schema import Sealed, load_model_file, load_sealed_file

DAMAGED = "the run's files are damaged: restore them, or train the run again"


class ModelFile(BaseModel):
    """model.json (and the "model" entry of state.json): what built the run's model."""
    model_config = ConfigDict(extra="allow")
    format: str
    num_classes: int = Field(ge=1, le=100_000)  # a classifier's head is allocated from it
    input_shape: tuple[int, int, int]
    classes: list[str] = Field(min_length=1)
    sha256: str | None = None


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
    """state.json: the checkpoint's commit point, sealed (``schema.Sealed``; runs written before the seal have none).
    A key it does not know is refused (a misspelt one would be read as its default)."""
    model_config = ConfigDict(extra="forbid")
    epoch: int = Field(ge=0)
    world_size: int = Field(default=1, ge=1)
    optimizer: dict  # checked as OptimizerMeta where it is read back (``writing.load_state``)
    scaler: dict | None = None
    files: ManifestFiles | None = None  # runs written before the manifest have none
    sha256: dict[str, str] = {}
    model: ModelFile | None = None


def read_state(run_dir: Path) -> dict | None:
    """state.json, validated and checked against its own checksum (``schema.sealed``); None
    before the first checkpoint (and in runs of `attach`)."""
    path = Path(run_dir) / STATE_META
    return load_sealed_file(path, StateFile, DAMAGED) if path.exists() else None


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
    return load_model_file(path, ModelFile, DAMAGED) if path.exists() else None


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
