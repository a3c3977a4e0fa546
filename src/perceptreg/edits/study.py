"""An edit study: images edited toward a class along each image's own direction and along a
mean direction, read by H, C and judges, with typed measures (``RunEdits``).

    study = study_edits(model, images, target=8, attack=PGD(model, eps=0.2))
    study.summary.directions.mean.flip_curve.H   # fraction read as 8 by H, per alpha
    study, region = study_run(run, EditSettings(target=8), AttackSettings())   # of a run folder
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Sequence, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, model_serializer, model_validator

from perceptreg import data as datasets
from perceptreg.adversarial.attacks import PGD, AttackSettings, check_target
from perceptreg.adversarial.judges import architecture, main_judge
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet
from perceptreg.edits.latent import (
    C_LATENT,
    DEFAULT_ALPHAS,
    H_IMAGE,
    Direction,
    decode_along,
    flip_curve,
    flip_interval,
    load_direction,
    locality,
    mean_direction,
    read_edits,
    target_region,
    toward,
)
from perceptreg.measures import format_rate
from perceptreg.runs import Run

# frozen, no unknown key; written under the on-disk names ("H(image)", "per-image")
RESULT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)
V = TypeVar("V")


class ByReader(BaseModel, Generic[V]):
    """One value per reader: H on the edited image, C on the edited latent, and each judge on
    the edited image, by its name. On disk the judges sit beside "H(image)" and "C(latent)"."""

    model_config = RESULT
    H: V = Field(alias=H_IMAGE)
    C: V = Field(alias=C_LATENT)
    judges: dict[str, V] = {}

    @model_validator(mode="before")
    @classmethod
    def _gather_judges(cls, values):
        if isinstance(values, dict) and "judges" not in values:  # the flat form of the file
            readers = (H_IMAGE, C_LATENT, "H", "C")
            values = {**{k: v for k, v in values.items() if k in readers},
                      "judges": {k: v for k, v in values.items() if k not in readers}}
        return values

    @model_serializer(mode="wrap")
    def _flat(self, handler) -> dict:
        values = handler(self)
        judges = values.pop("judges")
        return {**values, **judges}


class Locality(BaseModel):
    """``latent.locality``'s mean |change| inside and outside the target's region (None: no such pixel)."""

    model_config = RESULT
    inside: float | None
    outside: float | None
    outside_to_inside: float | None


class Edits(BaseModel):
    """What the edits along one kind of direction do, per alpha: the fraction of images each
    reader reads as the target, with its 95 % interval; and where they change the image."""

    model_config = RESULT
    flip_curve: ByReader[list[float]]
    flip_interval: ByReader[list[tuple[float, float]]]
    locality: Locality | None = None  # None: no target region was given

    def flipped(self, reader: str, at: int) -> dict:
        """The fraction ``reader`` (H, C or a judge's name) reads as the target at alpha number
        ``at``, as ``measures.rate`` gives it: {"rate", "low", "high"} (``format_rate`` says it)."""
        curve, interval = (getattr(self.flip_curve, reader), getattr(self.flip_interval, reader)) \
            if reader in ("H", "C") else (self.flip_curve.judges[reader], self.flip_interval.judges[reader])
        low, high = interval[at]
        return {"rate": curve[at], "low": low, "high": high}


class FittedOn(BaseModel):
    model_config = RESULT
    images: PositiveInt  # the images the mean direction is the mean over
    source: NonNegativeInt | None  # their class; None: every class but the target


class MeanEdits(Edits):
    fitted_on: FittedOn


class Directions(BaseModel):
    model_config = RESULT
    per_image: Edits = Field(alias="per-image")  # each image along its own dz
    mean: MeanEdits  # every image along the mean dz

    def by_kind(self) -> dict[str, Edits]:
        """The edits by the name of their kind of direction, as the files and figures name them."""
        return {"per-image": self.per_image, "mean": self.mean}


class RunEdits(BaseModel):
    """One run's edit study: ``images`` edited toward ``target`` at each of ``alphas``."""

    model_config = RESULT
    target: NonNegativeInt
    alphas: list[float]
    images: PositiveInt
    directions: Directions

    def judge(self) -> str | None:
        """The first judge's name (the one `perceptreg interpolate` reads), None without judges."""
        return next(iter(self.directions.mean.flip_curve.judges), None)

    def line(self, name: str, eps: float) -> str:
        """The mean direction's flip to the target at the last alpha (and the first), as the CLI says it."""
        mean, judge, alphas = self.directions.mean, self.judge(), self.alphas
        readers = [("H", "H")] + ([(judge, judge)] if judge else [])
        last = ", ".join(f"{said} {format_rate(mean.flipped(reader, -1))}" for said, reader in readers)
        first = ", ".join(format_rate(mean.flipped(reader, 0)) for _, reader in readers)
        return (f"{name}: mean direction (targeted PGD eps {eps:g}), flip to {self.target} at a={alphas[-1]:g}: "
                f"{last} (at a={alphas[0]:g}: {first}; {self.images} images)")


@dataclass(frozen=True)
class EditStudy:
    """Edits of ``images`` toward ``target`` along each image's own direction and along the
    mean direction, with every reader's labels, and the measures in ``summary``."""

    alphas: tuple[float, ...]
    target: int
    direction: Direction
    images: torch.Tensor  # (B, C, H, W) the images edited
    edited: dict[str, torch.Tensor]  # "per-image" / "mean" -> (B, A, C, H, W)
    readings: dict[str, dict[str, torch.Tensor]]  # kind -> reader -> (B, A)
    confidence: dict[str, torch.Tensor]  # kind -> H's confidence (B, A)
    summary: RunEdits


def _measured(readings: dict[str, torch.Tensor], edited: torch.Tensor, target: int,
              region: torch.Tensor | None) -> dict:
    """The measures of one kind of direction's edits, as ``Edits`` takes them."""
    near = None if region is None else {k: v for k, v in locality(edited, region).items() if k != "change_map"}
    return {"flip_curve": flip_curve(readings, target), "flip_interval": flip_interval(readings, target),
            "locality": near}


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
    check_target(target, model.num_classes)
    alphas = tuple(float(a) for a in alphas)
    if direction is None:
        direction = mean_direction(model, images if fit_images is None else fit_images, target, attack, source)
    _, per_image = toward(model, images, target, attack)
    kinds = {"per-image": per_image, "mean": direction.vector.to(images.device)}
    edited, readings, confidence, measured = {}, {}, {}, {}
    for kind, vectors in kinds.items():
        latents, edited[kind] = decode_along(model, images, vectors, alphas)
        readings[kind], confidence[kind] = read_edits(model, latents, edited[kind], judges)
        measured[kind] = _measured(readings[kind], edited[kind], target, region)
    measured["mean"]["fitted_on"] = {"images": direction.count, "source": direction.source}
    summary = RunEdits(target=target, alphas=list(alphas), images=len(images), directions=measured)
    return EditStudy(alphas, target, direction, images, edited, readings, confidence, summary)


# --- a study of a run folder (what `perceptreg interpolate` does for each run) -------------------

@dataclass(frozen=True)
class EditSettings:
    """What to edit toward which class: the choices of an edit study of a run."""

    target: int
    source: int | None = None  # edit (and fit the mean direction on) this class only; None: every other
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    images: int = 8  # test images edited
    fit_images: int = 100  # training images the mean direction is averaged over
    from_file: Path | None = None  # edit this image file (or folder) instead of test images
    direction_file: Path | None = None  # apply this saved direction instead of fitting one

    def __post_init__(self):
        if self.source is not None and self.source == self.target:
            raise PerceptregError(f"`source` and `target` are both class {self.target}: an edit goes from one "
                                  f"class toward another; give another source, or none (every other class)")


def _pick(data, target: int, source: int | None, count: int) -> torch.Tensor:
    """Up to ``count`` indices of images of ``source`` (or of any class but ``target``), spread over classes."""
    keep = data.labels != target if source is None else data.labels == source
    chosen = keep.nonzero().squeeze(1)
    if len(chosen) == 0:
        raise PerceptregError(f"no images of class {source} in {data.name}")
    return chosen[datasets.spread_over_classes(data.labels[chosen], min(count, len(chosen)))]


def _given_direction(settings: EditSettings, model: PerceptionNet) -> Direction | None:
    """The saved direction ``settings`` applies, checked against the model and the target."""
    if settings.direction_file is None:
        return None
    direction = load_direction(settings.direction_file, model)
    if direction.target != settings.target:
        raise PerceptregError(f"{settings.direction_file}: a direction toward class {direction.target}, "
                              f"not toward the `target` {settings.target}")
    return direction


def study_run(run: Run, settings: EditSettings, attack: AttackSettings, device: str = "cpu",
              judge: Run | None = None) -> tuple[EditStudy, torch.Tensor]:
    """The edit study of a run's model: its test images (or ``from_file``) edited toward
    ``settings.target``, read by ``judge``'s model, else by ``main_judge``'s (a 3-NN pixel judge
    on grey digits, the dataset's standing CNN judge on natural images). The mean direction
    is fitted on training images, so it is tested on images it has not seen. ``attack``
    without eps: the radius of the run's images (``AttackSettings.for_images``). Returns the
    study and the target's region (pixels its mean training image covers), for locality."""
    if run.kind == "attached":
        raise PerceptregError(f"{run.path} is a run of `attach`: its layers have no classifier head of their "
                              f"own to read an edited latent, so latent edits need a run of `train`")
    model = run.model(device)
    train_data, test_data = run.data()
    check_target(settings.target, model.num_classes)
    if settings.source is not None:
        check_target(settings.source, model.num_classes, "source")
    if settings.from_file:
        images = datasets.load_image_files(settings.from_file, model.input_shape)
    else:
        images = test_data.images[_pick(test_data, settings.target, settings.source, settings.images)]
    fit = train_data.images[_pick(train_data, settings.target, settings.source, settings.fit_images)]
    direction = _given_direction(settings, model)
    region = target_region(datasets.to_float(train_data.images[train_data.labels == settings.target]))
    study = study_edits(model, datasets.to_float(images).to(device), settings.target,
                        attack.for_images(run.config.dataset, model.input_shape).build(model),
                        settings.alphas, [main_judge(run.config.dataset, train_data, judge, device, architecture(run.config))], region.to(device),
                        direction, datasets.to_float(fit).to(device), settings.source)
    return study, region
