"""Inversion, the method: small layers whose inverse is known by hand."""

import pytest
import torch
from torch import nn

from perceptreg.core.errors import PerceptregError
from perceptreg.core.inversion import batch_norm_prior, invert_images, total_variation
from perceptreg.core.inversion_settings import InversionSettings

MATCH_ONLY = InversionSettings(steps=300, tv_weight=0, norm_weight=0, bn_weight=0)


def linear(weight: torch.Tensor) -> nn.Module:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return nn.Sequential(nn.Flatten(), layer)


def images(n=3):
    return 0.2 + 0.6 * torch.rand(n, 2, 2, 2, generator=torch.Generator().manual_seed(1))  # inside [0, 1]


def test_an_invertible_linear_layer_gives_the_input_back():
    rotation = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(0)))[0]
    x = images()
    found, error = invert_images(linear(rotation), x, MATCH_ONLY)
    assert torch.allclose(found, x, atol=2e-3)
    assert error.max() < 1e-5


def test_a_wide_linear_layer_is_matched_up_to_its_null_space():
    weight = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))  # 5 of 8 directions unseen
    x = images()
    found, error = invert_images(linear(weight), x, MATCH_ONLY)
    difference = (found - x).flatten(1)
    assert (difference @ weight.T).abs().max() < 1e-4  # what the layer sees: matched
    assert difference.norm(dim=1).min() > 0.05  # what it does not see: not recovered
    assert error.max() < 1e-8
    assert found.min() >= 0 and found.max() <= 1


def test_the_inversion_stays_in_the_pixel_range_where_the_match_would_leave_it():
    bright = torch.full((2, 1, 2, 2), 1.5)  # an activation no image in [0, 1] gives
    found, error = invert_images(nn.Flatten(), bright, MATCH_ONLY)
    assert found.max() == 1 and found.min() == 1  # as near as the range allows
    assert error.max() == pytest.approx((0.5 / 1.5) ** 2)


def test_the_model_gets_no_gradient_and_keeps_its_mode():
    layer = linear(torch.eye(8)).train()
    invert_images(layer, images(), InversionSettings(steps=2))
    assert all(p.grad is None for p in layer.parameters()) and layer.training


def test_a_seed_gives_the_same_images_and_batches_do_not_mix_them():
    layer = nn.Sequential(nn.Conv2d(2, 4, 2), nn.ReLU(), nn.Flatten())
    settings = InversionSettings(steps=20)
    first, _ = invert_images(layer, images(), settings)
    assert torch.equal(first, invert_images(layer, images(), settings)[0])
    assert not torch.allclose(first, invert_images(layer, images(), InversionSettings(steps=20, seed=1))[0])
    # the starts are drawn in order, so one image at a time starts each image where three at once did
    one_by_one, _ = invert_images(layer, images(), InversionSettings(steps=20, batch_size=1))
    assert torch.allclose(first, one_by_one, atol=1e-5)


def test_total_variation_by_hand():
    checker = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    # 2 vertical and 2 horizontal neighbours, each differing by 1, over 4 pixels
    assert total_variation(checker).tolist() == [1.0]
    assert total_variation(torch.full((2, 3, 4, 4), 0.3)).tolist() == [0.0, 0.0]
    assert total_variation(torch.tensor([[[[0.0, 0.5]]]])).tolist() == [0.125]  # one row: 0.5^2 / 2


def test_the_batch_norm_prior_by_hand():
    norm = nn.BatchNorm1d(2).eval()  # running mean 0, variance 1
    with batch_norm_prior(nn.Sequential(norm)) as terms:
        norm(torch.tensor([[1.0, 1.0], [3.0, 3.0]]))  # mean (2, 2), variance (1, 1)
    assert terms[0].item() == pytest.approx(8 ** 0.5)
    norm(torch.ones(2, 2))
    assert len(terms) == 1  # the hooks are gone


def test_the_batch_norm_prior_alone_draws_the_batch_to_the_running_statistics():
    norm = nn.BatchNorm1d(2)
    with torch.no_grad():
        norm.running_mean.copy_(torch.tensor([0.3, 0.7]))
        norm.running_var.copy_(torch.tensor([0.01, 0.04]))
    blind = nn.Linear(2, 1)  # sees nothing: the match term has no gradient
    with torch.no_grad():
        blind.weight.zero_()
        blind.bias.fill_(1.0)
    found, _ = invert_images(nn.Sequential(nn.Flatten(), norm, blind), torch.rand(64, 1, 1, 2),
                             InversionSettings(steps=300, tv_weight=0, norm_weight=0, bn_weight=1))
    pixels = found.flatten(1)
    assert torch.allclose(pixels.mean(0), torch.tensor([0.3, 0.7]), atol=0.02)
    assert torch.allclose(pixels.var(0, unbiased=False), torch.tensor([0.01, 0.04]), atol=0.005)


@pytest.mark.parametrize("settings, message", [
    ({"steps": 0}, "`steps` must be at least 1, got 0"),
    ({"batch_size": 0}, "`batch_size` must be at least 1"),
    ({"lr": float("nan")}, "`lr` must be a finite number above 0"),
    ({"tv_weight": -1.0}, "`tv_weight` must be a finite number >= 0"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(PerceptregError, match=message):
        InversionSettings(**settings)
