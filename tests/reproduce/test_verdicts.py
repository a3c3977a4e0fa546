"""Verdicts from intervals, on numbers checked by hand."""

import pytest

from perceptreg.adversarial.summary import Rate
from reproduce.verdicts import (
    FAILS,
    HOLDS,
    MOST,
    UNDECIDED,
    Interval,
    Verdict,
    above,
    below,
    combine,
    every,
    exceeds,
    of_rate,
    over_models,
    over_seeds,
    paired_difference,
)


def test_a_mean_over_five_seeds_has_its_t_interval():
    # mean 3, sd sqrt(2.5) = 1.5811, se 0.7071, t(0.975, 4) = 2.7764: half-width 1.9632
    measured = over_seeds([1, 2, 3, 4, 5])
    assert (measured.value, measured.seeds) == (3, 5) and measured.informative
    assert measured.low == pytest.approx(1.0368, abs=1e-4) and measured.high == pytest.approx(4.9632, abs=1e-4)


def test_above_holds_fails_or_straddles_by_the_whole_interval():
    measured = over_seeds([1, 2, 3, 4, 5])  # [1.037, 4.963]
    assert above(measured, 1, "x").outcome == HOLDS
    assert above(measured, 1.1, "x").outcome == UNDECIDED
    assert above(measured, 4.97, "x").outcome == FAILS
    assert below(measured, 4.97, "x").outcome == HOLDS
    assert below(measured, 1, "x").outcome == FAILS
    assert below(measured, 3, "x").why.endswith("straddles 3")


def test_a_wilson_rate_is_tested_against_most():
    # 60 of 100: Wilson [0.502, 0.691], above a half; 58 of 100: [0.482, 0.672], straddles it
    assert above(of_rate(Rate.count(60, 100)), 0.5, "success").outcome == HOLDS
    assert above(of_rate(Rate.count(58, 100)), 0.5, "success").outcome == UNDECIDED
    assert above(of_rate(Rate.count(40, 100)), 0.5, "success").outcome == FAILS  # [0.309, 0.498]
    assert above(of_rate(Rate.count(60, 100)), 0.5, "success").why == "success 60.0 % [50.2, 69.1], all above 0.5"


def test_fewer_than_five_seeds_decide_nothing_however_far_the_mean():
    two = over_seeds([0.80, 0.90])  # mean 0.85, half 12.706 * 0.05 = 0.635
    assert two.text() == "85.0 % [21.5, 148.5] (2 seeds: uninformative)"
    verdict = above(two, 0, "accuracy")
    assert verdict.outcome == UNDECIDED and "2 seeds; an interval over seeds decides nothing below 5" in verdict.why
    assert over_seeds([0.9]).text() == "90.0 % (1 seed, no interval)"
    assert exceeds(over_seeds([0.9]), over_seeds([0.1]), ("a", "b")).outcome == UNDECIDED


def test_a_paired_difference_is_taken_seed_by_seed():
    # each seed's difference is 10 points, whatever the spread across seeds: the interval is 10 wide of nothing
    drop = paired_difference([0.9, 0.5, 0.7, 0.95, 0.6], [0.8, 0.4, 0.6, 0.85, 0.5])
    assert drop.value == pytest.approx(0.1) and drop.high - drop.low == pytest.approx(0, abs=1e-9)
    assert drop.text() == "10.0 points [10.0, 10.0]"
    assert above(drop, 0, "drop").outcome == HOLDS
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([0.9, 0.8], [0.8])


def test_exceeds_needs_intervals_apart():
    high, low, middle = Interval(0.6, 0.5, 0.7), Interval(0.3, 0.2, 0.4), Interval(0.45, 0.35, 0.55)
    assert exceeds(high, low, ("a", "b")).outcome == HOLDS
    assert exceeds(low, high, ("a", "b")).outcome == FAILS
    assert exceeds(high, middle, ("a", "b")).outcome == UNDECIDED
    auc = Interval(0.986, 0.975, 0.994, scale=1, unit="", digits=3)
    assert exceeds(auc, Interval(1.0, 1.0, 1.0, scale=1, unit="", digits=3), ("detector", "pixels")).why == (
        "detector 0.986 [0.975, 0.994] against pixels 1.000 [1.000, 1.000]: the intervals do not overlap, the other way")


def test_judges_must_agree_and_every_part_must_hold():
    yes, no, maybe = Verdict(HOLDS, "y"), Verdict(FAILS, "n"), Verdict(UNDECIDED, "m")
    assert combine({"a": yes, "b": yes}).outcome == HOLDS
    assert combine({"a": yes, "b": no}).outcome == UNDECIDED
    assert combine({"a": yes, "b": no}).why == "they disagree: a: holds, y; b: does not hold, n"
    assert combine({"a": no}) == no
    assert every({"1 %": yes, "5 %": yes}).outcome == HOLDS
    assert every({"1 %": yes, "5 %": maybe}).outcome == UNDECIDED
    assert every({"1 %": maybe, "5 %": no}).outcome == FAILS


def test_a_measure_without_an_interval_decides_nothing():
    auc = Interval(0.9, float("nan"), float("nan"), scale=1, unit="", digits=3)  # DeLong of one attack
    assert auc.text() == "0.900 (no interval)"
    assert above(auc, 0.5, "AUC").outcome == UNDECIDED
    assert exceeds(auc, Interval(0.1, 0.0, 0.2), ("a", "b")).why.endswith("no interval: too few images or seeds to give one")


def test_a_verdict_over_fewer_than_three_models_says_how_many_decided():
    holds = above(of_rate(Rate(rate=0.9, low=0.85, high=0.94, n=100)), MOST, "success")
    one = over_models({"demo": holds})
    assert (one.outcome, one.label) == (HOLDS, "one model") and one.text().startswith("**holds (one model)**: success")
    assert one.why.endswith("decided by one model: its interval covers the images, not the training (at least 3 "
                            "seeds decide)")
    assert over_models({"a": holds, "b": holds}).label == "2 models"
    three = over_models({"a": holds, "b": holds, "c": holds})
    assert (three.outcome, three.label) == (HOLDS, "") and three.text().startswith("**holds**: a: holds")
    fails = below(of_rate(Rate(rate=0.9, low=0.85, high=0.94, n=100)), MOST, "success")
    assert over_models({"a": holds, "b": holds, "c": fails}).outcome == UNDECIDED  # the models disagree
