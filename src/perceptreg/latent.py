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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from perceptreg import checkpoint
from perceptreg.attacks import PGD
from perceptreg.errors import PerceptregError
from perceptreg.models import PerceptionNet, evaluating

DEFAULT_ALPHAS = tuple(a / 4 for a in range(9))  # 0, 0.25, ..., 2, as in the paper


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
    _check_target(model, target)
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


def _check_target(model: PerceptionNet, target: int) -> None:
    if not 0 <= target < model.num_classes:
        raise PerceptregError(f"target class {target} is outside the model's classes 0..{model.num_classes - 1}")


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
    readings = {"H(image)": on_image.view(shape), "C(latent)": on_latent.view(shape)}
    readings.update({judge.name: judge(images).view(shape) for judge in judges})
    return readings, confidence.view(shape)


def flip_curve(readings: dict[str, torch.Tensor], target: int) -> dict[str, list[float]]:
    """Per reader, the fraction of images read as ``target`` at each alpha."""
    return {name: (labels == target).float().mean(0).tolist() for name, labels in readings.items()}


def target_region(class_images: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """Pixels the target class needs: where its mean training image exceeds ``threshold``
    (after averaging channels). (N, C, H, W) in [0, 1] -> bool (H, W)."""
    return class_images.float().mean((0, 1)) > threshold


@torch.no_grad()
def locality(edited: torch.Tensor, region: torch.Tensor) -> dict:
    """How much of the image the edit changes, from a = 0 (which is P(x)) to the last alpha.

    Returns the per-pixel mean absolute change over images and channels (H, W) and its mean
    inside and outside ``region``; an edit that touches only the concept has a small
    ``outside`` and a ratio outside / inside well below 1.
    """
    change = (edited[:, -1] - edited[:, 0]).abs().mean((0, 1))  # (H, W)
    inside = change[region].mean().item() if region.any() else float("nan")
    outside = change[~region].mean().item() if (~region).any() else float("nan")
    return {"change_map": change, "inside": inside, "outside": outside,
            "outside_to_inside": outside / inside if inside else float("nan")}


# --- direction files -----------------------------------------------------------------------------

DIRECTION_FORMAT = "perceptreg.direction/1"


def save_direction(direction: Direction, path: str | Path, model: PerceptionNet) -> Path:
    """``path`` (.safetensors) holds the vector; ``path`` with .json its source and model."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save_tensors(path, {"direction": direction.vector})
    checkpoint.write_json(path.with_suffix(".json"), {
        "format": DIRECTION_FORMAT, "target": direction.target, "source": direction.source,
        "count": direction.count, "latent_shape": list(model.latent_shape),
        "num_classes": model.num_classes, **direction.meta})
    return path


def load_direction(path: str | Path, model: PerceptionNet) -> Direction:
    """A saved direction, checked against ``model``'s latent shape and classes."""
    path = Path(path).with_suffix(".safetensors")
    meta = checkpoint.read_json(path.with_suffix(".json"))
    if meta.get("format") != DIRECTION_FORMAT:
        raise PerceptregError(f"{path.with_suffix('.json')}: not a perceptreg direction file")
    vector = checkpoint.load_tensors(path).get("direction")
    if vector is None:
        raise PerceptregError(f"{path}: holds no 'direction' tensor")
    if tuple(vector.shape) != model.latent_shape or tuple(meta["latent_shape"]) != model.latent_shape:
        raise PerceptregError(f"{path}: a direction in a latent space of shape {tuple(vector.shape)}, "
                              f"this model's latent has shape {model.latent_shape}: it was made for "
                              f"another architecture or latent size")
    if meta["num_classes"] != model.num_classes:
        raise PerceptregError(f"{path}: made for a model with {meta['num_classes']} classes, "
                              f"this one has {model.num_classes}")
    extra = {k: v for k, v in meta.items()
             if k not in ("format", "target", "source", "count", "latent_shape", "num_classes")}
    return Direction(vector, meta["target"], meta["source"], meta["count"], extra)


def parse_alphas(text: str) -> tuple[float, ...]:
    """"0:2:0.25" (start:stop:step, stop included) or "0,0.5,1" -> alphas."""
    try:
        if ":" in text:
            start, stop, step = (float(p) for p in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            return tuple(round(start + i * step, 10) for i in range(count) if start + i * step <= stop + 1e-9)
        values = tuple(float(p) for p in text.split(","))
        if not values:
            raise ValueError
        return values
    except ValueError:
        raise PerceptregError(f"--alphas {text!r}: give start:stop:step (e.g. 0:2:0.25) or "
                              f"numbers separated by commas (e.g. 0,0.5,1)") from None


# --- one study: per-image and mean directions on the same images -----------------------------

@dataclass
class EditStudy:
    """Edits of ``images`` toward ``target`` along each image's own direction and along the
    mean direction, with every reader's labels, the flip curves and the locality."""

    alphas: tuple[float, ...]
    target: int
    direction: Direction
    edited: dict[str, torch.Tensor]  # "per-image" / "mean" -> (B, A, C, H, W)
    readings: dict[str, dict[str, torch.Tensor]]  # kind -> reader -> (B, A)
    confidence: dict[str, torch.Tensor]  # kind -> H's confidence (B, A)
    summary: dict


def study_edits(model: PerceptionNet, images: torch.Tensor, target: int, attack: PGD,
                alphas: Sequence[float] = DEFAULT_ALPHAS, judges: Sequence = (),
                region: torch.Tensor | None = None, direction: Direction | None = None,
                fit_images: torch.Tensor | None = None, source: int | None = None) -> EditStudy:
    """Edit ``images`` toward ``target`` and measure it.

    The per-image directions come from attacking ``images`` themselves; the mean direction
    is ``direction`` if given, else the mean over ``fit_images`` (other images than the
    edited ones, so its flip curve shows whether the concept generalises).
    """
    if len(images) == 0:
        raise PerceptregError("no images to edit (the image set is empty)")
    _check_target(model, target)
    alphas = tuple(float(a) for a in alphas)
    if direction is None:
        direction = mean_direction(model, images if fit_images is None else fit_images, target, attack, source)
    _, per_image = toward(model, images, target, attack)
    kinds = {"per-image": per_image, "mean": direction.vector.to(images.device)}
    edited, readings, confidence, summary = {}, {}, {}, {"target": target, "alphas": list(alphas),
                                                          "images": len(images), "directions": {}}
    for kind, vectors in kinds.items():
        latents, edited[kind] = decode_along(model, images, vectors, alphas)
        readings[kind], confidence[kind] = read_edits(model, latents, edited[kind], judges)
        entry = {"flip_curve": flip_curve(readings[kind], target)}
        if region is not None:
            entry["locality"] = {k: v for k, v in locality(edited[kind], region).items() if k != "change_map"}
        summary["directions"][kind] = entry
    summary["directions"]["mean"]["fitted_on"] = {"images": direction.count, "source": direction.source}
    return EditStudy(alphas, target, direction, edited, readings, confidence, summary)
