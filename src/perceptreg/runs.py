"""The run folder: its files, how they are written after each epoch, and how they are read.

    config = load_config("runs/demo"); model = load_model("runs/demo")
    train_data, test_data = load_data("runs/demo"); rows = read_metrics("runs/demo")

A run folder holds ``config.json`` (the resolved TrainConfig), ``metrics.jsonl`` (one line
per epoch), ``state.json`` (the commit point: the epoch's ``state-``/``model-NNNNNN.safetensors``
with their SHA-256) and ``model.safetensors`` + ``model.json`` (the model, published). Commands
add their outputs under the names below. This module is the one place that knows them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import warnings
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from perceptreg import checkpoint, models
from perceptreg import data as datasets
from perceptreg.checkpoint import CheckpointError
from perceptreg.config import AttachConfig, TrainConfig
from perceptreg.devices import resolve_device
from perceptreg.errors import PerceptregError
from perceptreg.schema import load_model_file

# --- file names ---------------------------------------------------------------------------------
CONFIG = "config.json"
METRICS = "metrics.jsonl"
MODEL = "model.safetensors"
MODEL_META = "model.json"
STATE = "state.safetensors"
STATE_META = "state.json"
MODEL_FORMAT = "perceptreg.model/1"
ATTACHED_FORMAT = "perceptreg.attached/1"  # a user's model with decoders on its layers
# what the commands write into a run folder
PERCEPTION = "perception.png"
TRAINING_CURVES = "training_curves.png"
REPORT = "report.html"
ATTACK = "attack.png"
ATTACK_FROM_NOISE = "attack_from_noise.png"
ATTACK_METRICS = "attack_metrics.json"
NOISE_METRICS = "noise_metrics.json"  # attack --from-noise: how often noise reached its target
ATTACK_ROC = "attack_roc.png"
INTERPOLATION_METRICS = "interpolation_metrics.json"
INTERPOLATION_FLIP = "interpolation_flip.png"
INTERPOLATION_CHANGE = "interpolation_change.png"
INTERPOLATION_GRID = "interpolation_{kind}.png"  # kind: per-image, mean
LAYERS_JSON = "layers.json"  # an attach run's measures per layer
LAYERS_PNG = "layers.png"  # x, then P at each layer
LAYERS_ATTACK_PNG = "layers_attack.png"  # x, x_adv, then P_layer(x_adv) at each layer
# a sweep folder
SWEEP_CONFIG = "sweep_config.json"
SWEEP_JSON = "sweep.json"
PIXEL_PROBES = "pixel_probes.json"  # the raw-pixel reference probes, fitted once per data
SWEEP_MD = "sweep.md"
SWEEP_PERCEPTION = "sweep_perception.png"
SWEEP_ATTENTION = "sweep_attention.png"
SWEEP_PROBES = "sweep_probes.png"


# --- starting, writing, resuming ------------------------------------------------------------------

def prepare(run_dir: Path, config: TrainConfig, resume: bool) -> None:
    """Check that ``run_dir`` may be (re)started with ``config`` and write its config.json.

    A folder holds a run once its first checkpoint is written; one killed before that (a
    config and perhaps a metrics line) is started over, resumed or not."""
    started = completed_epochs(run_dir) > 0
    if resume and not (run_dir / CONFIG).exists():
        raise PerceptregError(f"{run_dir}: no run to resume here; start it with `resume` off")
    if resume:
        saved = load_config(run_dir)
        # Only the length of training and the device may change on resume; in post-hoc mode
        # `epochs` is where the decoder phase begins, fixed once the run has started.
        free = {"decoder_epochs", "device"} | ({"epochs"} if config.mode == "joint" else set())
        changed = [k for k, v in saved.to_dict().items() if k not in free and v != getattr(config, k)]
        if changed:
            raise PerceptregError(f"{run_dir}: cannot resume with a different {', '.join(changed)} "
                                  f"than the run was started with")
        if not started:
            warnings.warn(f"{run_dir} was stopped before its first checkpoint: it starts over at epoch 1",
                          RuntimeWarning, stacklevel=3)
    elif started:
        raise PerceptregError(f"{run_dir} already holds a run; continue it with `resume` "
                              f"or choose another output folder")
    manifest = _manifest(run_dir) if started else None
    if manifest is not None:  # a kill after the commit, before publishing, left model.* one epoch behind
        digest = manifest["sha256"][manifest["files"]["model"]]
        published = checkpoint.read_json(run_dir / MODEL_META) if (run_dir / MODEL_META).exists() else {}
        if published.get("sha256") != digest:
            publish_model(run_dir, model_file(run_dir), manifest["model"], digest)
    checkpoint.write_json(run_dir / CONFIG, config.to_dict())  # its metrics lines go in history_up_to


def append_metrics(run_dir: Path, row: dict) -> None:
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(row) + "\n")


def versions() -> dict:
    from perceptreg import __version__
    return {"perceptreg": __version__, "torch": torch.__version__, "python": platform.python_version()}


def save_checkpoint(run_dir: Path, model: models.PerceptionNet, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, config: TrainConfig, classes: tuple[str, ...],
                    epoch: int, row: dict, world: int) -> None:
    """The epoch's checkpoint, committed by one rename: the tensors go to files named by
    the epoch, then state.json names them with their SHA-256 (readers trust only what it
    names), then the previous epoch's files go. A kill anywhere leaves the old epoch or the
    new one, complete. model.safetensors and model.json are then published beside them."""
    weights = model.state_dict()
    optim_tensors, optim_meta = checkpoint.flatten_optimizer(optimizer.state_dict())
    files = {"state": f"state-{epoch:06d}.safetensors", "model": f"model-{epoch:06d}.safetensors"}
    checkpoint.save_tensors(run_dir / files["state"], {
        **{f"model.{k}": v for k, v in weights.items()}, **optim_tensors,
        "rng.cpu": torch.get_rng_state(),
        **({"rng.cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {})})
    checkpoint.save_tensors(run_dir / files["model"], weights)
    meta = {"format": MODEL_FORMAT, "arch": config.arch, "num_classes": model.num_classes,
            "input_shape": list(model.input_shape), "latent_shape": list(model.latent_shape),
            "classes": list(classes), "dataset": config.dataset, "lam": config.lam,
            "mode": config.mode, "epoch": epoch, "metrics": row, "versions": versions()}
    digests = {name: datasets.digest_of(run_dir / name) for name in files.values()}
    checkpoint.write_json(run_dir / STATE_META, {  # the commit point
        "epoch": epoch, "world_size": world, "optimizer": optim_meta,
        "scaler": scaler.state_dict() if scaler.is_enabled() else None, "files": files,
        "sha256": digests, "model": meta})
    for old in run_dir.glob("*-[0-9][0-9][0-9][0-9][0-9][0-9].safetensors"):
        if old.name not in files.values():
            old.unlink()
    publish_model(run_dir, run_dir / files["model"], meta, digests[files["model"]])


def publish_model(run_dir: Path, weights: Path, meta: dict, digest: str) -> None:
    """model.safetensors (a hard link to ``weights``, or a copy) and model.json with its
    SHA-256 ``digest``: the model of the run where people and other tools look for it."""
    if weights != run_dir / MODEL:
        def link(tmp: Path) -> None:
            tmp.unlink()
            try:
                os.link(weights, tmp)
            except OSError:  # a filesystem without hard links
                shutil.copyfile(weights, tmp)
        checkpoint.atomic_write(run_dir / MODEL, link)
    checkpoint.write_json(run_dir / MODEL_META, {**meta, "sha256": digest})


class _ModelFile(BaseModel):
    """model.json (and the "model" entry of state.json): what built the run's model."""
    model_config = ConfigDict(extra="allow")
    format: str
    num_classes: int = Field(ge=1)
    input_shape: tuple[int, int, int]
    classes: list[str] = Field(min_length=1)
    sha256: str | None = None


class _StateFile(BaseModel):
    """state.json: the checkpoint's commit point."""
    model_config = ConfigDict(extra="allow")
    epoch: int = Field(ge=0)
    world_size: int = Field(default=1, ge=1)
    optimizer: dict
    scaler: dict | None = None
    files: dict[str, str] | None = None  # runs written before the manifest have none
    sha256: dict[str, str] = {}
    model: _ModelFile | None = None


DAMAGED = "the run's files are damaged: restore them, or train the run again"


def _state(run_dir: Path) -> dict:
    return load_model_file(Path(run_dir) / STATE_META, _StateFile, DAMAGED)


def _manifest(run_dir: Path) -> dict | None:
    """state.json, if it names the checkpoint's files (runs of train since the manifest)."""
    if not (run_dir / STATE_META).exists():
        return None
    state = _state(run_dir)
    return state if state["files"] is not None else None


def _verified(path: Path, expected: str | None, recorded_in: Path) -> Path:
    """``path``, if its SHA-256 is the one recorded (safetensors files carry no checksum)."""
    if not path.exists():
        raise CheckpointError(f"{path} is missing; {recorded_in} names it: restore it or train again")
    if expected is not None and datasets.digest_of(path) != expected:
        raise CheckpointError(f"{path}: its SHA-256 differs from the one in {recorded_in}; the file is "
                              f"damaged: restore it or train again")
    return path


def model_file(run_dir: Path) -> Path:
    """The run's model weights, checked against their recorded SHA-256."""
    return _checkpoint_file(Path(run_dir), "model", MODEL)


def state_file(run_dir: Path) -> Path:
    """The tensors to resume from (weights, optimizer, RNG), checked against their SHA-256."""
    return _checkpoint_file(Path(run_dir), "state", STATE)


def _checkpoint_file(run_dir: Path, kind: str, unversioned: str) -> Path:
    manifest = _manifest(run_dir)
    if manifest is not None:
        name = manifest["files"][kind]
        return _verified(run_dir / name, manifest["sha256"].get(name), run_dir / STATE_META)
    recorded = model_meta(run_dir).get("sha256") if kind == "model" else None
    return _verified(run_dir / unversioned, recorded, run_dir / (MODEL_META if kind == "model" else STATE_META))


def load_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, world: int) -> int:
    """Restore weights, optimizer, RNG and loss scaler from ``run_dir``; the epoch reached."""
    state = _state(run_dir)
    trained_with = state["world_size"]
    if trained_with != world:
        # the shards of every epoch depend on the number of processes
        raise PerceptregError(f"{run_dir} was trained by {trained_with} process(es); resume it with "
                              f"{trained_with} processes (torchrun's nproc-per-node), not {world}")
    path = state_file(run_dir)
    tensors = checkpoint.load_tensors(path)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    checkpoint.load_weights(model, weights, path)
    optimizer.load_state_dict(checkpoint.unflatten_optimizer(tensors, state["optimizer"]))
    checkpoint.match_layouts(optimizer)
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    if state.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    return int(state["epoch"])


def history_up_to(run_dir: Path, last_epoch: int, rewrite: bool = True) -> list[dict]:
    """Metrics of the epochs up to ``last_epoch``; rewrites metrics.jsonl without later lines
    (a kill between the metrics line and the state re-runs that epoch)."""
    if not (run_dir / METRICS).exists():
        return []
    rows = [r for r in read_metrics(run_dir) if r["epoch"] <= last_epoch]
    if rewrite:
        checkpoint.atomic_write(run_dir / METRICS,
                                lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in rows)))
    return rows


def completed_epochs(run_dir: Path) -> int:
    """The last epoch whose checkpoint was written (0 if none): what a resume starts after."""
    if not (Path(run_dir) / STATE_META).exists():
        return 0
    return _state(run_dir)["epoch"]


# --- reading a run ----------------------------------------------------------------------------

def load_config(run_dir: str | Path) -> TrainConfig | AttachConfig:
    """The run's config: a TrainConfig, or an AttachConfig for a run of `attach`."""
    path = Path(run_dir) / CONFIG
    values = checkpoint.read_json(path)
    kind = AttachConfig if isinstance(values, dict) and "layers" in values else TrainConfig
    return kind.from_dict(values, str(path))


def is_attached(run_dir: str | Path) -> bool:
    """Whether the run holds a user's model with decoders on its layers (`attach`)."""
    return isinstance(load_config(run_dir), AttachConfig)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of metrics.jsonl, one per epoch. A last line cut short (a kill while it was
    appended) is dropped with a warning; any other bad line is an error naming it."""
    path = Path(run_dir) / METRICS
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: cannot be read ({err}); remove it to start the run over") from err
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise ValueError("a row must be an object with an integer epoch")
        except ValueError as err:
            if number == len(lines):  # no newline after it: the append was cut short
                warnings.warn(f"{path}: line {number} was cut short (the run was killed while writing it); "
                              f"it is left out", RuntimeWarning, stacklevel=2)
                break
            raise CheckpointError(f"{path}: line {number} is not a metrics row ({err}); "
                                  f"the file is damaged") from err
        rows.append(row)
    return rows


def model_meta(run_dir: str | Path) -> dict:
    """What built the run's model: from the checkpoint's manifest when there is one."""
    manifest = _manifest(Path(run_dir))
    if manifest is not None and manifest["model"] is not None:
        return manifest["model"]
    return load_model_file(Path(run_dir) / MODEL_META, _ModelFile, DAMAGED)


def load_data(run_dir: str | Path) -> tuple[datasets.ImageDataset, datasets.ImageDataset]:
    """The (train, test) data a run was trained and evaluated on."""
    config = load_config(run_dir)
    meta_path = Path(run_dir) / MODEL_META
    shape = tuple(model_meta(run_dir)["input_shape"]) if meta_path.exists() else None
    return datasets.load_dataset(config.dataset, config.data_root, shape)


def decoder_collapsed(run_dir: str | Path) -> bool:
    """Whether the run's final model was flagged with a collapsed decoder."""
    return bool(model_meta(run_dir).get("metrics", {}).get("decoder_collapsed"))


def load_model(run_dir: str | Path, model: models.PerceptionNet | None = None,
               device: torch.device | str = "cpu", layer: str | None = None) -> models.PerceptionNet:
    """The trained model of a run folder. Pass ``model`` for runs of a custom architecture.
    Of an attach run, the user's model seen through ``layer`` (default its deepest)."""
    run_dir = Path(run_dir)
    device = resolve_device(str(device))
    if not (run_dir / MODEL).exists():
        raise PerceptregError(f"{run_dir}: no {MODEL}; is this a run folder written by `perceptreg train`?")
    if is_attached(run_dir):
        from perceptreg.attached_runs import load_attached  # it reads the run through this module

        return load_attached(run_dir, device).at(layer)
    if layer is not None:
        raise PerceptregError(f"`layer` {layer!r}: {run_dir} is a run of `train`, its one latent is z; "
                              f"layers are chosen in runs of `attach`")
    meta = model_meta(run_dir)
    if model is None:
        model = _rebuild(run_dir, meta)
    path = model_file(run_dir)
    checkpoint.load_weights(model, checkpoint.load_tensors(path), path)
    return model.to(device).eval()


def _rebuild(run_dir: Path, meta: dict) -> models.PerceptionNet:
    """The untrained network of a run: a paper architecture, or the user's file it names."""
    if meta["arch"] in models.ARCHITECTURES:
        return models.build(meta["arch"], meta["num_classes"])
    source = load_config(run_dir).model
    if source is None:
        raise PerceptregError(f"{run_dir} holds a custom model built in Python; pass it: load_model(run_dir, "
                              f"model=...), or train it from a file (`model` FILE.py:FUNCTION) so that it can be rebuilt")
    return models.perception_net_from_file(source)


def load_parts(run_dir: Path, model: models.PerceptionNet, parts: tuple[str, ...]) -> None:
    """Copy the named parts ("encoder", "classifier", "decoder") of a run's model into ``model``."""
    path = model_file(run_dir)
    weights = checkpoint.load_tensors(path)
    for part in parts:
        taken = {k[len(part) + 1:]: v for k, v in weights.items() if k.startswith(part + ".")}
        checkpoint.load_weights(getattr(model, part), taken, path)
