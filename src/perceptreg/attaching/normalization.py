"""Which input normalization a given model expects: a model trained on normalized images
and fed raw pixels in [0, 1] still runs, at a fraction of its accuracy, and every measure of
its run would be of inputs it never saw. Its accuracy under each of the dataset's usual
normalizations (``data.registry.usual_normalizations``, then the training images' own mean
and std, which a folder of the user's images has no other name for) says which one it was
trained with."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from perceptreg.core.attached import AttachedModel
from perceptreg.core.models import evaluating
from perceptreg.data import ImageDataset, image_batches, registry
from perceptreg.measures import rate

# "far below": a normalization that gains at least this much accuracy, beyond the noise of the
# sample (the two 95 % Wilson intervals apart), is the model's
FAR_BELOW = 0.15
OWN = "your images' own"  # the name of the training images' own statistics (``own_statistics``)
STATISTICS_SAMPLE, STATISTICS_BATCH = 10_000, 1024  # images whose statistics are taken, and at a time


@dataclass(frozen=True)
class Normalization:
    """A usual normalization (``name``: "CIFAR-10's", "ImageNet's", "[-1, 1]", ``OWN``), its mean and
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
                           device: str = "cpu", own=None) -> Normalization | None:
    """The dataset's usual normalization, or ``own`` ((mean, std) of the training images,
    ``own_statistics``; tried last, so that of equals the usual name is said), under which the
    model (attached without one) is most accurate on ``sample``, if that is at least
    ``FAR_BELOW`` above its ``accuracy`` on raw pixels and their 95 % intervals do not meet;
    else None. ``sample``: a dataset or loader of (image, label) (``data.loaders``)."""
    sample = image_batches(sample, "sample")
    usual = registry.usual_normalizations(dataset, seen.input_shape[0])
    tried = [(name, mean, std, *_hits(seen, sample, mean, std, device))
             for name, (mean, std) in {**usual, **({OWN: own} if own else {})}.items()]
    name, mean, std, correct, n = max(tried, key=lambda t: t[3])  # the first of equals: the dataset's own first
    raw, best = rate(round(accuracy * n), n), rate(correct, n)
    if best["rate"] < accuracy + FAR_BELOW or best["low"] <= raw["high"]:
        return None
    return Normalization(name, tuple(mean), tuple(std), best["rate"])


def own_statistics(images: ImageDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std per channel of ``images`` in [0, 1] (of at most ``STATISTICS_SAMPLE``
    of them, evenly spaced), to 4 places as a user writes them: a model trained on a folder
    of its own images was most likely normalized by them."""
    chosen = torch.linspace(0, len(images) - 1, min(len(images), STATISTICS_SAMPLE)).long()
    total = squares = 0
    for part in chosen.split(STATISTICS_BATCH):  # no float copy of the whole sample
        x = images.images[part].double().div_(255)
        total, squares = total + x.sum(dim=(0, 2, 3)), squares + x.square().sum(dim=(0, 2, 3))
    count = len(chosen) * images.images.shape[2] * images.images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=0).sqrt()
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


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
