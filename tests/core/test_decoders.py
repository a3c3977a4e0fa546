"""Decoders built from an activation's shape: maps, vectors and token sequences, at a size
that does not grow with the image's resolution, and a common parameter budget."""

import pytest
import torch
from torch import nn

from perceptreg.core.decoders import (
    TokensToGrid,
    build_decoder,
    parameter_count_of,
    pixels_per_position,
    seeded_decoder,
    token_grid,
    width_for_budget,
)
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import parameter_count

IMAGE_224 = (3, 224, 224)
# The activations of a ResNet-50 and a ViT-S/16 at 224x224 (no batch dim).
RESNET50 = {"layer1": (256, 56, 56), "layer2": (512, 28, 28), "layer3": (1024, 14, 14),
            "layer4": (2048, 7, 7), "avgpool": (2048, 1, 1), "flatten": (2048,)}
VIT_S16 = {"blocks.3": (197, 384), "norm": (197, 384), "head_input": (384,)}


@pytest.mark.parametrize("name, shape", [*RESNET50.items(), *VIT_S16.items()])
def test_every_decoder_of_a_resnet50_or_vit_at_224_stays_under_25m_parameters(name, shape):
    assert parameter_count_of(shape, IMAGE_224) < 25_000_000


def test_a_flat_decoder_does_not_grow_with_the_image():
    # the seed map stops at 8 x 8: past 32 px only the number of doublings grows
    sizes = {side: parameter_count_of((512,), (3, side, side)) for side in (32, 64, 224, 448)}
    assert sizes[64] < 1.1 * sizes[32] and sizes[448] < 1.1 * sizes[32]


def test_tokens_go_back_onto_their_grid_without_the_class_token():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float).view(2, 5, 3)  # a class token, then 2 x 2 patches
    grid = TokensToGrid(extra=1, side=2)(tokens)
    assert grid.shape == (2, 3, 2, 2)
    assert torch.equal(grid[0, :, 0, 1], tokens[0, 2])  # patch 1 (row 0, column 1), the token after patch 0
    assert torch.equal(grid[1, :, 1, 0], tokens[1, 3])


@pytest.mark.parametrize("tokens, expected", [(196, (0, 14)), (197, (1, 14)), (201, (5, 14)), (50, (1, 7)), (4, (0, 2))])
def test_token_grid_finds_the_patches_and_the_extra_tokens(tokens, expected):
    assert token_grid(tokens) == expected


def test_a_vit_block_decodes_to_the_image():
    decoder = build_decoder((197, 384), (3, 64, 64))
    assert isinstance(decoder[0], TokensToGrid)
    assert decoder(torch.randn(2, 197, 384)).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("shape, match", [
    ((117, 16), "length 117"),
    ((2, 3, 4, 5), r"shape \(2, 3, 4, 5\)"),
    ((), r"shape \(\)"),
])
def test_activations_that_cannot_be_decoded_are_named(shape, match):
    with pytest.raises(PerceptregError, match=match):
        build_decoder(shape, (1, 28, 28))
    with pytest.raises(PerceptregError, match="`layers`: 'blocks.1': .*" + match):
        seeded_decoder("blocks.1", shape, (1, 28, 28), seed=0)


@pytest.mark.parametrize("shape, image", [((16, 14, 14), (1, 28, 28)), ((32, 7, 7), (1, 28, 28)), ((64,), (1, 28, 28)),
                                          ((197, 384), (1, 28, 28)), ((256, 56, 56), IMAGE_224), ((197, 384), IMAGE_224)])
def test_a_budget_gives_the_widest_decoder_that_fits(shape, image):
    budget = 200_000
    width = width_for_budget("x", shape, image, budget)
    assert parameter_count_of(shape, image, width) <= budget < parameter_count_of(shape, image, width + 1)
    built = seeded_decoder("x", shape, image, seed=0, budget=budget)
    assert parameter_count(built) == parameter_count_of(shape, image, width)
    assert built(torch.rand(1, *shape)).shape == (1, *image)


def test_layers_under_one_budget_differ_little_in_size():
    shapes = [(16, 14, 14), (32, 7, 7), (64,)]
    default = [parameter_count_of(s, (1, 28, 28)) for s in shapes]
    budgeted = [parameter_count(seeded_decoder("x", s, (1, 28, 28), 0, budget=100_000)) for s in shapes]
    assert max(default) / min(default) > 20  # the default widths: 4,257 to 244,993
    assert max(budgeted) / min(budgeted) < 1.1 and max(budgeted) <= 100_000


def test_a_budget_too_small_is_named():
    with pytest.raises(PerceptregError, match=r"`decoder_params` 10 .*'fc1'.*[\d,]+ parameters"):
        seeded_decoder("fc1", (64,), (1, 28, 28), seed=0, budget=10)


def test_counting_allocates_nothing():
    assert parameter_count_of((2048,), IMAGE_224) == parameter_count(build_decoder((2048,), IMAGE_224))
    assert isinstance(build_decoder((2048,), IMAGE_224)[0], nn.Linear)


@pytest.mark.parametrize("side, image, expected", [
    (56, IMAGE_224, 4), (14, IMAGE_224, 4), (7, IMAGE_224, 4), (0, IMAGE_224, 4),  # decoded at 56 x 56
    (112, IMAGE_224, 2),  # not below the activation's own 112 x 112
    (14, (3, 64, 64), 1), (7, (1, 28, 28), 1),  # up to 64 px: at full size, as before
    (0, (3, 100, 100), 2), (0, (3, 225, 225), 1), (0, (3, 224, 96), 4)])  # 2 divides 100, nothing 225; the longer side counts
def test_large_images_are_decoded_at_a_fraction_of_their_size(side, image, expected):
    assert pixels_per_position(side, image) == expected


def test_up_to_64_px_the_decoders_are_as_before():
    decoder = build_decoder((512, 4, 4), (3, 64, 64))  # the first transposed convolution takes all 512 channels
    assert [type(m).__name__ for m in decoder] == ["ConvTranspose2d", "ReLU"] * 4 + ["Conv2d", "Sigmoid"]
    assert (decoder[0].in_channels, decoder[0].out_channels, decoder[-2].out_channels) == (512, 128, 3)


@pytest.mark.parametrize("name, shape", [*RESNET50.items(), *VIT_S16.items()])
def test_at_224_no_layer_runs_at_full_resolution(name, shape):
    decoder = build_decoder(shape, IMAGE_224)
    sides = []
    for module in decoder:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.register_forward_hook(lambda m, i, out: sides.append((out.shape[-1], m.in_channels)))
    assert decoder(torch.rand(1, *shape)).shape == (1, *IMAGE_224)
    # at most 64 px (a 1x1 map doubles to 64, then is resized to 56); the pixel shuffle lays
    # out 4 x 4 pixels per position
    assert max(side for side, _ in sides) <= 64 and sides[-1][0] == 56
    assert max(channels for _, channels in sides[1:]) <= 128  # past a 1x1 convolution, at most MAX_WIDTH wide
    assert sides[-1][1] <= 64  # and the last convolution, at 56 x 56, takes at most 64 channels
    assert isinstance(decoder[-2], nn.PixelShuffle) and decoder[-3].out_channels == 3 * 4 * 4
