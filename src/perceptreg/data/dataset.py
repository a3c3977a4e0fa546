"""ImageDataset: uint8 images kept as they are until a batch needs them as floats.

- ``ImageDataset``: images (N, C, H, W) uint8, labels, class names, per-image attributes.
- ``batches``: shuffled batches gathered by index tensors, no per-sample Python.
- ``stratified_split`` / ``training_subset``: the seeded, class-balanced ways to take part
  of a dataset.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from perceptreg.core.errors import PerceptregError

DIGITS = tuple(str(d) for d in range(10))


def memory_bytes() -> int:
    """This machine's physical memory, in bytes."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(count: int, image_shape: tuple[int, ...], where: str, bytes_per_value: int = 1) -> None:
    """Refuse, before allocating, ``count`` images of ``image_shape`` (``bytes_per_value``
    each value, with what making them takes) that would not fit this machine's memory:
    a count of 10^9 is a typo said in one line, not a process the kernel kills."""
    needed = count * math.prod(image_shape) * bytes_per_value
    if needed > memory_bytes():
        raise PerceptregError(f"{where}: {count:,} images of {'x'.join(map(str, image_shape))} need "
                              f"{needed / 2**30:,.0f} GiB, more than this machine's "
                              f"{memory_bytes() / 2**30:,.0f} GiB of memory; give fewer images")


@dataclass(frozen=True, eq=False)
class ImageDataset(torch.utils.data.Dataset):
    """Images as uint8 (N, C, H, W) and integer labels (N,), with class names.

    A torch ``Dataset``: ``data[i]`` is (image float32 (C, H, W) in [0, 1], label), the
    items ``batches`` yields, so a ``DataLoader`` over it gives the same batches, one image
    at a time. The training paths use ``batches``, which gathers a whole batch in one call.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    # Per-image facts that are not the training target (for probes): name -> (N,) integers
    attributes: dict[str, torch.Tensor] = field(default_factory=dict)
    # For memory-mapped images: drops the pages read so far from this process's memory
    release_pages: Callable[[], None] = field(default=lambda: None, repr=False)
    # Mean intensity per channel when known in advance (memory-mapped data: no full pass)
    channel_means: torch.Tensor | None = field(default=None, repr=False)
    # For memory-mapped images: raises when the file was cut short under the mapping (a read
    # past its end is SIGBUS, which kills the process); checked before every batch
    check_pages: Callable[[], None] = field(default=lambda: None, repr=False)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise PerceptregError(f"{self.name}: images must be a uint8 tensor (N, C, H, W), "
                                  f"got {self.images.dtype} of shape {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise PerceptregError(f"{self.name}: {len(self.images)} images but labels of shape "
                                  f"{tuple(self.labels.shape)}")
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise PerceptregError(f"{self.name}: labels must lie in 0..{len(self.classes) - 1}, "
                                  f"found {int(self.labels.min())}..{int(self.labels.max())}")
        for key, values in self.attributes.items():
            if values.shape != self.labels.shape:
                raise PerceptregError(f"{self.name}: attribute {key!r} has shape {tuple(values.shape)}, "
                                      f"the labels {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, label) of one index (images and labels of a slice or a tensor of indices),
        the image as a float in [0, 1] as ``batches`` converts it."""
        return to_float(self.images[index]), self.labels[index]

    def __repr__(self) -> str:
        extra = f", {len(self.attributes)} attributes" if self.attributes else ""
        return (f"ImageDataset(name={self.name!r}, {len(self)} images, {'x'.join(map(str, self.image_shape))}, "
                f"{len(self.classes)} classes{extra})")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, index: torch.Tensor, name: str | None = None) -> "ImageDataset":
        return ImageDataset(self.images[index], self.labels[index], self.classes, name or self.name,
                            {k: v[index] for k, v in self.attributes.items()})

    def pixel_mean(self) -> torch.Tensor:
        """Mean intensity per channel in [0, 1], shape (C,), without a float copy of the data."""
        if self.channel_means is not None:
            return self.channel_means
        sums = self.images.sum(dim=(0, 2, 3), dtype=torch.int64)
        return sums.double().div(255 * len(self) * self.images.shape[2] * self.images.shape[3]).float()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.float().div_(255)


def batches(data: ImageDataset, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None, device: torch.device | str = "cpu",
            rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images float32 [0, 1], labels) batches on ``device``; the last may be short.

    Indexing the uint8 tensor with a batch of indices gathers the whole batch in one call;
    the conversion to float happens after the copy to the device (4x fewer bytes moved).
    With ``world`` > 1 processes, each global batch of ``batch_size`` is split into
    ``world`` near-equal parts and this ``rank`` gets its part (see ``global_batch_sizes``).
    """
    order = torch.randperm(len(data), generator=generator) if shuffle else torch.arange(len(data))
    for step, index in enumerate(order.split(batch_size)):
        if step % RELEASE_EVERY == RELEASE_EVERY - 1:
            data.release_pages()
        if world > 1:
            if len(index) < world:  # too few left to give every process one
                continue
            index = index.tensor_split(world)[rank]
        data.check_pages()
        images = data.images[index].to(device, non_blocking=True)
        yield to_float(images), data.labels[index].to(device, non_blocking=True)


# Memory-mapped images are let go of every this many batches, so resident memory stays
# small however large the file.
RELEASE_EVERY = 8


def global_batch_sizes(count: int, batch_size: int, world: int = 1) -> list[int]:
    """The sizes of the global batches ``batches`` makes of ``count`` items, in order."""
    sizes = [min(batch_size, count - start) for start in range(0, count, batch_size)]
    return [s for s in sizes if world == 1 or s >= world]


def stratified_split(labels: torch.Tensor, test_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split keeping class proportions: (train indices, test indices), each sorted.

    Each class gives round(test_size * its share) test items, the rounding remainders going
    to the classes with the largest fractional parts, so the test set has exactly test_size.
    """
    if not 0 < test_size < len(labels):
        raise PerceptregError(f"test_size must lie in 1..{len(labels) - 1}, got {test_size}")
    generator = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    quota = counts.double() * test_size / len(labels)
    take = quota.floor().long()
    shortfall = test_size - int(take.sum())
    take[(quota - take).argsort(descending=True, stable=True)[:shortfall]] += 1
    test_parts = []
    for cls, k in zip(classes.tolist(), take.tolist()):
        members = (labels == cls).nonzero().squeeze(1)
        test_parts.append(members[torch.randperm(len(members), generator=generator)[:k]])
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[torch.cat(test_parts)] = True
    return (~is_test).nonzero().squeeze(1), is_test.nonzero().squeeze(1)


def training_subset(data: ImageDataset, size: int | None, seed: int) -> ImageDataset:
    """A stratified subset of ``size`` training images drawn with ``seed`` (the run's seed),
    or ``data`` itself when ``size`` is None or not smaller. The one rule for scaling runs
    down: ``train`` and ``sweep`` both take their subsets here."""
    if size is None or size >= len(data):
        return data
    return data.subset(stratified_split(data.labels, size, seed)[1])


# The held-out sample evaluated during training is one fixed draw: the same for every epoch,
# seed and run, so curves and runs compare on the same images.
EVAL_SEED = 0


def evaluation_subset(data: ImageDataset, size: int | None) -> ImageDataset:
    """A fixed stratified sample of ``size`` test images (drawn with ``EVAL_SEED``, whatever
    the run's seed), or ``data`` itself when ``size`` is None, 0 or not smaller. The one rule
    for what `train` and the ensemble evaluate after each epoch."""
    if not size or size >= len(data):
        return data
    return data.subset(stratified_split(data.labels, size, EVAL_SEED)[1])


def spread_over_classes(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` items taken round-robin over the classes, each class in data order."""
    rank = torch.zeros_like(labels)
    for cls in labels.unique():
        members = labels == cls
        rank[members] = torch.arange(int(members.sum()))
    order = torch.argsort(rank * (int(labels.max()) + 1) + labels, stable=True)
    return order[:n]
