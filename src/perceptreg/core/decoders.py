"""Decoders built from an activation's shape: D maps one layer's activation back to an image.

    >>> decoder = build_decoder((32, 7, 7), (1, 28, 28))   # activation (C, h, w) -> image
    >>> decoder(torch.randn(8, 32, 7, 7)).shape
    torch.Size([8, 1, 28, 28])

Three kinds of activation are decoded, and the decoder's size does not grow with the
image's resolution (only its number of doublings does, by one per factor of two):

- feature maps (C, h, w) go through transposed convolutions that double the size until it
  reaches the image's, then a bilinear resize to exactly (H, W) and a 3x3 convolution to the
  image's channels;
- flat vectors (D,) first go through a linear layer to a small seed map (at most 8 x 8, the
  size the paper's MNIST decoder reaches from z), then as a feature map;
- token sequences (N, D) of a vision transformer: the last g*g tokens are the patches of a
  g x g grid (N - g*g extra tokens in front, a class token or registers, are dropped), put
  back onto their grid as a (D, g, g) feature map.

Images larger than 64 px are decoded late: the doublings stop at (H/s, W/s), and the last
3x3 convolution makes s x s pixels per position, laid out by a pixel shuffle (a sub-pixel
convolution, Shi et al. 2016), with a wide map first taken to MAX_WIDTH channels by a 1x1
convolution (MAX_WIDTH / 2 for a map already at the working size). The wide layers never run at full resolution, where they
cost as much as the frozen model's forward (a ResNet-50 at 224 px: bench/attach_224.py).
Images up to 64 px (every dataset of the paper) get the same decoders as before.

Every decoder ends in a sigmoid. ``width`` sets the channel widths; ``width_for_budget``
finds the width that gives a decoder a parameter budget, so that layers compare fairly.
"""

from __future__ import annotations

import math
import zlib

import torch
from torch import nn

from perceptreg.core.errors import PerceptregError

# Channel widths halve as the resolution doubles, kept within these bounds: 128 keeps the
# first layer of a 512-channel activation small, 16 keeps the last ones expressive.
MIN_WIDTH, MAX_WIDTH = 16, 128
# Flat activations are mapped to a FLAT_WIDTH x s x s seed map, s = ceil(H/4) up to
# MAX_SEED: two doublings short of a 28x28 image (the paper's MNIST decoder), and no larger
# for large images, where a linear layer to a H/4 map would hold D * 64 * H*W/16 weights.
FLAT_WIDTH = 64
MAX_SEED = 8
# Images larger than this (per side) are decoded at 1/s of their size, s a power of two (``pixels_per_position``).
MAX_DECODE_SIDE = 64
# Token sequences: at most this many extra tokens (a class token, registers) before the patches.
MAX_EXTRA_TOKENS = 16


def activation_kind(shape: tuple[int, ...]) -> str:
    """"map" (C, h, w), "flat" (D,) or "tokens" (N, D); anything else is an error."""
    kinds = {3: "map", 1: "flat", 2: "tokens"}
    if len(shape) not in kinds:
        raise PerceptregError(f"an activation of shape {shape} (no batch dim) cannot be decoded: only feature "
                              f"maps (C, h, w), vectors (D,) and token sequences (N, D) can; pick another layer, "
                              f"or pass `decoders` with your own for it")
    return kinds[len(shape)]


def token_grid(tokens: int) -> tuple[int, int]:
    """(extra tokens, grid side) of a sequence of ``tokens``: the largest square of patches
    that leaves at most MAX_EXTRA_TOKENS in front."""
    side = math.isqrt(tokens)
    extra = tokens - side * side
    if side < 1 or extra > MAX_EXTRA_TOKENS:
        raise PerceptregError(f"a token sequence of length {tokens} is not a square grid of patches plus at most "
                              f"{MAX_EXTRA_TOKENS} extra tokens (class token, registers); pick another layer, or "
                              f"pass `decoders` with your own for it")
    return extra, side


class TokensToGrid(nn.Module):
    """(B, N, D) tokens -> (B, D, g, g): drops the ``extra`` tokens in front (class token,
    registers), then lays the patches back onto their g x g grid, row by row."""

    def __init__(self, extra: int, side: int):
        super().__init__()
        self.extra, self.side = extra, side

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, self.extra:]  # (B, g*g, D)
        return patches.transpose(1, 2).unflatten(2, (self.side, self.side))  # (B, D, g, g)

    def extra_repr(self) -> str:
        return f"extra={self.extra}, side={self.side}"


def pixels_per_position(activation_side: int, input_shape: tuple[int, int, int]) -> int:
    """s, the side of the block of pixels the decoder's last layer makes per position: the
    decoder works at (H/s, W/s). It doubles (a power of two that divides H and W) while the
    working size is above MAX_DECODE_SIDE and would not fall below the activation's own side
    (``activation_side``: 0 for a vector), so that nothing is thrown away by shrinking; 1 for
    images up to MAX_DECODE_SIDE, and for sizes no power of two divides."""
    _, height, width = input_shape
    s = 1
    while (max(height, width) // s > MAX_DECODE_SIDE and max(height, width) // (2 * s) >= activation_side
           and height % (2 * s) == 0 and width % (2 * s) == 0):
        s *= 2
    return s


def build_decoder(activation_shape: tuple[int, ...], input_shape: tuple[int, int, int],
                  width: int | None = None) -> nn.Sequential:
    """A decoder from activations of ``activation_shape`` (no batch dim) to images of
    ``input_shape`` (C, H, W), values in (0, 1).

    ``width`` None: the channel widths follow the activation (half its channels, within
    MIN_WIDTH..MAX_WIDTH; a vector's seed map has FLAT_WIDTH). A number: the decoder starts
    at ``width`` channels whatever the activation has (a 1x1 convolution takes a map there),
    then halves per doubling, so its size grows with ``width`` (``width_for_budget``)."""
    channels, height, width_px = input_shape
    layers: list[nn.Module] = []
    kind = activation_kind(tuple(activation_shape))
    if kind == "flat":
        c = width or FLAT_WIDTH
        h, w = min(math.ceil(height / 4), MAX_SEED), min(math.ceil(width_px / 4), MAX_SEED)
        layers += [nn.Linear(activation_shape[0], c * h * w), nn.ReLU(), nn.Unflatten(1, (c, h, w))]
        s = pixels_per_position(0, input_shape)
    else:
        if kind == "tokens":
            extra, side = token_grid(activation_shape[0])
            c, h, w = activation_shape[1], side, side
            layers.append(TokensToGrid(extra, side))  # (B, D, g, g)
        else:
            c, h, w = activation_shape
        s = pixels_per_position(max(h, w), input_shape)
        # A wide map goes to MAX_WIDTH first (the default rule's widths after it), one already
        # at the working size to the half a doubling would bring there: the last convolution,
        # which makes the s x s pixels, costs 27 * H * W multiply-adds per channel it takes.
        narrowed = MAX_WIDTH if h < height // s else MAX_WIDTH // 2
        if width is None and s > 1 and c > narrowed:
            width = narrowed
        if width is not None:
            layers += [nn.Conv2d(c, width, 1), nn.ReLU()]  # (B, width, h, w)
            c = width
    work_h, work_w = height // s, width_px // s
    while h < work_h or w < work_w:
        out = min(max(c // 2, MIN_WIDTH), MAX_WIDTH) if width is None else max(c // 2, min(MIN_WIDTH, width))
        layers += [nn.ConvTranspose2d(c, out, 4, stride=2, padding=1), nn.ReLU()]  # (B, out, 2h, 2w)
        c, h, w = out, 2 * h, 2 * w
    if (h, w) != (work_h, work_w):
        # Sizes that are no power-of-two multiple of h, w (5x5 -> 28x28): the doublings
        # overshoot (40x40), or a map larger than the image shrinks: a bilinear resize
        # brings it to exactly H/s x W/s.
        layers.append(nn.Upsample(size=(work_h, work_w), mode="bilinear", align_corners=False))
    layers.append(nn.Conv2d(c, channels * s * s, 3, padding=1))  # (B, channels * s * s, H/s, W/s)
    if s > 1:
        layers.append(nn.PixelShuffle(s))  # each position's s*s*channels values -> its s x s block of pixels
    layers.append(nn.Sigmoid())  # (B, channels, H, W)
    return nn.Sequential(*layers)


def parameter_count_of(activation_shape: tuple[int, ...], input_shape: tuple[int, int, int],
                       width: int | None = None) -> int:
    """The parameters ``build_decoder`` would make, counted without allocating them."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_decoder(activation_shape, input_shape, width).parameters())


MAX_BUDGET_WIDTH = 4096  # the search's upper end: wider decoders than this are not built


def width_for_budget(name: str, activation_shape: tuple[int, ...], input_shape: tuple[int, int, int],
                     budget: int) -> int:
    """The widest ``width`` whose decoder for this layer has at most ``budget`` parameters
    (parameter counts grow with the width, so a bisection finds it)."""
    low, high = 1, MAX_BUDGET_WIDTH
    if parameter_count_of(activation_shape, input_shape, low) > budget:
        smallest = parameter_count_of(activation_shape, input_shape, low)
        raise PerceptregError(f"`decoder_params` {budget:,} is too small to build a decoder for layer {name!r} "
                              f"(activation {tuple(activation_shape)}): the smallest takes {smallest:,} parameters")
    while low < high:
        mid = (low + high + 1) // 2
        if parameter_count_of(activation_shape, input_shape, mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def seeded_decoder(name: str, activation_shape: tuple[int, ...], input_shape: tuple[int, int, int],
                   seed: int, budget: int | None = None) -> nn.Sequential:
    """``build_decoder`` with weights drawn from (seed, layer name) alone, so a layer's decoder
    is the same whichever other layers get one; the global RNG is left as found. ``budget``:
    the most parameters it may have (``width_for_budget``); None: the default widths."""
    try:
        width = None if budget is None else width_for_budget(name, activation_shape, input_shape, budget)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**64)  # torch takes 64 bits
            return build_decoder(activation_shape, input_shape, width)
    except PerceptregError as err:
        if f"{name!r}" in str(err):
            raise
        raise PerceptregError(f"`layers`: {name!r}: {err}") from err


@torch.no_grad()
def check_decoder(name: str, decoder: nn.Module, activation: torch.Tensor,
                  input_shape: tuple[int, int, int]) -> nn.Module:
    """``decoder`` if it maps a batch of the layer's activations to images of ``input_shape``."""
    expected = (len(activation), *input_shape)
    was_training = decoder.training
    try:
        out = decoder.eval()(activation)
    except Exception as err:
        raise PerceptregError(f"decoders[{name!r}] failed on the layer's activation of shape "
                              f"{tuple(activation.shape)} ({type(err).__name__}: {err})") from err
    finally:
        decoder.train(was_training)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != expected:
        raise PerceptregError(f"decoders[{name!r}] must map the layer's activation {tuple(activation.shape)} "
                              f"to images {expected}; it returned {got}")
    return decoder
