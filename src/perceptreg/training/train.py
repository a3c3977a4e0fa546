"""Perceptually regularized training, readable top to bottom.

    result = train(TrainConfig(lam=1e-2), "runs/demo")
    run = train_to_end(TrainConfig(lam=1e-2), "runs/demo")  # resumes a killed run; a finished one is opened

One loop serves both modes of the paper:
- ``joint``: F, C and D trained together on CE + lam * ||x - D(F(x))||^2.
- ``post-hoc``: F and C trained on CE alone, then frozen while D alone learns to invert
  F (Dosovitskiy & Brox 2016): the baseline the paper contrasts with.

D's term is the paper's squared pixel error, or ours (``config.decoder_loss``: a comparator's
features, and with ``deepsim`` a discriminator trained alongside; ``core.decoder_losses``).

The run folder gets ``config.json``, one ``metrics.jsonl`` line per epoch, and after every
epoch the model (``model.safetensors`` + ``model.json``) and the resumable state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from perceptreg import data as datasets
from perceptreg import runs
from perceptreg.core import models
from perceptreg.core.config import TrainConfig
from perceptreg.core.devices import amp_dtype as autocast_dtype_for
from perceptreg.core.devices import resolve_device
from perceptreg.core.errors import PerceptregError
from perceptreg.core.loss import LossParts, classifier_loss, decoder_terms, perceptual_loss
from perceptreg.display import counted, tqdm
from perceptreg.measures import COLLAPSE_RATIO, SHAPE_COLLAPSE_RATIO, evaluate
from perceptreg.runs import checkpoint, user_models
from perceptreg.training import adversarial_training, comparators, distributed, schedule


class NonFiniteLossError(PerceptregError):
    """The loss became NaN or infinite; the run folder keeps the last good epoch."""


class DiscriminatorDivergedError(PerceptregError):
    """deepsim's game collapsed: the decoder drew, then draws one image for all; the run
    folder keeps the last good epoch."""


class TrainResult(NamedTuple):
    model: models.PerceptionNet
    history: list[dict]  # one metrics row per epoch, as in metrics.jsonl
    run_dir: Path

    def __repr__(self) -> str:  # not the model's modules and every epoch's row
        last = self.history[-1] if self.history else {}
        measured = "".join(f", {label} {last[key]:.4f}" for key, label in
                           (("test_accuracy", "test accuracy"), ("test_recon_mse", "test MSE/pixel"))
                           if last.get(key) is not None)
        return f"TrainResult(run_dir={str(self.run_dir)!r}, {counted(len(self.history), 'epoch')}{measured})"


# How often (in batches) the loss is checked for NaN: each check is a device sync.
FINITE_CHECK_EVERY = 50


def train(config: TrainConfig, run_dir: str | Path, *, model: models.PerceptionNet | None = None,
          train_data=None, test_data=None,
          resume: bool = False, progress: bool = True, judges: tuple[str | Path, ...] = ()) -> TrainResult:
    """Train ``model`` (default: the paper's ``config.arch``) and write the run folder.

    ``train_data``/``test_data`` default to ``config.dataset``; given, they are an
    ``ImageDataset`` or any torch ``Dataset``/``DataLoader`` of (image, label), images uint8
    or floats in [0, 1], held in memory as uint8 (``data.as_image_dataset``). With ``resume=True`` the
    run continues from the last completed epoch in ``run_dir`` and ends with the same
    weights an uninterrupted run would have (on CPU; CUDA kernels may differ in the last bits).
    ``judges``: run folders that will measure the perception, refused as the decoder loss's
    comparator (``training.comparators``).
    """
    run_dir = Path(run_dir)
    if model is not None and config.model is None:  # recorded as custom: no paper architecture rebuilds it
        config = dataclasses.replace(config, arch="custom")
    resolve_device(config.device)
    runs.check_writable_for_training(run_dir, config, resume)  # before any work; again under the lock
    # Under torchrun, one process per device: only rank 0 writes the run folder, and it
    # holds the folder's lock while it does: a second writer is refused.
    cluster = distributed.join(config.device)
    with checkpoint.writer_lock(run_dir) if cluster.is_main else contextlib.nullcontext():
        return _train(config, run_dir, cluster, model, train_data, test_data, resume, progress, judges)



def train_to_end(config: TrainConfig, run_dir: str | Path, **options) -> runs.Run:
    """The run of ``config`` in ``run_dir``, with all its epochs: trained, resumed after a kill
    (from its last checkpoint), or only opened once finished; ``options``: ``train``'s."""
    run_dir = Path(run_dir)
    if (runs.completed_epochs(run_dir) if run_dir.is_dir() else 0) < config.total_epochs:
        train(config, run_dir, resume=(run_dir / runs.CONFIG).exists(), **options)
    return runs.open_run(run_dir)

def _train(config: TrainConfig, run_dir: Path, cluster: distributed.Cluster, model, train_data, test_data,
           resume: bool, progress: bool, judges) -> TrainResult:
    device = cluster.device
    progress = progress and cluster.is_main

    # --- data: uint8 tensors on the host, converted per batch on the device -------------
    if train_data is not None and test_data is not None:
        train_data = datasets.as_image_dataset(train_data, "train_data")
        test_data = datasets.as_image_dataset(test_data, "test_data", train_data.classes)
    else:
        shape = model.input_shape if model is not None else datasets.image_shape_for(config.dataset, config.arch)
        train_data, test_data = datasets.load_dataset(config.dataset, config.data_root, shape)
    train_data = datasets.training_subset(train_data, config.train_size, config.seed)
    eval_data = datasets.evaluation_subset(test_data, config.eval_size)  # what each epoch is scored on

    # --- model and optimizer -------------------------------------------------------------
    model = initial_model(config, train_data, model)
    if config.classifier_from and not resume:
        runs.open_run(config.classifier_from).copy_parts(model, ("encoder", "classifier"))
    decoder_objective = run_objective(config, model, cluster, judges, announce=progress and cluster.is_main)
    # config.adversarial: C learns on adversarial examples (training/adversarial_training.py)
    adversary = adversarial_training.adversary_for(config, model, train_data)
    # The folder is written only now: a bad dataset or model file leaves nothing behind.
    if cluster.is_main:
        runs.prepare(run_dir, config, resume)
    cluster.barrier()
    # channels-last lets oneDNN (CPU) and cuDNN skip layout conversions around every conv:
    # about 8 % more images/s on the MNIST net here (bench/train_throughput.py). Compiled
    # steps keep the default layout: inductor mis-strides the channels-last convolution
    # backward (torch 2.11 on an H200: an assertion error in the first step).
    memory_format = torch.contiguous_format if config.compile else torch.channels_last
    model.to(device, memory_format=memory_format)
    if decoder_objective is not None:  # its discriminator meets F's features in the same layout
        decoder_objective.to(device, memory_format=memory_format)
    # fused: one kernel updates all parameters instead of a dozen small ops per tensor.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas, fused=True)
    discriminator = decoder_objective and decoder_objective.discriminator
    if discriminator is not None:  # beta1 0.5, as GANs since DCGAN: momentum lags the moving game
        optimizer.add_param_group({"params": list(discriminator.parameters()), "betas": (0.5, 0.999)})
    # bf16 needs no loss scaling; fp16 (older GPUs) does. On CPU both are off.
    amp_dtype = autocast_dtype_for(device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    start_epoch = 1
    if resume and runs.completed_epochs(run_dir) > 0:
        start_epoch = runs.load_state(run_dir, model, optimizer, scaler, cluster.world, extra=discriminator) + 1
    history = runs.history_up_to(run_dir, start_epoch - 1, rewrite=cluster.is_main)
    # The loss of a batch as a module, so DistributedDataParallel can average its gradients;
    # post-hoc phases leave F or D without gradients, which DDP must be told.
    objective = cluster.wrap(_Objective(model, config, decoder_objective),
                             find_unused_parameters=config.mode == "post-hoc")
    if config.compile:
        objective = torch.compile(objective)

    # --- the loop: one epoch = train, evaluate, log, checkpoint ----------------------------
    for epoch in range(start_epoch, config.total_epochs + 1):
        phase = schedule.phase(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_at(config, epoch)
        began = time.perf_counter()
        model.train()
        shuffle = epoch_shuffle(config, epoch)
        sums = torch.zeros(3, device=device)  # summed (total, ce, recon) over the epoch
        recent: list[torch.Tensor] = []
        batch_size = schedule.batch_size_at(config, epoch)
        batch_iter = datasets.batches(train_data, batch_size, shuffle=True, generator=shuffle,
                                      device=device, rank=cluster.rank, world=cluster.world)
        global_sizes = datasets.global_batch_sizes(len(train_data), batch_size, cluster.world)
        global_sizes = global_sizes[:config.steps_per_epoch]  # zip() below stops there too
        n_batches = len(global_sizes)
        for step, ((images, labels), global_size) in enumerate(tqdm(
                zip(batch_iter, global_sizes), total=n_batches, desc=f"epoch {epoch}/{config.total_epochs} ({phase})",
                disable=not progress, leave=False, unit="batch")):
            images = images.contiguous(memory_format=memory_format)
            with torch.autocast(device.type, amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                adv = (adversary.examples(model, images, labels, epoch, step, n_batches)
                       if adversary and phase != "decoder" else None)  # a frozen C needs none
                parts = objective(images, labels, phase, adv)
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
                check_finite(recent, epoch, step + 1 - len(recent), run_dir, cluster, discriminator is not None)
                recent = []

        train_seconds = time.perf_counter() - began  # includes the NaN checks' syncs
        quality = evaluate(model, eval_data, device=device, autocast_dtype=amp_dtype, cluster=cluster)
        row = epoch_row(config, epoch, (cluster.sum(sums) / n_batches).tolist(), quality,
                        sum(global_sizes) / train_seconds, time.perf_counter() - began)
        if discriminator is not None:
            check_game(row, history, run_dir)
        if adversary:
            row.update(adversary.measure(model, eval_data, epoch, device, amp_dtype))
        history.append(row)
        if progress:
            tqdm.write(_epoch_line(row, config))
        if cluster.is_main:
            # metrics first, then state: a kill in between re-runs this epoch, and resume
            # drops its metrics line (see runs.history_up_to).
            runs.append_metrics(run_dir, row)
            runs.save_checkpoint(run_dir, model, optimizer, scaler, config, train_data.classes,
                                 epoch, row, cluster.world, extra=discriminator,
                                 decoder_loss=decoder_objective and decoder_objective.describe())
    if history and history[-1]["decoder_collapsed"] and cluster.is_main:
        warn_collapsed(history[-1])
    cluster.barrier()
    # The DDP wrapper holds the process group: it must go first for `leave` to free it
    # (and gloo's threads with it) before interpreter exit.
    del objective
    cluster.leave()
    return TrainResult(model, history, run_dir)


class _Objective(nn.Module):
    """A phase's loss parts on a batch, as a module DistributedDataParallel can wrap."""

    def __init__(self, model: models.PerceptionNet, config: TrainConfig, decoder_objective=None):
        super().__init__()
        self.model, self.config, self.decoder_objective = model, config, decoder_objective

    def forward(self, images: torch.Tensor, labels: torch.Tensor, phase: str,
                adv: torch.Tensor | None = None) -> LossParts:
        if adv is not None:
            return adversarial_training.adversarial_loss(self.model, images, adv, labels, phase, self.config,
                                                         self.decoder_objective)
        return _phase_loss(self.model, images, labels, phase, self.config, self.decoder_objective)


def _phase_loss(model: models.PerceptionNet, images: torch.Tensor, labels: torch.Tensor,
                phase: str, config: TrainConfig, decoder_objective=None):
    if phase == "joint":
        logits, _, recon = model(images)
        return perceptual_loss(logits, labels, images, recon, config.lam, config.reduction, decoder_objective)
    if phase == "classifier":  # the decoder is not run: it gets no gradient anyway
        return classifier_loss(model.classify(images), labels)
    # decoder phase: F frozen, D learns to invert it. Frozen means eval mode too: in train
    # mode F's BatchNorm statistics would drift and its Dropout would perturb z.
    with torch.no_grad(), models.evaluating(model.encoder):
        z = model.encoder(images)
    recon, critic = decoder_terms(images, model.decoder(z), config.reduction, decoder_objective)
    return LossParts(recon + critic, torch.zeros((), device=images.device), recon)


def run_objective(config: TrainConfig, model: models.PerceptionNet, cluster: distributed.Cluster, judges,
                  announce: bool = False):
    """The run's decoder objective on its device (None: the paper's pixel error); its
    comparator "self" is the model's own encoder."""
    if config.decoder_loss.name != "pixel" and cluster.world > 1:
        raise PerceptregError(f"`decoder_loss` {config.decoder_loss.name} trains on one process; run it without "
                              f"torchrun, or with the pixel loss")
    return comparators.decoder_objective(config.decoder_loss, model.input_shape, model.encoder,
                                         reduction=config.reduction, judges=judges, device=cluster.device,
                                         announce=announce)


# --- helpers shared with the vmapped ensemble (ensemble.py): one home for each rule ----------

def initial_model(config: TrainConfig, train_data: datasets.ImageDataset,
                  model: models.PerceptionNet | None = None) -> models.PerceptionNet:
    """The untrained model of a run: built under ``config.seed``, checked against the data,
    with D's output bias at the data's mean pixel (``config.init_output_bias``)."""
    torch.manual_seed(config.seed)
    if model is None:
        model = (user_models.build_perception_net(config.model) if config.model
                 else models.build(config.arch, len(train_data.classes), config.z_dim, config.decoder_width))
    if model.input_shape != train_data.image_shape:
        raise PerceptregError(f"the model takes images of shape {model.input_shape}, "
                              f"{train_data.name} has {train_data.image_shape}")
    if config.init_output_bias:
        model.init_output_bias(train_data.pixel_mean())
    return model


def epoch_shuffle(config: TrainConfig, epoch: int) -> torch.Generator:
    """The generator of an epoch's batch order: seeded per epoch, so a resumed run sees the
    same batches as an uninterrupted one."""
    # modulo the 64 bits torch takes: every seed of the documented range [0, 2^63) works, and
    # the seeds small enough not to wrap keep the batch order they always had
    return torch.Generator().manual_seed((config.seed * 100_003 + epoch) % 2**64)


def epoch_row(config: TrainConfig, epoch: int, losses: list[float], quality: dict,
              images_per_second: float, seconds: float) -> dict:
    """The metrics.jsonl line of an epoch; ``losses`` are the epoch's mean (total, ce, recon)."""
    phase = schedule.phase(config, epoch)
    total, ce, recon = losses
    decoder_trained = phase != "classifier"  # post-hoc's first phase leaves D untouched
    # a joint D at lam 0 gets no gradient (a plain classifier, e.g. a judge): it never learnt to draw
    draws = decoder_trained and (phase == "decoder" or config.lam > 0)
    return {"epoch": epoch, "phase": phase, "lr": schedule.lr_at(config, epoch),
            "train_loss": total, "train_ce": ce if phase != "decoder" else None,
            "train_recon": recon if decoder_trained else None,
            "test_accuracy": quality["accuracy"],
            "test_recon_mse": quality["recon_mse"] if decoder_trained else None,
            "recon_spread": quality["recon_spread"] if decoder_trained else None,
            "shape_spread": quality["shape_spread"] if decoder_trained else None,
            "decoder_collapsed": quality["decoder_collapsed"] and draws,
            "train_images_per_second": images_per_second, "seconds": seconds}


# --- helpers: NaN checks, reporting ---------------------------------------------------------

def check_finite(losses: list[torch.Tensor], epoch: int, first_batch: int, run_dir: Path,
                  cluster: distributed.Cluster, discriminator: bool = False) -> None:
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
    if discriminator:  # deepsim: the game's loss went first (the pixel run of the same lr did not)
        raise DiscriminatorDivergedError(f"the discriminator diverged (non-finite loss) at epoch {epoch}, batch "
                                         f"{batch}; {kept} (--resume goes on from it); a new run with a lower `adversarial_weight` or `lr` avoids it")
    raise NonFiniteLossError(f"non-finite loss at epoch {epoch}, batch {batch}; {kept}. "
                             f"Try a lower `lr` or a smaller `lam`, and check the data for NaNs")


def check_game(row: dict, history: list[dict], run_dir: Path) -> None:
    """deepsim: a decoder that drew distinct images and now draws one image for all (its
    reconstructions' spread collapsed, ``measures.evaluate``) lost the game to the
    discriminator; stop before this epoch's checkpoint, so the folder keeps the last good one."""
    drew = any(not r["decoder_collapsed"] and r["recon_spread"] is not None for r in history)
    if row["decoder_collapsed"] and drew:
        raise DiscriminatorDivergedError(
            f"the discriminator won: after epoch {row['epoch']} the decoder draws nearly one image for all (spread "
            f"{row['recon_spread']:.3f} of the images' own); the checkpoint of epoch {row['epoch'] - 1} in {run_dir} "
            f"is kept (--resume goes on from it); a new run with a lower `adversarial_weight` avoids it")


def _epoch_line(row: dict, config: TrainConfig) -> str:
    def show(key):
        return "-" if row[key] is None else f"{row[key]:.4f}"
    return (f"epoch {row['epoch']}/{config.total_epochs} {row['phase']}: train CE {show('train_ce')}, "
            f"train recon {show('train_recon')}, test acc {show('test_accuracy')}, "
            f"test MSE/pixel {show('test_recon_mse')}"
            + (f", robust acc {row['test_robust_accuracy']:.4f}" if "test_robust_accuracy" in row else "")
            + f" ({row['seconds']:.1f}s)"
            + (" [decoder collapsed]" if row["decoder_collapsed"] else ""))


def warn_collapsed(row: dict) -> None:
    warnings.warn(
        f"the decoder has collapsed: after epoch {row['epoch']} its reconstructions are nearly "
        f"the same for every test image, or the same shape in each image's colours (spread "
        f"{row['recon_spread']:.3f} of the images' own, shape spread {row['shape_spread']:.3f}; "
        f"collapsed below {COLLAPSE_RATIO} or {SHAPE_COLLAPSE_RATIO}), so perceptions of this model "
        f"show little about its inputs. "
        f"Train longer, keep init_output_bias on, or lower the lr "
        f"(docs/guides/train-and-perceive.md, 'The collapse pitfall').",
        RuntimeWarning, stacklevel=3)


