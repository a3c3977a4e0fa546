"""The images a user has, read in batches: our ``ImageDataset``, any torch ``Dataset`` of
(image, label) (a ``TensorDataset`` too), or a ``DataLoader`` of them.

    source = image_batches(DataLoader(TensorDataset(images, labels), batch_size=64), "train_data")
    for x, y in source.batches(64, device="cuda"):  # x float32 in [0, 1] (B, C, H, W), y int64 (B,)
        ...

Images are uint8 in 0..255 or floats in [0, 1]: pixels, before any normalization (the
model's own goes to ``attach(..., normalize=(mean, std))``). How each kind is read:

- ``ImageDataset``: uint8 tensors gathered a batch at a time (``dataset.batches``);
- ``TensorDataset``: its tensors indexed a batch at a time, no per-sample Python;
- any other ``Dataset``: its items collated in batches by a ``DataLoader`` over our order;
- a ``DataLoader``: iterated as it is, with its own batch size, order and workers.

This is the one place that checks what a user's data holds; every function that takes data
(``fit_decoders``, ``fine_tune``, ``evaluate_layers``, ``train``, ``evaluate_attack``) reads it here.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, default_collate

from perceptreg.core.errors import PerceptregError
from perceptreg.data.dataset import ImageDataset, batches, to_float

# Images a pixel mean is taken from when the data is not in memory (a DataLoader, a
# Dataset that loads files): enough for a decoder's initial output bias, one pass is not.
MEAN_SAMPLE = 2048

PASS = ("pass images as uint8 (0..255) or floats in [0, 1] shaped (batch, channels, height, width), labels as "
        "integers, e.g. TensorDataset(images, labels) or a DataLoader of (image, label)")


class ImageBatches:
    """One of the kinds of data above, read as (float images in [0, 1], int64 labels) batches."""

    def __init__(self, data, arg: str):
        if not isinstance(data, (ImageDataset, Dataset, DataLoader)):
            raise PerceptregError(f"`{arg}`: got a {type(data).__name__}; {PASS}")
        self.data, self.arg = data, arg
        self._shape: tuple[int, int, int] | None = None

    def __len__(self) -> int:
        """Images in one pass (of a DataLoader over an iterable dataset: unknown, 0)."""
        data = self.data.dataset if isinstance(self.data, DataLoader) else self.data
        return 0 if isinstance(data, IterableDataset) else len(data)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width), from the first batch (read once)."""
        if self._shape is None:
            if isinstance(self.data, ImageDataset):
                self._shape = self.data.image_shape
            else:
                first = next(self._raw(2), None)
                if first is None:
                    raise PerceptregError(f"`{self.arg}` holds no images; {PASS}")
                self._checked(*first)  # sets the shape
        return self._shape

    def batch_count(self, batch_size: int) -> int | None:
        """Batches in one pass (a DataLoader's own count), for progress bars; None if unknown."""
        if isinstance(self.data, DataLoader):
            try:
                return len(self.data)
            except TypeError:
                return None
        return -(-len(self) // batch_size)

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images float32 [0, 1], labels int64) on ``device``, checked batch by batch.
        ``batch_size``, ``shuffle`` and ``generator`` apply to datasets; a DataLoader keeps its own."""
        if isinstance(self.data, ImageDataset):
            yield from batches(self.data, batch_size, shuffle, generator, device)
            return
        for images, labels in self._raw(batch_size, shuffle, generator):
            images, labels = self._checked(images, labels)
            images = images.to(device, non_blocking=True)  # uint8 crosses to the device, then becomes float
            yield (to_float(images) if images.dtype == torch.uint8 else images.float()), labels.to(device)

    def pixel_mean(self) -> torch.Tensor:
        """Mean pixel per channel in [0, 1] (C,): of all images in memory, else of the first
        ``MEAN_SAMPLE`` a pass gives."""
        if isinstance(self.data, ImageDataset):
            return self.data.pixel_mean()
        counted, whole, fraction = 0, torch.zeros(self.image_shape[0], dtype=torch.int64), 0
        for images, labels in self._raw(256):
            images, _ = self._checked(images, labels)
            if images.dtype == torch.uint8:  # integer sums: exactly ImageDataset's mean
                whole = whole + images.sum(dim=(0, 2, 3), dtype=torch.int64)
            else:
                fraction = fraction + images.double().sum(dim=(0, 2, 3))
            counted += len(images)
            if counted >= MEAN_SAMPLE and not isinstance(self.data, TensorDataset):
                break
        pixels = counted * self.image_shape[1] * self.image_shape[2]
        return (whole.double().div(255 * pixels) + fraction / pixels).float()

    def _raw(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None):
        """The data's own (images, labels) batches, unchecked."""
        if isinstance(self.data, DataLoader):
            return (self._pair(batch) for batch in self.data)
        if isinstance(self.data, IterableDataset):
            return (self._pair(batch) for batch in DataLoader(self.data, batch_size=batch_size))
        order = torch.randperm(len(self.data), generator=generator) if shuffle else torch.arange(len(self.data))
        if isinstance(self.data, TensorDataset) and len(self.data.tensors) == 2:
            images, labels = self.data.tensors  # a batch is one index into each tensor
            return ((images[index], labels[index]) for index in order.split(batch_size))
        # Items collated by torch, batch_size at a time, in our order (seeded like ours).
        loader = DataLoader(self.data, batch_size=batch_size, sampler=order.tolist(), collate_fn=self._collate)
        return (self._pair(batch) for batch in loader)

    def _collate(self, items: list):
        try:
            return default_collate(items)
        except (TypeError, RuntimeError) as err:  # a PIL image, images of different sizes
            raise PerceptregError(f"`{self.arg}`: its items do not stack into a batch ({str(err).splitlines()[0]}); "
                                  f"give each image as a tensor of one shape (e.g. transforms.PILToTensor()); "
                                  f"{PASS}") from err

    def _pair(self, batch) -> tuple:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            got = f"{len(batch)} values" if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}"
            raise PerceptregError(f"`{self.arg}` must give (image, label) pairs; it gives {got}; {PASS}")
        return batch[0], batch[1]

    def _checked(self, images, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch as it is, or one error saying what is wrong and what to pass instead."""
        labels = torch.as_tensor(labels)
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or (
                self._shape is not None and tuple(images.shape[1:]) != self._shape):
            got = (f"a batch of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor)
                   else f"images of type {type(images).__name__}")
            want = f" {self._shape}" if self._shape is not None else ""
            raise PerceptregError(f"`{self.arg}` gives {got}, not (batch, channels, height, width){want}; {PASS}")
        self._shape = tuple(images.shape[1:])  # every later batch must match the first
        if labels.shape != (len(images),) or labels.is_floating_point() or labels.dtype == torch.bool:
            raise PerceptregError(f"`{self.arg}`: labels must be integer class indices, one per image; got "
                                  f"{labels.dtype} of shape {tuple(labels.shape)} for {len(images)} images; {PASS}")
        if images.is_floating_point():
            low, high = torch.aminmax(images.detach()) if images.numel() else (torch.zeros(()), torch.zeros(()))
            if low < 0 or high > 1:
                raise PerceptregError(
                    f"`{self.arg}`: float images must be pixels in [0, 1], found values in [{float(low):.3g}, "
                    f"{float(high):.3g}]; if your transform normalizes them (e.g. transforms.Normalize), drop it "
                    f"and give the model's mean and std to attach(..., normalize=(mean, std)); {PASS}")
        elif images.dtype != torch.uint8:
            raise PerceptregError(f"`{self.arg}`: images of dtype {images.dtype}; {PASS}")
        return images, labels.long()


def image_batches(data, arg: str = "data") -> ImageBatches:
    """``data`` (an ``ImageDataset``, torch ``Dataset`` or ``DataLoader``; an ``ImageBatches``
    as it is) as an ``ImageBatches``; ``arg`` names it in errors."""
    return data if isinstance(data, ImageBatches) else ImageBatches(data, arg)


def as_image_dataset(data, arg: str = "data", classes: tuple[str, ...] | None = None) -> ImageDataset:
    """``data`` whole in memory as an ``ImageDataset`` (uint8; floats in [0, 1] rounded to
    1/255, the precision every dataset here keeps), for what needs all of it at once: a
    training run's subsets, an attack's pool. ``classes`` default to the dataset's
    ``classes`` attribute, else "0".."K-1"."""
    if isinstance(data, ImageDataset):
        return data
    source = image_batches(data, arg)
    images, labels = [], []
    for x, y in source.batches(512):
        images.append(x.mul(255).round_().to(torch.uint8))
        labels.append(y)
    if not images:
        raise PerceptregError(f"`{arg}` holds no images; {PASS}")
    labels = torch.cat(labels)
    inner = data.dataset if isinstance(data, DataLoader) else data
    classes = tuple(classes or getattr(inner, "classes", None) or (str(k) for k in range(int(labels.max()) + 1)))
    return ImageDataset(torch.cat(images), labels, tuple(map(str, classes)), type(inner).__name__)
