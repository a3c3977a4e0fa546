"""Perceptually regularized training, readable top to bottom.

    result = train(TrainConfig(lam=1e-2), "runs/demo")

One loop serves both modes of the paper:
- ``joint``: F, C and D trained together on CE + lam * ||x - D(F(x))||^2.
- ``post-hoc``: F and C trained on CE alone, then frozen while D alone learns to invert
  F (Dosovitskiy & Brox 2016): the baseline the paper contrasts with.

The run folder gets ``config.json``, one ``metrics.jsonl`` line per epoch, and after every
epoch the model (``model.safetensors`` + ``model.json``) and the resumable state.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from perceptreg import checkpoint, data as datasets, distributed, models
from perceptreg.errors import PerceptregError
from perceptreg.loss import REDUCTIONS, LossParts, perceptual_loss, reconstruction_error
from perceptreg.metrics import COLLAPSE_RATIO, evaluate

MODES = ("joint", "post-hoc")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist5k"  # see data.DATASETS; recorded only when data is passed in
    arch: str = "mnist"  # one of models.ARCHITECTURES (data.default_arch(dataset) fits), or "custom"
    lam: float = 1e-2  # weight of the reconstruction term; the paper sweeps 1e-4 .. 1e2
    reduction: str = "sum"  # "sum": squared error summed per image (the paper's scale); "mean": per pixel
    mode: str = "joint"  # "joint", or "post-hoc": F and C first, then D alone on frozen F
    epochs: int = 20  # the paper's 20 ("iterations" in its text); in post-hoc mode, of F and C
    decoder_epochs: int | None = None  # post-hoc only: epochs of the decoder phase (None: = epochs)
    decoder_batch_size: int | None = None  # post-hoc only: batch size of the decoder phase (None: = batch_size)
    batch_size: int = 64  # the paper gives none; 64 as in pytorch/examples' MNIST
    lr: float = 1e-3  # Adam, as in the paper
    betas: tuple[float, float] = (0.9, 0.999)
    lr_drop_epoch: int | None = None  # CelebA: 20, after which lr *= lr_drop_factor
    lr_drop_factor: float = 0.1
    seed: int = 0  # model init, shuffling and the --train-size subset (not the train/test split)
    train_size: int | None = None  # a stratified subset of the training set, to scale runs down
    init_output_bias: bool = True  # start D's sigmoid at the mean pixel: avoids the all-black collapse
    device: str = "cpu"  # "cuda" trains in bf16 autocast (fp16 + loss scaling where bf16 is missing)
    data_root: str | None = None  # where file-based datasets live (mnist: downloaded there)
    # post-hoc only: take F and C, frozen, from this run folder and train a new D for them,
    # so joint and post-hoc perception of the very same classifier can be compared
    classifier_from: str | None = None
    compile: bool = False  # torch.compile the step: pays on GPUs and long runs, costs ~30 s to start
    steps_per_epoch: int | None = None  # cap an epoch at this many batches (for very large datasets)

    def __post_init__(self):
        checks = [
            (self.lam >= 0, "lam must be >= 0"),
            (self.reduction in REDUCTIONS, f"reduction must be one of {', '.join(REDUCTIONS)}"),
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)}"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.decoder_epochs is None or self.decoder_epochs >= 1, "decoder_epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.decoder_batch_size is None or self.decoder_batch_size >= 1, "decoder_batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.train_size is None or self.train_size >= 10, "train_size must be >= 10"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch must be >= 1"),
            (self.device.split(":")[0] in ("cpu", "cuda"), "device must be cpu or cuda"),
            (self.classifier_from is None or self.mode == "post-hoc", "classifier_from needs mode post-hoc"),
        ]
        for ok, message in checks:
            if not ok:
                raise PerceptregError(f"{message} (got {self._describe()})")

    def _describe(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                         if getattr(self, f.name) != f.default) or "defaults"

    @property
    def classifier_epochs(self) -> int:
        """Epochs that train F and C: none when they come from another run."""
        return 0 if self.classifier_from else self.epochs

    @property
    def total_epochs(self) -> int:
        if self.mode == "joint":
            return self.epochs
        return self.classifier_epochs + (self.decoder_epochs or self.epochs)

    def phase(self, epoch: int) -> str:
        """What epoch ``epoch`` (1-based) trains: "joint", "classifier" or "decoder"."""
        if self.mode == "joint":
            return "joint"
        return "classifier" if epoch <= self.classifier_epochs else "decoder"

    def batch_size_at(self, epoch: int) -> int:
        if self.phase(epoch) == "decoder" and self.decoder_batch_size:
            return self.decoder_batch_size
        return self.batch_size

    def lr_at(self, epoch: int) -> float:
        first = 1 if self.phase(epoch) != "decoder" else self.classifier_epochs + 1
        dropped = self.lr_drop_epoch is not None and epoch - first >= self.lr_drop_epoch
        return self.lr * (self.lr_drop_factor if dropped else 1.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(values.keys() - known)
        if unknown:
            raise PerceptregError(f"{source}: unknown config key(s) {', '.join(unknown)}")
        if "betas" in values:
            values = {**values, "betas": tuple(values["betas"])}
        return cls(**values)


class NonFiniteLossError(PerceptregError):
    """The loss became NaN or infinite; the run folder keeps the last good epoch."""


class TrainResult(NamedTuple):
    model: models.PerceptionNet
    history: list[dict]  # one metrics row per epoch, as in metrics.jsonl
    run_dir: Path


# How often (in batches) the loss is checked for NaN: each check is a device sync.
FINITE_CHECK_EVERY = 50


def train(config: TrainConfig, run_dir: str | Path, *, model: models.PerceptionNet | None = None,
          train_data: datasets.ImageDataset | None = None,
          test_data: datasets.ImageDataset | None = None,
          resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``model`` (default: the paper's ``config.arch``) and write the run folder.

    ``train_data``/``test_data`` default to ``config.dataset``. With ``resume=True`` the
    run continues from the last completed epoch in ``run_dir`` and ends with the same
    weights an uninterrupted run would have (on CPU; CUDA kernels may differ in the last bits).
    """
    run_dir = Path(run_dir)
    _check_device(config.device)
    # Under torchrun, one process per device: only rank 0 writes the run folder.
    cluster = distributed.join(config.device)
    device = cluster.device
    if cluster.is_main:
        _prepare_run_dir(run_dir, config, resume)
    cluster.barrier()
    progress = progress and cluster.is_main

    # --- data: uint8 tensors on the host, converted per batch on the device -------------
    if train_data is None or test_data is None:
        shape = model.input_shape if model is not None else models.INPUT_SHAPES.get(config.arch)
        train_data, test_data = datasets.load_dataset(config.dataset, config.data_root, shape)
    if config.train_size and config.train_size < len(train_data):
        keep = datasets.stratified_split(train_data.labels, config.train_size, config.seed)[1]
        train_data = train_data.subset(keep)

    # --- model and optimizer -------------------------------------------------------------
    torch.manual_seed(config.seed)
    if model is None:
        model = models.build(config.arch, len(train_data.classes))
    if model.input_shape != train_data.image_shape:
        raise PerceptregError(f"the model takes images of shape {model.input_shape}, "
                              f"{train_data.name} has {train_data.image_shape}")
    if config.classifier_from and not resume:
        _take_classifier(model, Path(config.classifier_from))
    if config.init_output_bias:
        model.init_output_bias(train_data.pixel_mean())
    # channels-last lets oneDNN (CPU) and cuDNN skip layout conversions around every conv:
    # about 8 % more images/s on the MNIST net here (bench/train_throughput.py).
    model.to(device, memory_format=torch.channels_last)
    # fused: one kernel updates all parameters instead of a dozen small ops per tensor.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas, fused=True)
    # bf16 needs no loss scaling; fp16 (older GPUs) does. On CPU both are off.
    amp_dtype = _amp_dtype(device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    start_epoch = 1
    if resume:
        start_epoch = _load_state(run_dir, model, optimizer, scaler, cluster.world) + 1
    history = _read_history(run_dir, start_epoch - 1, rewrite=cluster.is_main)
    # The loss of a batch as a module, so DistributedDataParallel can average its gradients;
    # post-hoc phases leave F or D without gradients, which DDP must be told.
    objective = cluster.wrap(_Objective(model, config), find_unused_parameters=config.mode == "post-hoc")
    if config.compile:
        objective = torch.compile(objective)

    # --- the loop: one epoch = train, evaluate, log, checkpoint ----------------------------
    for epoch in range(start_epoch, config.total_epochs + 1):
        phase = config.phase(epoch)
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(epoch)
        began = time.perf_counter()
        model.train()
        # Seeded per epoch, so a resumed run sees the same batches as an uninterrupted one.
        shuffle = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        sums = torch.zeros(3, device=device)  # summed (total, ce, recon) over the epoch
        recent: list[torch.Tensor] = []
        batch_size = config.batch_size_at(epoch)
        batch_iter = datasets.batches(train_data, batch_size, shuffle=True, generator=shuffle,
                                      device=device, rank=cluster.rank, world=cluster.world)
        global_sizes = datasets.global_batch_sizes(len(train_data), batch_size, cluster.world)
        global_sizes = global_sizes[:config.steps_per_epoch]  # zip() below stops there too
        n_batches = len(global_sizes)
        for step, ((images, labels), global_size) in enumerate(tqdm(
                zip(batch_iter, global_sizes), total=n_batches, desc=f"epoch {epoch}/{config.total_epochs} ({phase})",
                disable=not progress, leave=False, unit="batch")):
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                parts = objective(images, labels, phase)
            # This rank's share of the global batch: DDP averages gradients over ranks, so
            # weighting each rank's mean by its share makes the average the global mean.
            share = len(labels) / global_size
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts.total * (share * cluster.world) if cluster.world > 1 else parts.total).backward()
            scaler.step(optimizer)
            scaler.update()
            parts_vector = torch.stack(list(parts)).detach() * share
            sums += parts_vector
            recent.append(parts_vector[0])
            if len(recent) == FINITE_CHECK_EVERY or step == n_batches - 1:
                _check_finite(recent, epoch, step + 1 - len(recent), run_dir, cluster)
                recent = []

        train_seconds = time.perf_counter() - began  # includes the NaN checks' syncs
        quality = evaluate(model, test_data, device=device, autocast_dtype=amp_dtype, cluster=cluster)
        total, ce, recon = (cluster.sum(sums) / n_batches).tolist()
        decoder_trained = phase != "classifier"  # post-hoc's first phase leaves D untouched
        row = {"epoch": epoch, "phase": phase, "lr": config.lr_at(epoch),
               "train_loss": total, "train_ce": ce if phase != "decoder" else None,
               "train_recon": recon if decoder_trained else None,
               "test_accuracy": quality["accuracy"],
               "test_recon_mse": quality["recon_mse"] if decoder_trained else None,
               "recon_spread": quality["recon_spread"] if decoder_trained else None,
               "decoder_collapsed": quality["decoder_collapsed"] and decoder_trained,
               "train_images_per_second": sum(global_sizes) / train_seconds,
               "seconds": time.perf_counter() - began}
        history.append(row)
        if progress:
            tqdm.write(_epoch_line(row, config))
        if cluster.is_main:
            # metrics first, then state: a kill in between re-runs this epoch, and resume
            # drops its metrics line (see _read_history).
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            _save(run_dir, model, optimizer, scaler, config, train_data, epoch, row, cluster.world)
    if history and history[-1]["decoder_collapsed"] and cluster.is_main:
        _warn_collapsed(history[-1])
    cluster.barrier()
    cluster.leave()
    return TrainResult(model, history, run_dir)


class _Objective(nn.Module):
    """A phase's loss parts on a batch, as a module DistributedDataParallel can wrap."""

    def __init__(self, model: models.PerceptionNet, config: TrainConfig):
        super().__init__()
        self.model, self.config = model, config

    def forward(self, images: torch.Tensor, labels: torch.Tensor, phase: str) -> LossParts:
        return _phase_loss(self.model, images, labels, phase, self.config)


def _take_classifier(model: models.PerceptionNet, source: Path) -> None:
    """Copy F and C from the run folder ``source`` into ``model`` (its D stays new)."""
    weights = checkpoint.load_tensors(source / "model.safetensors")
    for part in ("encoder", "classifier"):
        own = getattr(model, part)
        taken = {k[len(part) + 1:]: v for k, v in weights.items() if k.startswith(part + ".")}
        checkpoint.load_weights(own, taken, source / "model.safetensors")


def _phase_loss(model: models.PerceptionNet, images: torch.Tensor, labels: torch.Tensor,
                phase: str, config: TrainConfig):
    if phase == "joint":
        logits, _, recon = model(images)
        return perceptual_loss(logits, labels, images, recon, config.lam, config.reduction)
    if phase == "classifier":  # the decoder is not run: it gets no gradient anyway
        return perceptual_loss(model.classify(images), labels, images, images, 0.0, config.reduction)
    with torch.no_grad():  # decoder phase: F frozen, D learns to invert it
        z = model.encoder(images)
    recon = reconstruction_error(images, model.decoder(z), config.reduction)
    return LossParts(recon, torch.zeros((), device=images.device), recon)


# --- helpers: device, run folder, checkpoints, reporting -----------------------------------

def _check_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PerceptregError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def _amp_dtype(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _prepare_run_dir(run_dir: Path, config: TrainConfig, resume: bool) -> None:
    config_path = run_dir / "config.json"
    if resume:
        if not (run_dir / "state.json").exists():
            raise PerceptregError(f"{run_dir}: no training state to resume from "
                                  f"(state.json is missing); start it without --resume")
        saved = TrainConfig.from_dict(checkpoint.read_json(config_path), str(config_path))
        # Only the length of training and the device may change on resume.
        free = {"epochs", "decoder_epochs", "device"}
        changed = [k for k, v in saved.to_dict().items() if k not in free and v != getattr(config, k)]
        if changed:
            raise PerceptregError(f"{run_dir}: cannot resume with a different {', '.join(changed)} "
                                  f"than the run was started with")
    elif (run_dir / "state.json").exists() or (run_dir / "metrics.jsonl").exists():
        raise PerceptregError(f"{run_dir} already holds a run; continue it with --resume "
                              f"or choose another output folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.write_json(config_path, config.to_dict())


def _check_finite(losses: list[torch.Tensor], epoch: int, first_batch: int, run_dir: Path,
                  cluster: distributed.Cluster) -> None:
    finite = torch.isfinite(torch.stack(losses))
    # every rank learns whether any rank saw a NaN, so all stop together instead of one
    # waiting for the others in the next collective
    bad_anywhere = cluster.sum((~finite).any().to(torch.int32).reshape(1))
    if not bool(bad_anywhere):  # the device sync, once per FINITE_CHECK_EVERY batches
        return
    if bool(finite.all()):
        raise NonFiniteLossError(f"non-finite loss on another process at epoch {epoch}; "
                                 f"the checkpoint of epoch {epoch - 1} in {run_dir} is kept")
    batch = first_batch + int((~finite).nonzero()[0]) + 1
    kept = (f"the checkpoint of epoch {epoch - 1} in {run_dir} is kept" if epoch > 1
            else "no checkpoint was written")
    raise NonFiniteLossError(f"non-finite loss at epoch {epoch}, batch {batch}; {kept}. "
                             f"Try a lower --lr or a smaller --lam, and check the data for NaNs")


def _epoch_line(row: dict, config: TrainConfig) -> str:
    def show(key):
        return "-" if row[key] is None else f"{row[key]:.4f}"
    return (f"epoch {row['epoch']}/{config.total_epochs} {row['phase']}: train CE {show('train_ce')}, "
            f"train recon {show('train_recon')}, test acc {show('test_accuracy')}, "
            f"test MSE/pixel {show('test_recon_mse')} ({row['seconds']:.1f}s)"
            + (" [decoder collapsed]" if row["decoder_collapsed"] else ""))


def _warn_collapsed(row: dict) -> None:
    warnings.warn(
        f"the decoder has collapsed: after epoch {row['epoch']} its reconstructions are nearly "
        f"the same for every test image (spread {row['recon_spread']:.3f} of the images' own, "
        f"below {COLLAPSE_RATIO}), so perceptions of this model show nothing about its inputs. "
        f"Train longer, keep init_output_bias on, or lower the lr (PAPER-NOTES, 'training pitfall').",
        RuntimeWarning, stacklevel=3)


def versions() -> dict:
    from perceptreg import __version__
    return {"perceptreg": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _save(run_dir: Path, model: models.PerceptionNet, optimizer: torch.optim.Optimizer,
          scaler: torch.amp.GradScaler, config: TrainConfig, train_data: datasets.ImageDataset,
          epoch: int, row: dict, world: int) -> None:
    weights = model.state_dict()
    optim_tensors, optim_meta = checkpoint.flatten_optimizer(optimizer.state_dict())
    # state.json last: it is what says "resumable up to this epoch".
    checkpoint.save_tensors(run_dir / "state.safetensors", {
        **{f"model.{k}": v for k, v in weights.items()}, **optim_tensors,
        "rng.cpu": torch.get_rng_state(),
        **({"rng.cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {})})
    checkpoint.write_json(run_dir / "state.json", {
        "epoch": epoch, "world_size": world, "optimizer": optim_meta,
        "scaler": scaler.state_dict() if scaler.is_enabled() else None})
    checkpoint.save_tensors(run_dir / "model.safetensors", weights)
    checkpoint.write_json(run_dir / "model.json", {
        "format": "perceptreg.model/1", "arch": config.arch, "num_classes": model.num_classes,
        "input_shape": list(model.input_shape), "latent_shape": list(model.latent_shape),
        "classes": list(train_data.classes), "dataset": config.dataset, "lam": config.lam,
        "mode": config.mode, "epoch": epoch, "metrics": row, "versions": versions()})


def _load_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, world: int) -> int:
    state = checkpoint.read_json(run_dir / "state.json")
    trained_with = state.get("world_size", 1)
    if trained_with != world:
        # the shards of every epoch depend on the number of processes
        raise PerceptregError(f"{run_dir} was trained by {trained_with} process(es); resume it with "
                              f"{trained_with} (torchrun --nproc-per-node), not {world}")
    tensors = checkpoint.load_tensors(run_dir / "state.safetensors")
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    checkpoint.load_weights(model, weights, run_dir / "state.safetensors")
    optimizer.load_state_dict(checkpoint.unflatten_optimizer(tensors, state["optimizer"]))
    _match_layouts(optimizer)
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    if state.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    return int(state["epoch"])


def _match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each moment tensor its parameter's memory layout (channels-last for convs).

    Saved moments come back contiguous; the fused Adam kernel walks a parameter and its
    moments as flat memory, so mismatched layouts would pair the wrong elements.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            slots = optimizer.state.get(param, {})
            for name, value in slots.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    slots[name] = torch.empty_like(param).copy_(value)


def _read_history(run_dir: Path, last_epoch: int, rewrite: bool = True) -> list[dict]:
    """Metrics of the epochs up to ``last_epoch``; rewrites metrics.jsonl without later lines."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["epoch"] <= last_epoch]
    if rewrite:
        checkpoint.atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in rows)))
    return rows


# --- loading a finished run -------------------------------------------------------------------

def load_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    return TrainConfig.from_dict(checkpoint.read_json(path), str(path))


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_data(run_dir: str | Path) -> tuple[datasets.ImageDataset, datasets.ImageDataset]:
    """The (train, test) data a run was trained and evaluated on."""
    config = load_config(run_dir)
    meta_path = Path(run_dir) / "model.json"
    shape = tuple(checkpoint.read_json(meta_path)["input_shape"]) if meta_path.exists() else None
    return datasets.load_dataset(config.dataset, config.data_root, shape)


def decoder_collapsed(run_dir: str | Path) -> bool:
    """Whether the run's final model was flagged with a collapsed decoder."""
    meta = checkpoint.read_json(Path(run_dir) / "model.json")
    return bool(meta.get("metrics", {}).get("decoder_collapsed"))


def load_model(run_dir: str | Path, model: models.PerceptionNet | None = None,
               device: torch.device | str = "cpu") -> models.PerceptionNet:
    """The trained model of a run folder. Pass ``model`` for runs of a custom architecture."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.safetensors").exists():
        raise PerceptregError(f"{run_dir}: no model.safetensors; is this a run folder "
                              f"written by `perceptreg train`?")
    meta = checkpoint.read_json(run_dir / "model.json")
    if model is None:
        if meta["arch"] not in models.ARCHITECTURES:
            raise PerceptregError(f"{run_dir} holds a custom {meta['arch']!r} model; build it "
                                  f"and pass it: load_model(run_dir, model=...)")
        model = models.build(meta["arch"], meta["num_classes"])
    weights = checkpoint.load_tensors(run_dir / "model.safetensors")
    checkpoint.load_weights(model, weights, run_dir / "model.safetensors")
    return model.to(device).eval()
