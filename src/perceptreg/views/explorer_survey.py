"""What the explorer knows of the whole test set, computed in batches of BATCH images so a
large test set (26k SVHN images, CelebA at 64x64) never sits in memory as latents or
reconstructions: per image only H's prediction, its confidence and the reconstruction error
(``Scores``, for the gallery's filters); and a 2-D map (PCA) of the latents of at most
``MAX_MAP_POINTS`` images, a seeded sample (``LatentMap``).

    scores = Scores.of(model, test.images, test.labels)          # three numbers per image
    select(test.labels, label=3, show="misclassified", sort="error", scores=scores)
    latent_map = LatentMap.of(model, test.images, sample(len(test), 2000))
    latent_map.project(z)                                        # any latents onto the map
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from perceptreg.core.models import evaluating
from perceptreg.data import spread_over_classes, to_float

BATCH = 256  # images per forward pass: bounds the memory of a survey, whatever the test set's size
MAX_MAP_POINTS = 2000  # points on the map of z: enough to see the classes, light for the page
MAP_SEED = 0  # the map's sample is the same on every start, so a map can be compared with a screenshot
LOW_CONFIDENCE = 0.6  # "low confidence" in the gallery: H gives its answer less than this
Show = Literal["all", "misclassified", "low-confidence"]
Sort = Literal["classes", "error", "confidence"]


def _batches(model, images_uint8: torch.Tensor, index: torch.Tensor, device):
    """(x, logits, z, P(x)) of ``images_uint8[index]``, BATCH images at a time."""
    with evaluating(model), torch.no_grad():
        for part in index.split(BATCH):
            x = to_float(images_uint8[part]).to(device)
            logits, z, recon = model(x)
            yield x, logits.float(), z, recon


@dataclass(frozen=True)
class Scores:
    """Per test image: H's prediction, its confidence, and the detector's score."""

    predictions: torch.Tensor  # (N,)
    confidence: torch.Tensor  # (N,) H's probability of its prediction
    error: torch.Tensor  # (N,) mean squared error of P(x) against x: the detector's score

    @classmethod
    def of(cls, model, images_uint8: torch.Tensor, device="cpu") -> "Scores":
        predictions, confidence, error = [], [], []
        for x, logits, _, recon in _batches(model, images_uint8, torch.arange(len(images_uint8)), device):
            top = logits.softmax(1).max(1)
            confidence.append(top.values.cpu())
            predictions.append(top.indices.cpu())
            error.append((recon.float() - x).pow(2).flatten(1).mean(1).cpu())
        return cls(torch.cat(predictions), torch.cat(confidence), torch.cat(error))


def select(labels: torch.Tensor, label: int | None = None, show: Show = "all", sort: Sort = "classes",
           scores: Scores | None = None) -> torch.Tensor:
    """Indices of the test images the gallery shows, in the order it shows them. ``scores``
    is needed only to filter or sort by what the model reads (``needs_scores``)."""
    keep = torch.ones(len(labels), dtype=torch.bool)
    if label is not None:
        keep &= labels == label
    if show == "misclassified":
        keep &= scores.predictions != labels
    elif show == "low-confidence":
        keep &= scores.confidence < LOW_CONFIDENCE
    chosen = keep.nonzero().flatten()
    if sort == "error":
        return chosen[scores.error[chosen].argsort(descending=True, stable=True)]
    if sort == "confidence":
        return chosen[scores.confidence[chosen].argsort(stable=True)]
    if len(chosen) == 0:
        return chosen
    # the classes in turn, not the data's order (often sorted by class)
    return chosen[spread_over_classes(labels[chosen], len(chosen))]


def needs_scores(show: Show, sort: Sort) -> bool:
    """Whether ``select`` reads the model's scores: the first gallery page does not wait for them."""
    return show != "all" or sort != "classes"


def sample(n: int, cap: int | None = None, seed: int = MAP_SEED) -> torch.Tensor:
    """The test images on the map: ``min(n, cap)`` of them (default MAX_MAP_POINTS) drawn with
    ``seed``, in a shuffled order (drawn in the data's order, often by class, the last class
    would cover the others)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:cap or MAX_MAP_POINTS]


@dataclass(frozen=True)
class LatentMap:
    """The latents of some test images projected on their first two principal axes."""

    index: torch.Tensor  # (M,) the test images on the map
    predictions: torch.Tensor  # (M,) H's prediction of each
    mean: torch.Tensor  # (d,) of the flattened latents
    axes: torch.Tensor  # (d, 2) the first two principal directions
    points: torch.Tensor  # (M, 2) each latent on the map

    @classmethod
    def of(cls, model, images_uint8: torch.Tensor, index: torch.Tensor, device="cpu") -> "LatentMap":
        predictions, latents = [], []
        for _, logits, z, _ in _batches(model, images_uint8, index, device):
            predictions.append(logits.argmax(1).cpu())
            latents.append(z.float().flatten(1).cpu())
        z = torch.cat(latents)  # (M, d): at most MAX_MAP_POINTS rows
        mean = z.mean(0)
        # SVD, not torch.pca_lowrank: exact and the same on every call (pca_lowrank is randomized)
        _, _, vh = torch.linalg.svd(z - mean, full_matrices=False)
        axes = vh[:2].T  # (d, 2)
        if axes.shape[1] < 2:  # a one-dimensional latent: the map's second axis is flat
            axes = torch.cat([axes, torch.zeros(len(mean), 2 - axes.shape[1])], 1)
        return cls(index, torch.cat(predictions), mean, axes, (z - mean) @ axes)

    def project(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, *latent) -> (B, 2) map coordinates."""
        return (latents.float().flatten(1).cpu() - self.mean) @ self.axes
