import math

import pytest
import torch
from helpers import linear_perception_net, net_with_decoder, pixels, tiny_dataset
from torch import nn

from perceptreg import data, metrics, models
from perceptreg.metrics import (
    COLLAPSE_RATIO,
    centre_to_edge_ratio,
    error_map,
    evaluate,
    latents,
    linear_probe,
    mean_and_interval,
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


@pytest.mark.parametrize("successes, n, low, high", [
    # Wilson 95 % intervals, worked out by hand (and as statsmodels' proportion_confint gives them)
    (870, 1000, 0.8477, 0.8894), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (1, 2, 0.0945, 0.9055),
])
def test_rate_has_the_wilson_interval(successes, n, low, high):
    measured = metrics.rate(successes, n)
    assert measured["rate"] == successes / n and measured["n"] == n
    assert (measured["low"], measured["high"]) == pytest.approx((low, high), abs=1e-4)
    assert metrics.format_rate(metrics.rate(870, 1000)) == "87.0 % [84.8, 88.9]"


def test_rate_of_nothing_is_nan():
    assert math.isnan(metrics.rate(0, 0)["rate"]) and metrics.rate_of(torch.tensor([True, False, True]))["rate"] == 2 / 3


def test_evaluate_runs_the_model_in_eval_mode():
    from test_attacks import batch_norm_dropout_net

    net = batch_norm_dropout_net()
    images = (torch.rand(64, 1, 2, 2) * 255).to(torch.uint8)
    dataset = data.ImageDataset(images, torch.arange(64) % 3, ("a", "b", "c"), "tiny")
    net.eval()
    expected = evaluate(net, dataset, batch_size=16)
    net.train()
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    assert evaluate(net, dataset, batch_size=16) == expected
    assert all(torch.equal(buffers[k], v) for k, v in net.state_dict().items()) and net.training


def test_mlp_probe_reads_what_a_linear_probe_cannot():
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(600, 2, generator=generator) * 2 - 1
    labels = ((points[:, 0] > 0) ^ (points[:, 1] > 0)).long()  # XOR: no line separates it
    train, test = slice(0, 400), slice(400, 600)
    linear = metrics.linear_probe(points[train], labels[train], points[test], labels[test])
    mlp = metrics.mlp_probe(points[train], labels[train], points[test], labels[test])
    assert linear < 0.7 and mlp > 0.9
    assert mlp == metrics.mlp_probe(points[train], labels[train], points[test], labels[test])  # seeded
