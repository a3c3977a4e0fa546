"""Which input normalization a given model expects: a model trained on normalized images
and fed raw pixels in [0, 1] still runs, at a fraction of its accuracy, and every measure of
its run would be of inputs it never saw. Its accuracy under each of the dataset's usual
normalizations (``data.registry.usual_normalizations``) says which one it was trained with."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from perceptreg.core.attached import AttachedModel
from perceptreg.core.models import evaluating
from perceptreg.data import image_batches, registry
from perceptreg.measures import rate

# "far below": a normalization that gains at least this much accuracy, beyond the noise of the
# sample (the two 95 % Wilson intervals apart), is the model's
FAR_BELOW = 0.15


@dataclass(frozen=True)
class Normalization:
    """A usual normalization (``name``: "CIFAR-10's", "ImageNet's", "[-1, 1]"), its mean and
    std per channel, and the model's accuracy on the sample under it."""
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    accuracy: float

    @property
    def values(self) -> str:
        """As `normalize` takes it: the means, then the stds, comma-separated."""
        return ",".join(f"{v:g}" for v in (*self.mean, *self.std))


def expected_normalization(seen: AttachedModel, sample, dataset: str, accuracy: float,
                           device: str = "cpu") -> Normalization | None:
    """The dataset's usual normalization under which the model (attached without one) is
    most accurate on ``sample``, if that is at least ``FAR_BELOW`` above its ``accuracy`` on
    raw pixels and their 95 % intervals do not meet; else None. ``sample``: a dataset or
    loader of (image, label) (``data.loaders``)."""
    sample = image_batches(sample, "sample")
    tried = [(name, mean, std, *_hits(seen, sample, mean, std, device))
             for name, (mean, std) in registry.usual_normalizations(dataset, seen.input_shape[0]).items()]
    name, mean, std, correct, n = max(tried, key=lambda t: t[3])  # the first of equals: the dataset's own first
    raw, best = rate(round(accuracy * n), n), rate(correct, n)
    if best["rate"] < accuracy + FAR_BELOW or best["low"] <= raw["high"]:
        return None
    return Normalization(name, tuple(mean), tuple(std), best["rate"])


@torch.no_grad()
def _hits(seen: AttachedModel, sample, mean, std, device: str) -> tuple[int, int]:
    """How many of the sample the user's model classifies right on (x - mean) / std, x its
    pixels in [0, 1], and of how many."""
    mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (mean, std))
    correct = counted = 0
    with evaluating(seen):
        for images, labels in sample.batches(500, device=device):
            correct += int((seen.model((images - mean) / std).argmax(1) == labels).sum())
            counted += len(images)
    return correct, counted


def advice(guess: Normalization, accuracy: float, size: int, dataset: str) -> str:
    """The one line that stops a run of a model fed inputs it was not trained on."""
    return (f"your model's accuracy on {size} test images of {dataset} is {accuracy:.1%} on pixels in [0, 1], "
            f"{guess.accuracy:.1%} with {guess.name} normalization: it expects normalized inputs. Pass `normalize` "
            f"{guess.values} ({guess.name} mean, then std); to attach it to raw pixels all the same, `normalize` "
            f"{','.join(['0'] * len(guess.mean) + ['1'] * len(guess.std))}")
