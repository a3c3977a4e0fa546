import math

import pytest
import torch

from perceptreg.adversarial.thresholds import at_fixed_rates, band, check_fprs, flagged, strictest_band
from perceptreg.core.errors import PerceptregError

SCORES = torch.arange(1, 101, dtype=torch.float)  # 1, 2, ..., 100


def test_one_sided_band_flags_the_rate_by_hand():
    assert band(SCORES, 0.05) == (-math.inf, 95.0)  # flags 96..100: 5 of 100
    assert flagged(SCORES, band(SCORES, 0.05)).sum().item() == 5
    assert band(SCORES, 0.01) == (-math.inf, 99.0)
    assert band(SCORES, 0.29) == (-math.inf, 71.0)  # 0.29 * 100 is 28.999... in floats: still 29 flagged
    assert band(SCORES[:10], 0.05) == (-math.inf, 10.0)  # 0.5 of an image: none flagged


def test_two_sided_band_splits_the_rate_by_hand():
    # floor(0.05 * 100 / 2) = 2 each side: flags 1, 2 and 99, 100
    assert band(SCORES, 0.05, "two-sided") == (3.0, 98.0)
    assert flagged(SCORES, (3.0, 98.0)).nonzero().squeeze(1).tolist() == [0, 1, 98, 99]
    assert band(SCORES, 0.1, "two-sided") == (6.0, 95.0)


def test_strictest_band_lies_inside_every_band():
    assert strictest_band(SCORES, (0.01, 0.05)) == (3.0, 95.0)  # two-sided 5 %'s low, one-sided 5 %'s high


def test_rates_at_fixed_false_positives_by_hand():
    clean = torch.tensor([50.0, 99.5, 10.0])  # the attacked images before the attack
    adversarial = torch.tensor([96.0, 2.0, 50.0])  # the failed attack's 50 is unflagged: it must not count
    success = torch.tensor([True, True, False])
    eligible = torch.tensor([True, True, True])
    found = at_fixed_rates(SCORES, clean, adversarial, success, eligible, [0.05])
    one, two = found["one-sided"][0], found["two-sided"][0]
    assert (one["low"], one["high"]) == (None, 95.0) and (two["low"], two["high"]) == (3.0, 98.0)
    # one-sided: 96 is flagged, 2 is not: 1 of 3 eligible; two-sided: 2 < 3 is flagged "too clean", 96 is not
    assert one["succeeded_and_undetected"]["rate"] == pytest.approx(1 / 3)
    assert two["succeeded_and_undetected"]["rate"] == pytest.approx(1 / 3)
    assert one["succeeded_and_undetected"]["n"] == 3
    assert one["false_positives"]["rate"] == pytest.approx(1 / 3)  # 99.5 > 95
    assert two["false_positives"]["rate"] == pytest.approx(1 / 3)  # 99.5 > 98


@pytest.mark.parametrize("fprs", [[0.0], [1.0], [-0.1], [1.5], [math.nan], []])
def test_bad_rates(fprs):
    with pytest.raises(PerceptregError, match="`fpr`"):
        check_fprs(fprs)


def test_band_needs_held_out_scores():
    with pytest.raises(PerceptregError, match="thresholds need held-out clean images"):
        band(torch.tensor([]), 0.05)
    with pytest.raises(PerceptregError, match="`sided` must be one of"):
        band(SCORES, 0.05, "both")


def test_succeeded_and_undetected_is_a_share_of_the_images_classified_right():
    # 4 attacked, 2 classified right: the rate is of those 2, not of all 4 (issue 37, N5)
    clean = torch.tensor([50.0, 50.0, 50.0, 50.0])
    adversarial = torch.tensor([2.0, 96.0, 50.0, 50.0])
    success = torch.tensor([True, False, False, False])
    eligible = torch.tensor([True, True, False, False])
    hidden = at_fixed_rates(SCORES, clean, adversarial, success, eligible, [0.05])["one-sided"][0]
    assert hidden["succeeded_and_undetected"]["n"] == 2
    assert hidden["succeeded_and_undetected"]["rate"] == pytest.approx(1 / 2)
