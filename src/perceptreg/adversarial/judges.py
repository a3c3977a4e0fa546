"""Judges: independent readings of an image's class, to ask what a perception looks like.

    judge = KNNJudge(train_data)          # 3-NN in pixel space, another family than the CNN
    labels = judge(perceptions)           # (B,) class indices
"""

from __future__ import annotations

import torch

from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.data import ImageDataset, to_float
from perceptreg.measures import rate_of


class KNNJudge:
    """k-nearest neighbours in pixel space over a labelled reference set (the training set).

    A judge of another family than the network: PGD examples made for a CNN rarely move an
    image closer, in pixels, to another class's training digits, so its reading of x_adv
    stays mostly right, and its reading of P(x_adv) says what the perception looks like.
    """

    def __init__(self, reference: ImageDataset, k: int = 3, device: torch.device | str = "cpu"):
        if k < 1 or k > len(reference):
            raise ValueError(f"k must lie in 1..{len(reference)}, got {k}")
        self.k, self.num_classes = k, len(reference.classes)
        self.name = f"{k}-NN pixels"
        self.points = to_float(reference.images).flatten(1).to(device)  # (N, D)
        self.labels = reference.labels.to(device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        votes = []
        for chunk in images.flatten(1).float().split(batch_size):
            distances = torch.cdist(chunk.to(self.points.device), self.points)  # (b, N)
            nearest = self.labels[distances.topk(self.k, largest=False).indices]  # (b, k), nearest first
            # One vote each, plus a bonus below 1 in total that favours nearer neighbours:
            # the majority wins, a tie goes to the class with the nearer neighbour.
            weights = 1 + (self.k - torch.arange(self.k, device=nearest.device)) / (self.k * (self.k + 1))
            counts = torch.zeros(len(chunk), self.num_classes, device=nearest.device).scatter_add_(
                1, nearest, weights.expand_as(nearest))
            votes.append(counts.argmax(1))
        return torch.cat(votes).to(images.device)


class ModelJudge:
    """A trained classifier as judge (e.g. another run's model): argmax of its logits."""

    def __init__(self, model: torch.nn.Module, name: str = "model"):
        self.model, self.name = model, name
        self.logits_of = model.classify if isinstance(model, PerceptionNet) else model

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        with evaluating(self.model):
            return torch.cat([self.logits_of(chunk).argmax(1) for chunk in images.split(batch_size)])


def judge_agreement(readings: torch.Tensor, adversarial: torch.Tensor, true: torch.Tensor) -> dict:
    """How often a judge's readings name H's adversarial label, the true label, or neither,
    each as a ``metrics.rate`` (share with its 95 % interval)."""
    says_adversarial, says_true = readings == adversarial, readings == true
    return {"adversarial_label": rate_of(says_adversarial), "true_label": rate_of(says_true),
            "other": rate_of(~says_adversarial & ~says_true), "count": len(readings)}


