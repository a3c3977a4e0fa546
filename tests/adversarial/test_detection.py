import math

import pytest
import torch

from perceptreg.adversarial.detection import (
    blur,
    blur_residual_scores,
    median_filter,
    pixel_statistic_scores,
    reconstruction_scores,
    roc_auc,
    roc_auc_interval,
    roc_curve,
    shuffle_perturbations,
    squeeze_bits,
    squeezing_scores,
)

# --- ROC ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("negative, positive, auc", [
    ([0, 1, 2], [3, 4], 1.0),  # perfectly separated
    ([3, 4], [0, 1, 2], 0.0),  # perfectly inverted
    ([1, 3], [2, 4], 0.75),  # 3 of the 4 (positive, negative) pairs ordered right
    ([1, 2], [2, 3], 0.875),  # the tie 2 = 2 counts half: (1 + 1 + 0.5 + 1) ... / 4
    ([5, 5], [5], 0.5),  # all tied
])
def test_roc_auc_by_hand(negative, positive, auc):
    assert roc_auc(torch.tensor(negative, dtype=torch.float), torch.tensor(positive, dtype=torch.float)) == pytest.approx(auc)


def test_roc_curve_by_hand():
    fpr, tpr = roc_curve(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0]))
    # thresholds 4, 3, 2, 1: flagged {4}, {4, 3}, {4, 3, 2}, all
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    area = torch.trapezoid(tpr, fpr).item()
    assert area == pytest.approx(roc_auc(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0])))


def test_scores_by_hand():
    x = torch.tensor([[[[0.0, 1.0, 0.25]]], [[[0.5, 0.9, 0.1]]]])  # (2, 1, 1, 3)
    assert pixel_statistic_scores(x).tolist() == pytest.approx([0.0625, 0.25 + 0.01 + 0.01])
    assert reconstruction_scores(x, torch.zeros_like(x)).tolist() == pytest.approx([1.0625, 0.25 + 0.81 + 0.01])


def test_shuffled_perturbations_permute_each_images_own_values():
    images = torch.full((3, 2, 4, 4), 0.5)
    delta = torch.linspace(-0.2, 0.2, 3 * 32).view(3, 2, 4, 4)
    shuffled = shuffle_perturbations(images, images + delta)
    moved = (shuffled - images).flatten(1)
    for i in range(3):  # the same values per image, in another order
        torch.testing.assert_close(moved[i].sort().values, delta[i].flatten().sort().values)
    assert not torch.equal(moved, delta.flatten(1))
    assert torch.equal(shuffled, shuffle_perturbations(images, images + delta))  # seeded
    assert not torch.equal(shuffled, shuffle_perturbations(images, images + delta, seed=1))


# --- natural-image baselines: blur residual and feature squeezing --------------------------------

def test_blur_residual_by_hand():
    constant = torch.full((2, 3, 5, 5), 0.3)
    assert blur_residual_scores(constant).tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    dot = torch.zeros(1, 1, 5, 5)
    dot[0, 0, 2, 2] = 1.0
    # the 3x3 box spreads the dot over 9 pixels of 1/9: (1 - 1/9)^2 + 8 (1/9)^2 = 72/81
    assert blur(dot)[0, 0, 1:4, 1:4].flatten().tolist() == pytest.approx([1 / 9] * 9)
    assert blur(dot).sum().item() == pytest.approx(1.0)
    assert blur_residual_scores(dot).item() == pytest.approx(8 / 9)
    # one row [a, b] with replicated edges: blur gives [(2a + b) / 3, (a + 2b) / 3], residual 2 (a - b)^2 / 9
    assert blur_residual_scores(torch.tensor([[[[0.2, 0.8]]]])).item() == pytest.approx(2 * 0.36 / 9)


def test_squeeze_bits_by_hand():
    x = torch.tensor([0.0, 0.1, 0.52, 0.9, 1.0])
    assert squeeze_bits(x, 1).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert squeeze_bits(x, 5).tolist() == pytest.approx([0, 3 / 31, 16 / 31, 28 / 31, 1])
    assert torch.equal(squeeze_bits(squeeze_bits(x)), squeeze_bits(x))  # 5 bits by default, idempotent


def test_median_filter_by_hand():
    one_dot = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert median_filter(one_dot).flatten().tolist() == [0.0] * 4  # a lone pixel goes
    one_hole = 1 - one_dot
    # window of (0, 0): {0, 1, 1, 1}, the upper middle value 1; the others see only 1s
    assert median_filter(one_hole).flatten().tolist() == [1.0] * 4
    # rows 0 0 / 1 1: the top row's windows hold {0, 0, 1, 1}, an even tie: the upper value, 1, as scipy
    assert median_filter(torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]])).flatten().tolist() == [1.0] * 4
    ramp = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    assert median_filter(ramp, 3)[0, 0, 1, 1].item() == 5.0  # the median of 1..9
    # the corner's window, edges replicated: 1 1 2 / 1 1 2 / 4 4 5 -> sorted 1 1 1 1 2 2 4 4 5
    assert median_filter(ramp, 3)[0, 0, 0, 0].item() == 2.0
    two_channels = torch.stack([one_dot[0, 0], one_hole[0, 0]]).unsqueeze(0)  # (1, 2, 2, 2)
    assert median_filter(two_channels)[0].flatten(1).tolist() == [[0.0] * 4, [1.0] * 4]  # each channel alone


def test_squeezing_scores_by_hand():
    x = torch.tensor([[[[0.0, 0.1]]], [[[0.3, 0.3]]]])  # (2, 1, 1, 2)
    # a model that reads only the top 5 bits cannot tell x from its 5-bit squeeze: score 0
    blind = lambda images: squeeze_bits(images).flatten(1)  # noqa: E731
    assert squeezing_scores(blind, x, squeeze_bits).tolist() == [0.0, 0.0]
    # logits = pixels * 10, squeezed to 1 bit: [0, 1] -> [0, 0]; 2 classes: L1 = 2 |sigmoid(d) - sigmoid(d')|
    sharp = lambda images: images.flatten(1) * 10  # noqa: E731
    scores = squeezing_scores(sharp, x, lambda images: squeeze_bits(images, 1))
    assert scores.tolist() == pytest.approx([2 * (math.e / (1 + math.e) - 0.5), 0.0])
    many = torch.rand(7, 1, 1, 2)
    assert torch.allclose(squeezing_scores(sharp, many, squeeze_bits, batch_size=3),
                          squeezing_scores(sharp, many, squeeze_bits))


def test_shuffled_perturbation_matches_the_attacks_l2_after_the_clamp():
    # near-binary digits: most pixels at 0 or 1, where the clamp cuts half the shuffled values
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(8, 1, 28, 28, generator=generator) > 0.8).float()
    signs = torch.randint(0, 2, images.shape, generator=generator).float() * 2 - 1
    adversarial = (images + 0.2 * signs).clamp(0, 1)  # an eps-0.2 sign perturbation, clamped as attacks are
    shuffled = shuffle_perturbations(images, adversarial)
    attack_l2 = (adversarial - images).flatten(1).norm(dim=1)
    torch.testing.assert_close((shuffled - images).flatten(1).norm(dim=1), attack_l2, rtol=1e-4, atol=0)
    assert shuffled.min() >= 0 and shuffled.max() <= 1
    # unscaled, the clamp would have cut it short
    plain = (images + (adversarial - images).flatten(1)[:, torch.randperm(784)].view_as(images)).clamp(0, 1)
    assert ((plain - images).flatten(1).norm(dim=1) < 0.95 * attack_l2).all()


def test_roc_auc_interval_by_hand():
    # DeLong: V10 = [0.5, 1] (each positive's share of negatives below it), V01 = [1, 0.5];
    # var = 0.125 / 2 + 0.125 / 2 = 0.125: 0.75 +- 1.96 sqrt(0.125), clipped to [0, 1]
    low, high = roc_auc_interval(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0]))
    assert low == pytest.approx(0.75 - 1.959964 * 0.125**0.5) and high == 1.0
    # perfectly separated: no variance, the interval closes on 1
    assert roc_auc_interval(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == (1.0, 1.0)
    assert all(math.isnan(v) for v in roc_auc_interval(torch.tensor([1.0]), torch.tensor([2.0, 3.0])))


def test_roc_auc_interval_narrows_with_more_images():
    generator = torch.Generator().manual_seed(1)
    widths = []
    for n in (20, 2000):
        negative, positive = torch.randn(n, generator=generator), torch.randn(n, generator=generator) + 1
        low, high = roc_auc_interval(negative, positive)
        assert low < roc_auc(negative, positive) < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 5  # about 1 / sqrt(100) as wide


def _delong_by_definition(negative: list[float], positive: list[float]) -> tuple[float, float]:
    """DeLong's interval written out from its definition, pair by pair (no ranks)."""
    def beats(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0
    v10 = [sum(beats(p, q) for q in negative) / len(negative) for p in positive]
    v01 = [sum(beats(p, q) for p in positive) / len(positive) for q in negative]

    def variance(values):
        mean = sum(values) / len(values)
        return sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    auc = sum(v10) / len(v10)
    half = 1.959964 * (variance(v10) / len(positive) + variance(v01) / len(negative)) ** 0.5
    return auc - half, auc + half


def test_roc_auc_interval_weighs_each_variance_by_its_own_count():
    # 7 positives against 40 negatives, far from 0 and 1: swapping the counts in the variance
    # terms (issue 37, N7) changes the width, which two of each cannot show
    generator = torch.Generator().manual_seed(3)
    negative, positive = torch.randn(40, generator=generator), torch.randn(7, generator=generator) + 0.8
    expected = _delong_by_definition(negative.tolist(), positive.tolist())
    assert 0 < expected[0] and expected[1] < 1  # not clipped
    assert roc_auc_interval(negative, positive) == pytest.approx(expected, abs=1e-6)
