"""Latent directions from targeted attacks, and edits along them (the paper's Fig. 6).

A targeted attack moves x to x_adv, classified as the target; in the latent space that is
the direction dz = F(x_adv) - F(x). Decoding z = F(x) + a * dz for a in 0 .. 2 edits the
image toward the target: D(F(x) + a * dz). (The paper's text writes C where it means D.)

- ``toward``: per-image directions from a targeted attack;
- ``mean_direction``: their mean over a set of images, a reusable concept vector, saved
  with ``save_direction`` (safetensors + JSON) and applied to new images;
- ``decode_along``: the edited images; ``flip_curve`` and ``locality``: what the edit does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch
from pydantic import ConfigDict, Field, NonNegativeInt, PositiveInt, model_validator

from perceptreg import data as datasets
from perceptreg import measures, runs
from perceptreg.adversarial.attacks import PGD, check_target
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.storage import fileio
from perceptreg.storage.fileio import CheckpointError
from perceptreg.storage.schema import SHA256, Sealed, load_sealed_file, write_sealed

DEFAULT_ALPHAS = tuple(a / 4 for a in range(9))  # 0, 0.25, ..., 2, as in the paper
H_IMAGE, C_LATENT = "H(image)", "C(latent)"  # the readers of every edit; judges are named by themselves


@dataclass(frozen=True)
class Direction:
    """A latent direction toward ``target``: the mean of ``count`` per-image directions."""

    vector: torch.Tensor  # (*latent_shape)
    target: int
    source: int | None  # the class it was fitted on; None: images of every other class
    count: int
    meta: dict = field(default_factory=dict)


@torch.no_grad()
def _encode(model: PerceptionNet, images: torch.Tensor) -> torch.Tensor:
    with evaluating(model):
        return model.encoder(images)


def latent_directions(model: PerceptionNet, images: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
    """dz = F(x_adv) - F(x) per image: (B, *latent_shape)."""
    return _encode(model, adversarial) - _encode(model, images)


def toward(model: PerceptionNet, images: torch.Tensor, target: int, attack: PGD) -> tuple[torch.Tensor, torch.Tensor]:
    """Attack ``images`` toward ``target``; returns (x_adv, dz per image)."""
    check_target(target, model.num_classes)
    targets = torch.full((len(images),), target, dtype=torch.long, device=images.device)
    adversarial = attack(images, targets, targets)
    return adversarial, latent_directions(model, images, adversarial)


def mean_direction(model: PerceptionNet, images: torch.Tensor, target: int, attack: PGD,
                   source: int | None = None, meta: dict | None = None) -> Direction:
    """The mean of the per-image directions of ``images`` toward ``target``."""
    if len(images) == 0:
        raise PerceptregError("mean_direction needs at least one image (the image set is empty)")
    _, directions = toward(model, images, target, attack)
    return Direction(directions.mean(0), target, source, len(images), dict(meta or {}))


@torch.no_grad()
def decode_along(model: PerceptionNet, images: torch.Tensor, directions: torch.Tensor,
                 alphas: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents F(x) + a * dz and their decodings D(.) for every image and alpha.

    ``directions`` is one per image (B, *latent) or one for all (*latent).
    Returns (latents (B, A, *latent), images (B, A, C, H, W)).
    """
    z = _encode(model, images)  # (B, *latent)
    steps = torch.as_tensor(list(alphas), dtype=z.dtype, device=z.device)  # (A,)
    shape = (1, len(steps)) + (1,) * (z.dim() - 1)
    latents = z.unsqueeze(1) + steps.view(shape) * directions.expand_as(z).unsqueeze(1)  # (B, A, *latent)
    with evaluating(model):
        # One alpha at a time: the same batch as model.perceive(images), so a = 0 gives P(x)
        # bit for bit (conv kernels sum in a batch-size-dependent order).
        decoded = torch.stack([model.decoder(latents[:, i]) for i in range(len(steps))], 1)
    return latents, decoded.float()


# --- what an edit does -------------------------------------------------------------------------

@torch.no_grad()
def read_edits(model: PerceptionNet, latents: torch.Tensor, edited: torch.Tensor,
               judges: Sequence = ()) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Who reads which class at every step: H on the edited image, C on the edited latent,
    and each judge on the edited image. Returns ({reader: labels (B, A)}, H's confidence (B, A))."""
    with evaluating(model):
        images = edited.flatten(0, 1)
        confidence, on_image = model.classify(images).float().softmax(1).max(1)
        on_latent = model.classifier(latents.flatten(0, 1)).argmax(1)
    shape = edited.shape[:2]
    readings = {H_IMAGE: on_image.view(shape), C_LATENT: on_latent.view(shape)}
    readings.update({judge.name: judge(images).view(shape) for judge in judges})
    return readings, confidence.view(shape)


def flip_curve(readings: dict[str, torch.Tensor], target: int) -> dict[str, list[float]]:
    """Per reader, the fraction of images read as ``target`` at each alpha."""
    return {name: (labels == target).float().mean(0).tolist() for name, labels in readings.items()}


def flip_interval(readings: dict[str, torch.Tensor], target: int) -> dict[str, list[list[float]]]:
    """Per reader, the 95 % interval [low, high] of ``flip_curve``'s fraction at each alpha."""
    intervals = {}
    for name, labels in readings.items():  # labels: (images, alphas)
        measured = [measures.rate(count, len(labels)) for count in (labels == target).sum(0).tolist()]
        intervals[name] = [[m["low"], m["high"]] for m in measured]
    return intervals


def target_region(class_images: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """Pixels the target class needs: where its mean training image exceeds ``threshold``
    (after averaging channels). (N, C, H, W) in [0, 1] -> bool (H, W)."""
    return class_images.float().mean((0, 1)) > threshold


@torch.no_grad()
def locality(edited: torch.Tensor, region: torch.Tensor) -> dict:
    """How much of the image the edit changes, from a = 0 (which is P(x)) to the last alpha.

    Returns the per-pixel mean absolute change over images and channels (H, W) and its mean
    inside and outside ``region``; an edit that touches only the concept has a small
    ``outside`` and a ratio outside / inside well below 1. A side with no pixel (natural
    images, whose mean covers the whole frame, have no outside) is None, as is the ratio
    then: undefined, not NaN, which JSON cannot hold.
    """
    change = (edited[:, -1] - edited[:, 0]).abs().mean((0, 1))  # (H, W)
    inside = change[region].mean().item() if region.any() else None
    outside = change[~region].mean().item() if (~region).any() else None
    ratio = outside / inside if inside and outside is not None else None
    return {"change_map": change, "inside": inside, "outside": outside, "outside_to_inside": ratio}


# --- direction files -----------------------------------------------------------------------------

DIRECTION_FORMAT = "perceptreg.direction/1"


def direction_path(path: str | Path, reads=(), run: str | Path | None = None) -> Path:
    """Where ``save_direction`` writes for ``path`` (its .safetensors name, and the .json beside
    it), checked before any work by the rule of outputs (``runs.check_output_file``): a
    writable folder, never beside a device or folder the user named, never a file of a run
    (the direction's own names, direction-*, go into ``run``, the run it was fitted on) nor one
    of ``reads``."""
    given = fileio.check_output_path(path)  # refuses /dev/full itself: no /dev/full.safetensors beside it
    if given.is_dir():
        raise CheckpointError(f"cannot write {given}: it is a folder; give a file name for the direction")
    reads = (*reads, *(Path(r).with_suffix(".json") for r in reads if Path(r).suffix == ".safetensors"))
    for written in (given.with_suffix(".safetensors"), given.with_suffix(".json")):
        try:
            runs.check_output_file(written, owned=("direction-*",), run=run, reads=reads)
        except PerceptregError as err:  # name what the user gave, not only the file it becomes
            raise PerceptregError(f"`save_direction` {given} is written as {written.name}: {err}") from err
    return given.with_suffix(".safetensors")


def save_direction(direction: Direction, path: str | Path, model: PerceptionNet, reads=(),
                   run: str | Path | None = None) -> Path:
    """``path`` (.safetensors) holds the vector; ``path`` with .json its source, its model and
    the tensor file's SHA-256 (safetensors files carry no checksum: a flipped bit is caught),
    sealed by its own checksum (a flipped bit in its target class is caught too)."""
    path = direction_path(path, reads, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.save_tensors(path, {"direction": direction.vector})
    write_sealed(path.with_suffix(".json"), DirectionFile(
        format=DIRECTION_FORMAT, target=direction.target, source=direction.source, count=direction.count, latent_shape=list(model.latent_shape),
        num_classes=model.num_classes, sha256=datasets.digest_of(path), meta=direction.meta,
    ).model_dump(exclude={"checksum"}))
    return path


class DirectionFile(Sealed):
    """The JSON beside a direction's tensor, sealed: the direction's target, source and count,
    the model it was made for, the tensor file's SHA-256, and ``meta``, what the direction's
    maker recorded of it (its run and attack; any JSON). Files of before (main f9ee0de) hold
    ``meta``'s keys at the top level: read as its keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal[DIRECTION_FORMAT]
    target: NonNegativeInt
    source: NonNegativeInt | None
    count: PositiveInt
    latent_shape: list[PositiveInt]
    num_classes: PositiveInt
    sha256: str | None = Field(default=None, pattern=SHA256)  # of the .safetensors file; older directions have none
    meta: dict

    @model_validator(mode="before")
    @classmethod
    def _gather_meta(cls, values):
        if isinstance(values, dict) and "meta" not in values:
            named = set(cls.model_fields) | {"checksum"}
            values = {**{k: v for k, v in values.items() if k in named},
                      "meta": {k: v for k, v in values.items() if k not in named}}
        return values


def load_direction(path: str | Path, model: PerceptionNet) -> Direction:
    """A saved direction, checked against its schema and ``model``'s latent shape and classes."""
    path = Path(path).with_suffix(".safetensors")
    saved = DirectionFile.model_validate(load_sealed_file(
        path.with_suffix(".json"), DirectionFile, "save the direction again (`perceptreg interpolate --save-direction`)"))
    if saved.sha256 is not None and datasets.digest_of(path) != saved.sha256:
        raise CheckpointError(f"{path}: its SHA-256 differs from the one in {path.with_suffix('.json')}; the file "
                              f"is damaged: save the direction again (`perceptreg interpolate --save-direction`)")
    vector = fileio.load_tensors(path).get("direction")
    if vector is None:
        raise PerceptregError(f"{path}: holds no 'direction' tensor")
    if vector.dtype != torch.float32 or not torch.isfinite(vector).all():
        raise PerceptregError(f"{path}: the direction must be finite float32 numbers "
                              f"(it is {vector.dtype}{'' if torch.isfinite(vector).all() else ' with NaN or inf'}); "
                              f"save the direction again")
    if tuple(vector.shape) != model.latent_shape or tuple(saved.latent_shape) != model.latent_shape:
        raise PerceptregError(f"{path}: a direction in a latent space of shape {tuple(vector.shape)}, "
                              f"this model's latent has shape {model.latent_shape}: it was made for "
                              f"another architecture or latent size")
    if saved.num_classes != model.num_classes:
        raise PerceptregError(f"{path}: made for a model with {saved.num_classes} classes, "
                              f"this one has {model.num_classes}")
    if saved.target >= model.num_classes:
        raise PerceptregError(f"{path}: a direction toward class {saved.target}, "
                              f"but the model has classes 0..{model.num_classes - 1}")
    return Direction(vector, saved.target, saved.source, saved.count, saved.meta)


MAX_ALPHAS = 201  # an edit decodes every alpha for every image: keep the grid finite


def parse_alphas(text: str) -> tuple[float, ...]:
    """"0:2:0.25" (start:stop:step, stop included) or "0,0.5,1" -> alphas (finite, at most MAX_ALPHAS)."""
    hint = "give start:stop:step (e.g. 0:2:0.25) or numbers separated by commas (e.g. 0,0.5,1)"
    try:
        parts = tuple(float(p) for p in text.split(":" if ":" in text else ","))
    except ValueError:
        raise PerceptregError(f"`alphas` {text!r}: {hint}") from None
    if not all(math.isfinite(p) for p in parts):
        raise PerceptregError(f"`alphas` {text!r}: every value must be a finite number")
    if ":" not in text:
        values = parts
    else:
        if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
            raise PerceptregError(f"`alphas` {text!r}: {hint}, with step > 0 and stop >= start")
        start, stop, step = parts
        intervals = (stop - start) / step
        if not intervals < MAX_ALPHAS:  # also catches an infinite ratio of finite numbers
            raise PerceptregError(f"`alphas` {text!r}: more than {MAX_ALPHAS} values; take a larger step")
        values = tuple(round(start + i * step, 10) for i in range(math.floor(intervals + 1e-9) + 1))
    if len(values) > MAX_ALPHAS:
        raise PerceptregError(f"`alphas` {text!r}: {len(values)} values; at most {MAX_ALPHAS} are decoded")
    return values
