"""Decoders built from an activation's shape: D maps one layer's activation back to an image.

    >>> decoder = build_decoder((32, 7, 7), (1, 28, 28))   # activation (C, h, w) -> image
    >>> decoder(torch.randn(8, 32, 7, 7)).shape
    torch.Size([8, 1, 28, 28])

Feature maps (C, h, w) go through transposed convolutions that double the size until it
reaches the image's, then a bilinear resize to exactly (H, W) and a 3x3 convolution to the
image's channels. Flat vectors (D,), and activations of any other rank once flattened, first
go through a linear layer to a small feature map. Every decoder ends in a sigmoid.
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
# Flat activations are mapped to a FLAT_WIDTH x ceil(H/4) x ceil(W/4) map, two doublings
# short of the image: the same size the paper's MNIST decoder reaches from z.
FLAT_WIDTH = 64


def build_decoder(activation_shape: tuple[int, ...], input_shape: tuple[int, int, int]) -> nn.Sequential:
    """A decoder from activations of ``activation_shape`` (no batch dim) to images of
    ``input_shape`` (C, H, W), values in (0, 1)."""
    if len(activation_shape) == 0:
        raise PerceptregError("layers: a layer that gives one number per image cannot be decoded; "
                              "pick a layer with a feature map or a feature vector")
    channels, height, width = input_shape
    layers: list[nn.Module] = []
    if len(activation_shape) == 3:
        c, h, w = activation_shape
    else:
        c, h, w = FLAT_WIDTH, math.ceil(height / 4), math.ceil(width / 4)
        layers += [nn.Flatten(), nn.Linear(math.prod(activation_shape), c * h * w), nn.ReLU(),
                   nn.Unflatten(1, (c, h, w))]
    while h < height or w < width:
        out = min(max(c // 2, MIN_WIDTH), MAX_WIDTH)
        layers += [nn.ConvTranspose2d(c, out, 4, stride=2, padding=1), nn.ReLU()]  # (B, out, 2h, 2w)
        c, h, w = out, 2 * h, 2 * w
    if (h, w) != (height, width):
        # Sizes that are no power-of-two multiple of h, w (5x5 -> 28x28): the doublings
        # overshoot (40x40), and a bilinear resize brings the map down to exactly H x W.
        layers.append(nn.Upsample(size=(height, width), mode="bilinear", align_corners=False))
    layers += [nn.Conv2d(c, channels, 3, padding=1), nn.Sigmoid()]  # (B, channels, H, W)
    return nn.Sequential(*layers)


def seeded_decoder(name: str, activation_shape: tuple[int, ...], input_shape: tuple[int, int, int],
                   seed: int) -> nn.Sequential:
    """``build_decoder`` with weights drawn from (seed, layer name) alone, so a layer's decoder
    is the same whichever other layers get one; the global RNG is left as found."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        return build_decoder(activation_shape, input_shape)


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
