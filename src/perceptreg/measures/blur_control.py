"""A control for a judge's reading of P(x): the image x itself, blurred until its pixel error
matches that of P(x).

A judge trained on sharp images may fail to read any blur, whatever it shows: on CIFAR-10 the
VGG judge read x blurred by a Gaussian of sigma 1.5 (MSE/pixel 0.006) as its true class 26.5 %
of the time, against 70.4 % for x (docs/numbers/decoder-losses.md). A reading of P(x) is then
compared with the reading of a blur of the same error: below it, P(x) shows less than a blur
would; above it, more; near it, the judge cannot say more than a blur lets it.

    blurred = matched_blur(images, perceived)   # (B, C, H, W), each x at P(x)'s squared error
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

# Gaussian widths tried, in pixels: from a barely visible blur to one that leaves colour blobs
# of a 32x32 image. An image whose P(x) errs less than the smallest is matched by x itself.
BLUR_SIGMAS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images`` (B, C, H, W) blurred by a Gaussian of width ``sigma`` pixels, separably, the
    edges reflected (the kernel is cut at 3 sigma, and at the image's size)."""
    radius = min(int(3 * sigma) + 1, min(images.shape[2:]) - 1)
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-taps.square() / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).repeat(images.shape[1], 1, 1, 1)  # (C, 1, 1, K): one per channel
    rows = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), kernel, groups=images.shape[1])
    return F.conv2d(F.pad(rows, (0, 0, radius, radius), mode="reflect"), kernel.transpose(2, 3), groups=images.shape[1])


@torch.no_grad()
def matched_blur(images: torch.Tensor, perceived: torch.Tensor, sigmas: Sequence[float] = BLUR_SIGMAS) -> torch.Tensor:
    """Each image of ``images`` blurred by the Gaussian of ``sigmas`` whose squared error per
    pixel is nearest that of its ``perceived`` (x itself where none is nearer), one width at a
    time, so memory stays that of the batch."""
    images, perceived = images.float(), perceived.float()
    target = (perceived - images).square().flatten(1).mean(1)
    best, gap = images.clone(), target.clone()  # x itself: its error 0 is target away
    for sigma in sigmas:
        blurred = gaussian_blur(images, sigma)
        distance = ((blurred - images).square().flatten(1).mean(1) - target).abs()
        nearer = distance < gap
        best = torch.where(nearer.view(-1, 1, 1, 1), blurred, best)
        gap = torch.minimum(gap, distance)
    return best
