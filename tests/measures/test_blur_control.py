"""The blur control of a judge's reading: x blurred to P(x)'s pixel error, by hand."""

import math

import torch
from helpers import net_with_decoder, tiny_dataset
from torch import nn

from perceptreg.measures.blur_control import BLUR_SIGMAS, gaussian_blur, matched_blur
from perceptreg.measures.consistency import measure_perception


def test_a_blur_keeps_a_flat_image_and_spreads_a_point_as_a_gaussian():
    flat = torch.full((1, 3, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 1.0), flat)
    point = torch.zeros(1, 1, 15, 15)
    point[0, 0, 7, 7] = 1.0
    spread = gaussian_blur(point, 1.0)[0, 0]
    weights = [math.exp(-t * t / 2) for t in range(-4, 5)]  # 3 sigma + 1 taps each side
    centre = 1 / sum(weights)
    assert abs(spread[7, 7].item() - centre ** 2) < 1e-6
    assert abs(spread[7, 8].item() - centre ** 2 * math.exp(-0.5)) < 1e-6  # one pixel over: e^(-1/2) of the centre
    assert abs(spread.sum().item() - 1.0) < 1e-5  # nothing lost inside the image


def test_each_image_is_blurred_to_the_error_of_its_perception():
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    perceived = torch.stack([images[0], gaussian_blur(images[1:2], 1.5)[0], gaussian_blur(images[2:3], 4.0)[0]])
    matched = matched_blur(images, perceived)
    torch.testing.assert_close(matched[0], images[0])  # P(x) = x: no blur errs as little
    torch.testing.assert_close(matched[1:], perceived[1:])  # the very blurs of the widths tried
    assert 1.5 in BLUR_SIGMAS and 4.0 in BLUR_SIGMAS


def test_every_judge_reads_the_matched_blur_beside_p():
    class FirstPixel:
        name = "first pixel"

        def __call__(self, images):
            return (images.flatten(1)[:, 0] > 0.5).long()

    identity = nn.Unflatten(1, (1, 1, 2))  # P(x) = x, so the matched blur is x itself
    reading = measure_perception(net_with_decoder(identity), tiny_dataset(), judges=[FirstPixel()]).judges[0]
    assert reading.blurred_read_true == reading.accuracy_on_x == reading.p_read_true
