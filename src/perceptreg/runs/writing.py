"""Writing a run folder: checking who may write it, the checkpoint after each epoch (committed by one
rename), publishing the model, and what a resume reads back. Runs of `train` and of
`attach` are written here; ``run.open_run`` reads them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import warnings
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from perceptreg import data as datasets
from perceptreg.core import models
from perceptreg.core.config import AttachConfig, TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.runs import checkpoint, manifest, sources
from perceptreg.runs.files import (
    ATTACHED_FORMAT,
    CONFIG,
    METRICS,
    MODEL,
    MODEL_FORMAT,
    MODEL_META,
    STATE_META,
    metrics_digest,
    read_metrics,
)
from perceptreg.runs.outputs import check_writable
from perceptreg.storage import fileio
from perceptreg.storage.schema import validated, write_sealed


def prepare(run_dir: Path, config: TrainConfig, resume: bool) -> None:
    """Check that ``run_dir`` may take ``config``'s run (``check_writable_for_training``), tidy
    what a kill left, and write its config.json.

    A folder holds a run once its first checkpoint is written; one killed before that (a
    config and perhaps a metrics line) is started over, resumed or not."""
    check_writable_for_training(run_dir, config, resume)
    if resume and manifest.completed_epochs(run_dir) == 0:
        warnings.warn(f"{run_dir} was stopped before its first checkpoint: it starts over at epoch 1",
                      RuntimeWarning, stacklevel=3)
    settle(run_dir)
    # with a copy of the model's source (train --model), so that the run opens from any folder;
    # its metrics lines go in history_up_to
    fileio.write_json(run_dir / CONFIG, sources.with_source(config, run_dir).to_dict())


def check_writable_for_training(run_dir: Path, config: TrainConfig, resume: bool) -> None:
    """``kinds.check_writable`` for a run of `train` with ``config``; read-only, so `train` checks it first
    and again under the lock."""
    if resume and not (run_dir / CONFIG).exists():
        raise PerceptregError(f"{run_dir}: no run to resume here; start it with `resume` off")
    # Only the length of training, the device and what is evaluated may change on resume;
    # in post-hoc mode `epochs` is where the decoder phase begins, fixed once started.
    # The source is what the run recorded of the model's file (runs.sources), not a setting.
    free = frozenset({"decoder_epochs", "device", "eval_size", "source"}
                     | ({"epochs"} if config.mode == "joint" else set()))
    check_writable(run_dir, "trained", resume=resume, settings=config.to_dict(), free=free)
    done = manifest.completed_epochs(run_dir) if (run_dir / STATE_META).is_file() else 0
    if done > config.total_epochs:  # its config.json would say fewer epochs than its model has
        raise PerceptregError(f"{run_dir} has {done} epochs; `epochs` must be at least {done} to resume it")
    if resume and done:
        manifest.check_arch(run_dir, config.arch, manifest.read_state(run_dir).get("model"), STATE_META)
    if resume and done:  # a damaged metrics.jsonl (missing, cut, edited, NaN) refused before any write
        with warnings.catch_warnings():  # a torn last line is said once, when the history is read
            warnings.simplefilter("ignore", RuntimeWarning)
            manifest.committed_metrics(run_dir, manifest.read_state(run_dir), None)
    if os.path.lexists(run_dir / METRICS):  # epochs are appended to it: a regular file, or none yet (a run with
        fileio.guarded(run_dir / METRICS)  # a model has had it read by committed_metrics, before any epoch none)


def settle(run_dir: Path) -> None:
    """Finish what a kill interrupted, under the writer's lock: publish the committed epoch
    when a kill after the commit left model.* one epoch behind (or model.safetensors is not a
    file), and remove epoch files that state.json does not name (a kill before the previous
    epoch's were removed). The committed model is checked against its digest first: a resume
    with nothing left to train does not call a damaged run finished."""
    state = manifest.read_state(run_dir)
    if state is None or state["epoch"] == 0 or not manifest.has_manifest(state):
        return
    committed = manifest.model_file(run_dir, state, None)
    digest = state["sha256"][state["files"]["model"]]
    published = fileio.read_json(run_dir / MODEL_META) if (run_dir / MODEL_META).exists() else {}
    if not isinstance(published, dict) or published.get("sha256") != digest or not (run_dir / MODEL).is_file():
        publish_model(run_dir, committed, state["model"], digest)
    for old in run_dir.glob("*-[0-9][0-9][0-9][0-9][0-9][0-9].safetensors"):
        if old.name not in state["files"].values():
            old.unlink()


def versions() -> dict:
    """What made the run: perceptreg's version as installed, torch's and Python's."""
    try:
        ours = metadata.version("perceptreg")
    except metadata.PackageNotFoundError:  # imported from a source tree, not installed
        ours = "unknown"
    return {"perceptreg": ours, "torch": torch.__version__, "python": platform.python_version()}


def save_checkpoint(run_dir: Path, model: models.PerceptionNet, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, config: TrainConfig, classes: tuple[str, ...],
                    epoch: int, row: dict, world: int, extra: nn.Module | None = None,
                    decoder_loss: str | None = None) -> None:
    """The epoch's checkpoint, committed by one rename: the tensors go to files named by
    the epoch, then state.json names them with their SHA-256 (readers trust only what it
    names), then the previous epoch's files go. A kill anywhere leaves the old epoch or the
    new one, complete. model.safetensors and model.json are then published beside them.
    ``extra``: a module trained beside the model (deepsim's discriminator), whose weights the
    state keeps (its moments are in ``optimizer``), not the model. ``decoder_loss``: the
    objective's own line (``DecoderObjective.describe``: its comparator's layers as resolved)
    for model.json, where the config's would say "default layers"."""
    weights = model.state_dict()
    optim_tensors, optim_meta = checkpoint.flatten_optimizer(optimizer.state_dict())
    files = {"state": f"state-{epoch:06d}.safetensors", "model": f"model-{epoch:06d}.safetensors"}
    fileio.save_tensors(run_dir / files["state"], {
        **{f"model.{k}": v for k, v in weights.items()}, **optim_tensors,
        **({f"extra.{k}": v for k, v in extra.state_dict().items()} if extra is not None else {}),
        "rng.cpu": torch.get_rng_state(),
        **({"rng.cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {})})
    fileio.save_tensors(run_dir / files["model"], weights)
    meta = {"format": MODEL_FORMAT, "arch": config.arch, "num_classes": model.num_classes,
            "input_shape": list(model.input_shape), "latent_shape": list(model.latent_shape),
            "classes": list(classes), "dataset": config.dataset, "lam": config.lam,
            "mode": config.mode, "decoder_loss": decoder_loss or config.decoder_loss.describe(), "epoch": epoch, "metrics": row,
            "versions": versions()}
    digests = {name: datasets.digest_of(run_dir / name) for name in files.values()}
    rows = [r for r in read_metrics(run_dir) if r["epoch"] <= epoch]  # this epoch's row was appended just now
    write_sealed(run_dir / STATE_META, {  # the commit point
        "format": manifest.STATE_FORMAT, "epoch": epoch, "world_size": world, "optimizer": optim_meta,
        "scaler": scaler.state_dict() if scaler.is_enabled() else None, "files": files,
        "sha256": digests, "model": meta, "metrics_sha256": metrics_digest(rows)})
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
        fileio.atomic_write(run_dir / MODEL, link)
    fileio.write_json(run_dir / MODEL_META, {**meta, "sha256": digest})


def load_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, world: int, extra: nn.Module | None = None) -> int:
    """Restore weights, optimizer, RNG and loss scaler from ``run_dir`` (and ``extra``'s
    weights, as ``save_checkpoint`` kept them); the epoch reached."""
    state = manifest.read_state(run_dir)
    trained_with = state["world_size"]
    if trained_with != world:
        # the shards of every epoch depend on the number of processes
        raise PerceptregError(f"{run_dir} was trained by {trained_with} process(es); resume it with "
                              f"{trained_with} processes (torchrun's nproc-per-node), not {world}")
    path = manifest.state_file(run_dir, state)
    tensors = fileio.load_tensors(path)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    fileio.load_weights(model, weights, path)
    if extra is not None:
        fileio.load_weights(extra, {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}, path)
    optim_meta = validated(state["optimizer"], manifest.OptimizerMeta, run_dir / STATE_META, manifest.DAMAGED)
    optimizer.load_state_dict(checkpoint.unflatten_optimizer(tensors, optim_meta))
    checkpoint.match_layouts(optimizer)
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    if state.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    return int(state["epoch"])


def history_up_to(run_dir: Path, last_epoch: int, rewrite: bool = True) -> list[dict]:
    """Metrics of the epochs up to ``last_epoch``, the committed one, checked against the
    checkpoint (``manifest.committed_metrics``: never a history silently shorter); rewrites
    metrics.jsonl without later lines (a kill between the metrics line and the state re-runs
    that epoch). ``last_epoch`` 0: a run that starts over, its file emptied."""
    rows = [r for r in manifest.committed_metrics(run_dir, manifest.read_state(run_dir), None)
            if r["epoch"] <= last_epoch] if last_epoch else []
    if rewrite and (rows or (run_dir / METRICS).exists()):
        fileio.atomic_write(run_dir / METRICS,
                            lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in rows)))
    return rows


# --- runs of `attach` ---------------------------------------------------------------------------

def prepare_attached(run_dir: Path, config: AttachConfig) -> AttachConfig:
    """Claim ``run_dir`` for an attach run (one that never finished, without model.json,
    starts over), keep a copy of the model's source in it, and write its config; returns the
    config with the source recorded."""
    check_writable(run_dir, "attached")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS).unlink(missing_ok=True)
    config = sources.with_source(config, run_dir)
    fileio.write_json(run_dir / CONFIG, config.to_dict())
    return config


def save_attached(run_dir: Path, seen, config: AttachConfig, classes: tuple[str, ...]) -> None:
    """The attached model (the user's weights, as fine-tuned in joint mode, and every decoder)
    and what rebuilds it: the config names the user's file, model.json the layers."""
    fileio.save_tensors(run_dir / MODEL, seen.state_dict())
    rows = read_metrics(run_dir) if (run_dir / METRICS).exists() else []  # appended just now
    publish_model(run_dir, run_dir / MODEL, {  # model.json last: an attach run is complete once it exists
        "metrics_sha256": metrics_digest(rows), "format": ATTACHED_FORMAT, "layers": list(seen.layers), "num_classes": seen.num_classes,
        "input_shape": list(seen.input_shape), "classes": list(classes), "dataset": config.dataset,
        "mode": config.mode, "activation_shapes": {k: list(v) for k, v in seen.activation_shapes.items()},
        "versions": versions()}, datasets.digest_of(run_dir / MODEL))
