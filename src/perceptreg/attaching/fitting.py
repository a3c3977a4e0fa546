"""Fitting an attached model: decoders on the frozen model (post hoc), or the model itself
with the paper's objective (``fine_tune``); ``evaluate_layers`` measures each layer.

    >>> seen = attach(net, layers=["block1", "fc1"], input_shape=(1, 28, 28))
    >>> rows = fit_decoders(seen, train_loader, epochs=10, test_data=test_loader)

Data is any of ``data.loaders``' kinds: a torch ``DataLoader`` or ``Dataset`` of (image,
label) (a ``TensorDataset`` too), images uint8 or floats in [0, 1], or an ``ImageDataset``.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import torch

from perceptreg.attaching.results import LayerMeasures
from perceptreg.core.attached import AttachedModel
from perceptreg.core.config import DecoderLoss
from perceptreg.core.errors import PerceptregError
from perceptreg.core.loss import decoder_terms, layers_loss
from perceptreg.core.models import evaluating
from perceptreg.data import ImageBatches, image_batches
from perceptreg.display import tqdm
from perceptreg.training.comparators import decoder_objective
from perceptreg.training.train import NonFiniteLossError


def fit_decoders(seen: AttachedModel, train_data, *, epochs: int = 10,
                 batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                 device: torch.device | str = "cpu", layers: Sequence[str] | None = None,
                 progress: bool = True, test_data=None, decoder_loss: DecoderLoss = DecoderLoss(),
                 judges: Sequence[str] = ()) -> list[dict]:
    """Train the decoders of ``layers`` (default all) to invert the frozen model, post hoc.

    ``train_data``/``test_data``: a ``DataLoader`` or ``Dataset`` of (image, label), images
    uint8 or floats in [0, 1] (see ``data.loaders``); a DataLoader keeps its own batch size
    and order, a dataset is shuffled with ``seed`` in batches of ``batch_size``.
    All layers train in one pass over the data: the model runs once per batch, without
    gradients, and each decoder learns from its own reconstruction error (squared error
    summed per image, averaged over the batch). Returns one row per epoch: ``epoch``,
    ``train_recon`` and, with ``test_data``, ``test_recon_mse`` (per pixel) per layer,
    ``test_accuracy`` and ``seconds``.

    ``decoder_loss``: the paper's pixel error (the default), or ours (``core.config.DecoderLoss``:
    feature, deepsim), its comparator "self" the model's own layers; ``train_recon`` is then that
    loss. ``judges``: run folders that will read the perceptions, refused as its comparator.
    """
    train_data, test_data, names = _prepare(seen, train_data, test_data, layers, epochs, batch_size, device)
    objective = _objective(seen, decoder_loss, judges, device, progress)
    return _train(seen, train_data, test_data, names, None, epochs, batch_size, lr, seed, device, progress, objective)


def fine_tune(seen: AttachedModel, train_data, *, lam: float, epochs: int = 10,
              batch_size: int = 64, lr: float = 1e-3, seed: int = 0, device: torch.device | str = "cpu",
              layers: Sequence[str] | None = None, progress: bool = True, test_data=None,
              decoder_loss: DecoderLoss = DecoderLoss(), judges: Sequence[str] = ()) -> dict:
    """Train the model itself with the paper's objective, CE(H(x), y) + lam * the mean over
    ``layers`` (default all) of their reconstruction errors, the decoders alongside: lam
    weighs the layers' mean (``core.loss.layers_loss``), so its pull on the model does not grow with
    the number of layers attached.

    The model is unfrozen (``requires_grad`` on for the parameters the user left trainable,
    train mode) for the duration and frozen again after, whatever happens. Returns ``history`` (rows as ``fit_decoders``' plus
    ``train_ce``) and, with ``test_data``, ``accuracy_before`` and ``accuracy_after``.
    ``decoder_loss``, ``judges``: as ``fit_decoders``' (the comparator stays frozen: see ``core.decoder_losses``).
    """
    if lam < 0:
        raise PerceptregError(f"lam must be >= 0, got {lam}")
    train_data, test_data, names = _prepare(seen, train_data, test_data, layers, epochs, batch_size, device)
    before = evaluate_layers(seen, test_data, device=device, layers=names)["accuracy"] if test_data else None
    objective = _objective(seen, decoder_loss, judges, device, progress)
    with seen.unfrozen():
        history = _train(seen, train_data, test_data, names, lam, epochs, batch_size, lr, seed, device, progress,
                         objective)
    after = history[-1]["test_accuracy"] if test_data else None
    return {"history": history, "accuracy_before": before, "accuracy_after": after}


def _prepare(seen: AttachedModel, train_data, test_data, layers: Sequence[str] | None, epochs: int,
             batch_size: int, device) -> tuple[ImageBatches, ImageBatches | None, list[str]]:
    for arg, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise PerceptregError(f"{arg} must be >= 1, got {value}")
    train_data = _checked_shape(seen, train_data, "train_data")
    test_data = None if test_data is None else _checked_shape(seen, test_data, "test_data")
    names = seen.chosen_layers(layers)
    seen.to(device)
    seen.init_decoder_biases(train_data.pixel_mean())
    return train_data, test_data, names


def _objective(seen: AttachedModel, loss: DecoderLoss, judges: Sequence[str], device, announce: bool):
    """The decoders' objective (None: the paper's pixel error); "self" compares in the user's
    model, its input normalised as the model expects."""
    return decoder_objective(loss, seen.input_shape, seen.model, prepare=seen._normalized, judges=judges,
                             device=device, announce=announce)


def _checked_shape(seen: AttachedModel, data, arg: str) -> ImageBatches:
    data = image_batches(data, arg)
    if data.image_shape != seen.input_shape:
        raise PerceptregError(f"{arg} has images of shape {data.image_shape}, the attached model "
                              f"takes {seen.input_shape}; use data of the model's input shape")
    return data


def _train(seen: AttachedModel, train_data: ImageBatches, test_data: ImageBatches | None,
           names: list[str], lam: float | None, epochs: int, batch_size: int, lr: float, seed: int,
           device, progress: bool, objective=None) -> list[dict]:
    """The epochs: lam None trains the decoders alone (post hoc), a number the model too."""
    params = [p for n in names for p in seen.decoder(n).parameters()]
    if lam is not None:  # inside ``unfrozen``: the parameters the user left trainable
        params += [p for p in seen.model.parameters() if p.requires_grad]
    # One Adam over all decoders trains each exactly as alone: the loss is a sum of one term
    # per decoder and they share no parameter, so each gets its own term's gradient, and
    # Adam keeps its moments per parameter.
    optimizer = torch.optim.Adam(params, lr=lr)
    if objective is not None and objective.discriminator is not None:  # beta1 0.5, as in `train`
        optimizer.add_param_group({"params": list(objective.discriminator.parameters()), "betas": (0.5, 0.999)})
    history = []
    # One bar over every batch of every epoch: its time left is the whole fitting's.
    per_epoch = train_data.batch_count(batch_size)
    with tqdm(total=per_epoch and per_epoch * epochs, disable=not progress, leave=False, unit="batch",
              desc="fitting decoders" if lam is None else "fine-tuning") as bar:
        for epoch in range(1, epochs + 1):
            began = time.perf_counter()
            seen.train()  # the decoders; the model stays in eval unless fine-tuning (see train())
            bar.set_postfix_str(f"epoch {epoch}/{epochs}")
            means, logits_finite = _epoch(seen, train_data, names, optimizer, epoch, batch_size, seed, device, bar,
                                          lam, objective)
            _require_finite(means + [0.0 if logits_finite else math.nan], "the training loss or the model's logits",
                            epoch)
            row: dict = {"epoch": epoch, "train_recon": dict(zip(names, means[1:]))}
            if lam is not None:
                row["train_ce"] = means[0]
            if test_data is not None:
                quality = evaluate_layers(seen, test_data, device=device, layers=names)
                _require_finite(list(quality["recon_mse"].values()), "the test reconstruction error", epoch)
                row.update(test_recon_mse=quality["recon_mse"], test_accuracy=quality["accuracy"])
            history.append({**row, "seconds": time.perf_counter() - began})
    seen.eval()
    return history


def _require_finite(values: list[float], what: str, epoch: int) -> None:
    """Stop, as `train` does, rather than write NaN measures that read as numbers."""
    if not all(math.isfinite(v) for v in values):
        raise NonFiniteLossError(f"{what} became NaN or infinite in epoch {epoch}; nothing was kept. Try a lower "
                                 f"`lr` (or `lam`), and check the model's weights, its forward and `normalize`")


def _epoch(seen: AttachedModel, data: ImageBatches, names: list[str], optimizer, epoch: int,
           batch_size: int, seed: int, device, bar: tqdm, lam: float | None, objective=None) -> tuple[list[float], bool]:
    """One epoch; returns its mean per image of (ce, recon of each layer), and whether every
    logit was finite (post hoc the logits are in no loss, so a NaN there shows nowhere else)."""
    # Seeded per epoch: fitting one layer alone sees the same batches as fitting all.
    shuffle = torch.Generator().manual_seed((seed * 100_003 + epoch) % 2**64)  # torch takes 64 bits
    sums = torch.zeros(1 + len(names), dtype=torch.float64, device=device)
    logits_finite = torch.ones((), dtype=torch.bool, device=device)
    seen_images = 0
    for images, labels in data.batches(batch_size, shuffle=True, generator=shuffle, device=device):
        # Post hoc, the model runs without autograd: its activations arrive detached.
        with torch.set_grad_enabled(lam is not None):
            logits, acts = seen.features(images, names)  # (B, classes), name -> (B, ...)
        decoded = [seen.decoder(n)(acts[n]) for n in names]
        if lam is None:  # post hoc: the errors summed, so each decoder gets its own term's gradient
            terms = [decoder_terms(images, recon, "sum", objective) for recon in decoded]
            recons = torch.stack([loss for loss, _ in terms])
            # one discriminator judges every layer's decoded images: its hinge losses' mean
            loss = recons.sum() + torch.stack([critic for _, critic in terms]).mean()
            ce = torch.zeros((), device=device)
        else:  # the paper's objective, that `train` uses too (core.loss)
            (loss, ce, _), recons = layers_loss(logits, labels, images, decoded, lam, "sum", objective)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums += torch.cat([ce.detach().view(1), recons.detach()]).double() * len(images)
        logits_finite &= torch.isfinite(logits.detach()).all()
        seen_images += len(images)
        bar.update()
    return (sums / max(seen_images, 1)).tolist(), bool(logits_finite)  # one device sync per epoch


@torch.no_grad()
def evaluate_layers(seen: AttachedModel, data, batch_size: int = 500,
                    device: torch.device | str = "cpu", layers: Sequence[str] | None = None) -> dict:
    """The model's accuracy on ``data`` (a ``DataLoader`` or ``Dataset`` of (image, label), see
    ``fit_decoders``) and each layer's reconstruction MSE per pixel:
    ``{"accuracy": float, "recon_mse": {layer: float}}`` (a ``LayerMeasures``, a table in Jupyter),
    one forward per batch."""
    data = _checked_shape(seen, data, "data")
    names = seen.chosen_layers(layers)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    squared = torch.zeros(len(names), dtype=torch.float64, device=device)
    counted = 0
    with evaluating(seen):
        for images, labels in data.batches(batch_size, device=device):
            counted += len(images)
            logits, acts = seen.features(images, names)
            correct += (logits.argmax(1) == labels).sum()
            if names:  # none: the model's accuracy alone
                squared += torch.stack([(seen.decoder(n)(acts[n]).double() - images).square().sum()
                                        for n in names])
    values = torch.cat([correct.double().view(1), squared / math.prod(seen.input_shape)]) / max(counted, 1)
    accuracy, *mse = values.tolist()  # one device sync
    return LayerMeasures(accuracy=accuracy, recon_mse=dict(zip(names, mse)))


# --- an attach run: the user's model from its file, decoders fitted, measured, drawn -----------
