"""MNIST-strips: an offline SVHN-like set made of MNIST-5k digits (docs/reference/datasets.md)."""

from __future__ import annotations

import torch

from perceptreg.core.errors import PerceptregError
from perceptreg.data.dataset import ImageDataset, check_memory
from perceptreg.data.mnist import mnist5k_split

# Distinct colours for foreground and background; the attributes store indices into this.
PALETTE = torch.tensor([[230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25],
                        [245, 130, 48], [145, 30, 180], [240, 240, 240], [20, 20, 20]], dtype=torch.float32)
STRIP_SHIFT = 16  # distractors sit this many pixels left and right of the centre digit


def make_mnist_strips(digits: ImageDataset, seed: int, name: str, size: int | None = None) -> ImageDataset:
    """SVHN-like 32x32 RGB images built from 28x28 MNIST digits, ``size`` of them (default:
    one per input digit; more cycle through the digits as centres, each time with new sides
    and colours, the way SVHN's 73,257 training crops would be matched in number).

    Exactly how: on a 32x32 canvas, the input digit is pasted at offset (2, 2) (centred);
    two other digits of the same set, drawn uniformly at random, are pasted STRIP_SHIFT
    pixels further left (x = -14) and right (x = 18), so only their inner half shows at
    the image's borders, as the neighbouring digits of a house number do in SVHN crops.
    The three masks combine by maximum; a foreground and a different background colour
    are drawn from PALETTE; pixel = bg * (1 - mask) + fg * mask. The label is the centre
    digit's; the side digits' labels and both colour indices are kept as attributes.
    Everything comes from one generator seeded with ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    n = size or len(digits)
    # the colours are mixed in float32 (4 bytes), twice over, before the uint8 image is kept
    check_memory(n, (3, 32, 32), f"dataset {name}", bytes_per_value=9)
    centre = torch.arange(n) % len(digits)
    left, right = (torch.randint(0, len(digits), (n,), generator=generator) for _ in range(2))
    foreground = torch.randint(0, len(PALETTE), (n,), generator=generator)
    background = (foreground + torch.randint(1, len(PALETTE), (n,), generator=generator)) % len(PALETTE)
    masks = digits.images[:, 0].float() / 255  # (N, 28, 28)
    mask = torch.zeros(n, 32, 32)
    for index, x in ((centre, 2), (left, 2 - STRIP_SHIFT), (right, 2 + STRIP_SHIFT)):
        lo, hi = max(x, 0), min(x + 28, 32)
        mask[:, 2:30, lo:hi] = torch.maximum(mask[:, 2:30, lo:hi], masks[index][:, :, lo - x:hi - x])
    mask = mask.unsqueeze(1)  # (N, 1, 32, 32)
    fg, bg = PALETTE[foreground].view(n, 3, 1, 1), PALETTE[background].view(n, 3, 1, 1)
    images = (bg * (1 - mask) + fg * mask).round().clamp(0, 255).to(torch.uint8)
    return ImageDataset(images, digits.labels[centre], digits.classes, name, {
        "left_digit": digits.labels[left], "right_digit": digits.labels[right],
        "foreground_colour": foreground, "background_colour": background})


def mnist_strips_split(seed: int = 0, train_size: int | None = None) -> tuple[ImageDataset, ImageDataset]:
    """MNIST-strips from the MNIST-5k split: 4000 (or ``train_size``) train / 1000 test;
    distractors of each split come from the same split, so no test digit appears in a
    training image."""
    train, test = mnist5k_split()
    if train_size is not None and train_size < len(train):
        raise PerceptregError(f"mnist-strips:{train_size}: give at least {len(train)} training images "
                              f"(fewer: --train-size takes a stratified subset)")
    return (make_mnist_strips(train, seed, "mnist-strips-train", train_size),
            make_mnist_strips(test, seed + 1, "mnist-strips-test"))
