import math

import pytest
import torch
from helpers import batch_norm_dropout_net, linear_perception_net, net_with_decoder, pixels, tiny_dataset
from torch import nn

from perceptreg import data, measures
from perceptreg.core import models
from perceptreg.measures import (
    COLLAPSE_RATIO,
    centre_to_edge_ratio,
    error_map,
    evaluate,
    latents,
    linear_probe,
    mean_and_interval,
    mean_of,
    mlp_probe,
)


def test_perfect_decoder():
    result = evaluate(net_with_decoder(nn.Unflatten(1, (1, 1, 2))), tiny_dataset(), batch_size=3)
    assert result["accuracy"] == pytest.approx(0.75)  # image 2 ([1, 1], labelled "a") is called "b"
    assert result["recon_mse"] == 0.0
    assert result["recon_spread"] == pytest.approx(1.0)
    assert not result["decoder_collapsed"]


class Constant(nn.Module):
    def forward(self, z):
        return torch.full((len(z), 1, 1, 2), 0.5)


def test_constant_decoder_is_collapsed_and_mse_is_hand_computed():
    result = evaluate(net_with_decoder(Constant()), tiny_dataset())
    assert result["recon_mse"] == pytest.approx(0.25)  # every pixel is 0 or 1, recon 0.5
    assert result["recon_spread"] == 0.0 < COLLAPSE_RATIO
    assert result["decoder_collapsed"]


def test_evaluate_keeps_training_mode_and_batching_does_not_matter():
    net = models.mnist()
    train, test = data.mnist5k_split()
    subset = test.subset(torch.arange(0, 1000, 7))
    a = evaluate(net, subset, batch_size=13)
    b = evaluate(net, subset, batch_size=1000)
    assert net.training
    assert a["accuracy"] == b["accuracy"]
    assert a["recon_mse"] == pytest.approx(b["recon_mse"], rel=1e-6)


# --- what a representation keeps -----------------------------------------------------------------



def test_linear_probe_finds_a_linear_label_and_not_a_random_one():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(600, 8, generator=generator)
    linear_label = (z[:, :3] @ torch.tensor([2.0, -1.0, 0.5]) > 0).long() + 2 * (z[:, 3] > 0).long()  # 4 classes
    random_label = torch.randint(0, 4, (600,), generator=generator)
    assert linear_probe(z[:400], linear_label[:400], z[400:], linear_label[400:]) > 0.9
    assert 0.1 < linear_probe(z[:400], random_label[:400], z[400:], random_label[400:]) < 0.4  # chance: 0.25


@pytest.mark.parametrize("probe", [linear_probe, mlp_probe])
def test_probes_are_fitted_on_train_and_scored_on_test(probe):
    # train: the sign of z decides the label; test: two faces of class 1 only. Fitted on train
    # and scored on test the probe is right on both; fitted on test (one class) and scored
    # on train it would say 1 everywhere and be right on half.
    z = torch.cat([torch.arange(1, 21.0), -torch.arange(1, 21.0)]).unsqueeze(1)
    labels = (z[:, 0] > 0).long()
    assert probe(z, labels, torch.tensor([[5.0], [7.0]]), torch.tensor([1, 1])) == 1.0


def test_linear_probe_is_deterministic():
    z = torch.randn(100, 4, generator=torch.Generator().manual_seed(1))
    y = (z[:, 0] > 0).long()
    assert linear_probe(z[:60], y[:60], z[60:], y[60:]) == linear_probe(z[:60], y[:60], z[60:], y[60:])


def test_error_map_and_latents_by_hand():
    net = linear_perception_net(Constant())  # P(x) = 0.5 everywhere
    tiny = pixels([[0.0, 1.0], [1.0, 1.0]], [1, 0])
    assert error_map(net, tiny).tolist() == [[0.25, 0.25]]
    assert latents(net, tiny).tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_centre_to_edge_ratio_by_hand():
    errors = torch.zeros(2, 8)
    errors[:, :2] = 1.0  # left quarter
    errors[:, 6:] = 1.0  # right quarter
    errors[:, 2:6] = 0.25  # the middle half
    assert centre_to_edge_ratio(errors) == pytest.approx(0.25)


def test_mean_and_interval():
    assert mean_and_interval([0.5]) == (0.5, 0.0)
    mean, half = mean_and_interval([1.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(12.706 * 2 ** 0.5 / 2 ** 0.5, rel=1e-3)  # t(0.975, 1) * s / sqrt(n)


def test_mean_of_is_the_mean_with_its_t_interval_as_stored():
    # t(0.975, 4) * std / sqrt(5) = 2.7764 * 1.5811 / 2.2361 = 1.9632 either side of 3
    measured = mean_of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert measured["mean"] == 3.0 and measured["n"] == 5
    assert (measured["low"], measured["high"]) == pytest.approx((1.0368, 4.9632), abs=1e-4)
    assert mean_of([0.25]) == {"mean": 0.25, "low": 0.25, "high": 0.25, "n": 1}  # one value: no spread


@pytest.mark.parametrize("successes, n, low, high", [
    # Wilson 95 % intervals, worked out by hand (and as statsmodels' proportion_confint gives them)
    (870, 1000, 0.8477, 0.8894), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (1, 2, 0.0945, 0.9055),
])
def test_rate_has_the_wilson_interval(successes, n, low, high):
    measured = measures.rate(successes, n)
    assert measured["rate"] == successes / n and measured["n"] == n
    assert (measured["low"], measured["high"]) == pytest.approx((low, high), abs=1e-4)
    assert measures.format_rate(measures.rate(870, 1000)) == "87.0 % [84.8, 88.9]"
    assert measures.format_rate(measures.rate(0, 0)) == "- (of none)"  # no items: no share, not "nan %"


def test_rate_of_nothing_is_nan():
    assert math.isnan(measures.rate(0, 0)["rate"]) and measures.rate_of(torch.tensor([True, False, True]))["rate"] == 2 / 3


def test_evaluate_runs_the_model_in_eval_mode():
    net = batch_norm_dropout_net()
    images = (torch.rand(64, 1, 2, 2) * 255).to(torch.uint8)
    dataset = data.ImageDataset(images, torch.arange(64) % 3, ("a", "b", "c"), "tiny")
    net.eval()
    expected = evaluate(net, dataset, batch_size=16)
    net.train()
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    assert evaluate(net, dataset, batch_size=16) == expected
    assert all(torch.equal(buffers[k], v) for k, v in net.state_dict().items()) and net.training


@pytest.mark.slow
def test_mlp_probe_reads_what_a_linear_probe_cannot():
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(600, 2, generator=generator) * 2 - 1
    labels = ((points[:, 0] > 0) ^ (points[:, 1] > 0)).long()  # XOR: no line separates it
    train, test = slice(0, 400), slice(400, 600)
    linear = measures.linear_probe(points[train], labels[train], points[test], labels[test])
    mlp = measures.mlp_probe(points[train], labels[train], points[test], labels[test])
    assert linear < 0.7 and mlp > 0.9
    assert mlp == measures.mlp_probe(points[train], labels[train], points[test], labels[test])  # seeded


# --- collapse on shapes, colour taken out ---------------------------------------------------------

def two_colour_images(masks: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) images painting mask i in colour fg[i] on bg[i]."""
    masks = masks.unsqueeze(1)
    return bg.view(-1, 3, 1, 1) * (1 - masks) + fg.view(-1, 3, 1, 1) * masks


def test_shape_maps_ignore_colour_and_contrast():
    mask = torch.zeros(1, 4, 4)
    mask[0, 1:3, 1] = 1
    red_on_blue = two_colour_images(mask, torch.tensor([[1.0, 0, 0]]), torch.tensor([[0, 0, 1.0]]))
    grey_on_white = two_colour_images(mask, torch.tensor([[0.3, 0.3, 0.3]]), torch.tensor([[1.0, 1.0, 1.0]]))
    maps = measures.shape_maps(torch.cat([red_on_blue, grey_on_white]))
    assert torch.allclose(maps[0], maps[1])
    # by hand: 2 of 16 pixels inked, standardised values sqrt(7) (ink) and -1/sqrt(7) (sample std)
    std = (2 * 14 / 16 ** 2 * 16 / 15) ** 0.5
    assert maps[0, 1, 1].item() == pytest.approx(((1 - 2 / 16) / std) ** 2)
    assert maps[0, 0, 0].item() == pytest.approx((2 / 16 / std) ** 2)
    assert torch.equal(measures.shape_maps(torch.ones(1, 3, 4, 4)), torch.zeros(1, 4, 4))  # one colour


class PaintsOneShape(nn.Module):
    """A decoder that returns one fixed mask in the colours of each image (read from z)."""

    def __init__(self, mask):
        super().__init__()
        self.mask = mask

    def forward(self, z):
        fg, bg = z[:, :3], z[:, 3:]
        return two_colour_images(self.mask.expand(len(z), -1, -1), fg, bg)


def coloured_shapes(n=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    masks = (torch.rand(n, 8, 8, generator=generator) > 0.7).float()
    fg, bg = torch.rand(n, 3, generator=generator), torch.rand(n, 3, generator=generator)
    images = (two_colour_images(masks, fg, bg) * 255).round().to(torch.uint8)
    return data.ImageDataset(images, torch.arange(n) % 2, ("a", "b"), "shapes"), fg, bg


def test_a_decoder_that_keeps_colour_only_is_collapsed_and_a_faithful_one_is_not():
    shapes, fg, bg = coloured_shapes()
    encoder = LookUp(shapes.images, torch.cat([fg, bg], 1))  # z = each image's two colours
    one_shape = models.PerceptionNet(encoder, nn.Linear(6, 2), PaintsOneShape(torch.ones(8, 8).tril()), (3, 8, 8))
    result = evaluate(one_shape, shapes)
    assert result["recon_spread"] > 2 * COLLAPSE_RATIO  # colour alone passes the pixel test
    assert result["shape_spread"] < 1e-6 < measures.SHAPE_COLLAPSE_RATIO
    assert result["decoder_collapsed"]
    faithful = models.PerceptionNet(nn.Identity(), nn.Sequential(nn.Flatten(), nn.Linear(192, 2)),
                                    nn.Identity(), (3, 8, 8))
    result = evaluate(faithful, shapes)
    assert result["shape_spread"] == pytest.approx(1.0) and result["recon_spread"] == pytest.approx(1.0)
    assert not result["decoder_collapsed"]


class LookUp(nn.Module):
    """z of image i = row i of ``table`` (found by exact match of the image)."""

    def __init__(self, images, table):
        super().__init__()
        self.keys, self.table = images.float().flatten(1) / 255, table

    def forward(self, x):
        index = torch.cdist(x.flatten(1).float(), self.keys).argmin(1)
        return self.table[index]


# --- gradient shares ------------------------------------------------------------------------------

def test_gradient_shares_by_hand_and_as_lambda_scales():
    net = linear_perception_net(nn.Sequential(nn.Linear(2, 2), nn.Unflatten(1, (1, 1, 2))))
    net.encoder = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))  # F with parameters
    with torch.no_grad():
        net.encoder[1].weight.copy_(torch.tensor([[1.0, 0.5], [-0.5, 1.0]]))
        net.encoder[1].bias.zero_()
    images = pixels([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.2, 0.6]], [1, 0, 1, 0])
    shares = measures.gradient_shares(net, images, lam=0.5, batch_size=4, n_batches=1)
    x = data.to_float(images.images)  # one batch of all 4, in the shuffled order (sums do not care)
    logits, _, recon = net(x)
    ce = nn.functional.cross_entropy(logits, images.labels)
    rec = 0.5 * (x - recon).square().flatten(1).sum(1).mean()
    norm = [torch.cat([g.flatten() for g in torch.autograd.grad(t, list(net.encoder.parameters()), retain_graph=True)]).norm().item()
            for t in (ce, rec)]
    assert shares["ce_grad_norm"] == pytest.approx(norm[0], rel=1e-6)
    assert shares["recon_grad_norm"] == pytest.approx(norm[1], rel=1e-6)
    assert shares["ce_share"] == pytest.approx(norm[0] / sum(norm), rel=1e-6)
    tenfold = measures.gradient_shares(net, images, lam=5.0, batch_size=4, n_batches=1)
    assert tenfold["recon_grad_norm"] == pytest.approx(10 * norm[1], rel=1e-6)
    assert tenfold["ce_grad_norm"] == pytest.approx(norm[0], rel=1e-6)
    none = measures.gradient_shares(net, images, lam=0.0, batch_size=4, n_batches=1)
    assert none["recon_grad_norm"] == 0 and none["ce_share"] == 1
    assert net.training and all(p.grad is None for p in net.parameters())


def test_mcnemar_by_hand():
    # 1 pair only the first says yes, 9 only the second: p = 2 P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024
    first = torch.tensor([True] * 3 + [True] + [False] * 9 + [False] * 2)
    second = torch.tensor([True] * 3 + [False] + [True] * 9 + [False] * 2)
    found = measures.mcnemar(first, second)
    assert (found["both"], found["first_only"], found["second_only"], found["neither"]) == (3, 1, 9, 2)
    assert found["p_value"] == pytest.approx(22 / 1024)
    assert measures.mcnemar(first, first)["p_value"] == 1.0  # no discordant pair
    assert measures.mcnemar(torch.tensor([True] * 5), torch.tensor([False] * 5))["p_value"] == pytest.approx(2 / 32)
