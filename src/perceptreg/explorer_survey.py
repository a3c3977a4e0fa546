"""What the explorer knows of the whole test set: each image's prediction, confidence and
reconstruction error, and a 2-D map of the latents (PCA), computed once per model.

    survey = Survey.of(model, test, classes)        # batched passes over the test set
    survey.select(label=3, show="misclassified", sort="error")   # gallery filters
    survey.project(z)                               # any latents onto the map
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from perceptreg.data import spread_over_classes, to_float
from perceptreg.models import evaluating

BATCH = 256
LOW_CONFIDENCE = 0.6  # "low confidence" in the gallery: H gives its answer less than this
Show = Literal["all", "misclassified", "low-confidence"]
Sort = Literal["classes", "error", "confidence"]


@dataclass(frozen=True)
class Survey:
    labels: torch.Tensor  # (N,)
    predictions: torch.Tensor  # (N,)
    confidence: torch.Tensor  # (N,) H's probability of its prediction
    error: torch.Tensor  # (N,) mean squared error of P(x) against x: the detector's score
    mean: torch.Tensor  # (d,) of the flattened latents
    axes: torch.Tensor  # (d, 2) the first two principal directions
    points: torch.Tensor  # (N, 2) every latent on the map

    @classmethod
    @torch.no_grad()
    def of(cls, model, images_uint8: torch.Tensor, labels: torch.Tensor, device="cpu") -> "Survey":
        predictions, confidence, error, latents = [], [], [], []
        with evaluating(model):
            for part in torch.arange(len(images_uint8)).split(BATCH):
                x = to_float(images_uint8[part]).to(device)
                logits, z, recon = model(x)
                top = logits.float().softmax(1).max(1)
                confidence.append(top.values.cpu())
                predictions.append(top.indices.cpu())
                error.append((recon.float() - x).pow(2).flatten(1).mean(1).cpu())
                latents.append(z.float().flatten(1).cpu())
        z = torch.cat(latents)  # (N, d)
        mean = z.mean(0)
        # SVD, not torch.pca_lowrank: exact and the same on every call (pca_lowrank is randomized)
        _, _, vh = torch.linalg.svd(z - mean, full_matrices=False)
        axes = vh[:2].T  # (d, 2)
        if axes.shape[1] < 2:  # a one-dimensional latent: the map's second axis is flat
            axes = torch.cat([axes, torch.zeros(len(mean), 2 - axes.shape[1])], 1)
        return cls(labels.cpu(), torch.cat(predictions), torch.cat(confidence), torch.cat(error),
                   mean, axes, (z - mean) @ axes)

    def project(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, *latent) -> (B, 2) map coordinates."""
        return (latents.float().flatten(1).cpu() - self.mean) @ self.axes

    def select(self, label: int | None = None, show: Show = "all", sort: Sort = "classes") -> torch.Tensor:
        """Indices of the test images the gallery shows, in the order it shows them."""
        keep = torch.ones(len(self.labels), dtype=torch.bool)
        if label is not None:
            keep &= self.labels == label
        if show == "misclassified":
            keep &= self.predictions != self.labels
        elif show == "low-confidence":
            keep &= self.confidence < LOW_CONFIDENCE
        chosen = keep.nonzero().flatten()
        if sort == "error":
            return chosen[self.error[chosen].argsort(descending=True, stable=True)]
        if sort == "confidence":
            return chosen[self.confidence[chosen].argsort(stable=True)]
        if len(chosen) == 0:
            return chosen
        # the classes in turn, not the data's order (often sorted by class)
        return chosen[spread_over_classes(self.labels[chosen], len(chosen))]
