"""Verdicts on claims, computed from measured numbers and their 95 % intervals, never typed:
REPRODUCING.md's last column.

A claim holds when its whole interval lies on the claimed side of the line it is tested
against, does not hold when the whole interval lies on the other side, and is undecided when
the interval straddles the line, or when it comes from fewer than ``MIN_SEEDS`` seeds (a
Student-t interval over two seeds is as wide as the range it could say anything about). A
verdict over images of trained models (``over_models``) is labelled "one model" (or "2
models") below ``MIN_MODELS``: its interval covers the images, not the training.

    verdict = above(of_rate(Rate.count(90, 100)), MOST, "success")
    verdict.outcome  # "holds"
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from perceptreg.adversarial.summary import Rate
from perceptreg.measures import mean_of

HOLDS, FAILS, UNDECIDED, NOT_COMPARABLE, NOT_MEASURED = (
    "holds", "does not hold", "undecided", "not comparable", "not measured")
MIN_SEEDS = 5  # fewer: an interval over seeds is labelled uninformative and decides nothing
MIN_MODELS = 3  # fewer trained models: a verdict over their images is labelled with their number
MOST = 0.5  # "most images": the line a rate is tested against where the paper shows examples, not rates


@dataclass(frozen=True)
class Verdict:
    outcome: str  # one of HOLDS, FAILS, UNDECIDED, NOT_COMPARABLE, NOT_MEASURED
    why: str
    label: str = ""  # what the outcome rests on where it is less than the claim: "one model"

    def text(self) -> str:
        return f"**{self.outcome}{f' ({self.label})' if self.label else ''}**: {self.why}"


@dataclass(frozen=True)
class Interval:
    """A measured value with its 95 % interval [low, high], from ``n`` seeds where over seeds
    (``seeds``), else None (a Wilson or DeLong interval over images)."""
    value: float
    low: float
    high: float
    seeds: int | None = None
    scale: float = 100  # shown as scale * value, with unit and digits: a rate in percent by default
    unit: str = " %"
    digits: int = 1

    @property
    def informative(self) -> bool:
        return self.seeds is None or self.seeds >= MIN_SEEDS

    def text(self) -> str:
        scale, unit, digits = self.scale, self.unit, self.digits
        if math.isnan(self.low):  # a DeLong interval of fewer than two of a kind; a rate of nothing
            return f"{scale * self.value:.{digits}f}{unit} (no interval)"
        shown = f"{scale * self.value:.{digits}f}{unit} [{scale * self.low:.{digits}f}, {scale * self.high:.{digits}f}]"
        if self.seeds is None:
            return shown
        if self.seeds < 2:
            return f"{scale * self.value:.{digits}f}{unit} (1 seed, no interval)"
        return shown + ("" if self.informative else f" ({self.seeds} seeds: uninformative)")


def of_rate(measured: Rate) -> Interval:
    """A stored rate (Wilson) as an Interval."""
    return Interval(measured.rate, measured.low, measured.high)


def over_seeds(values: Sequence[float], **shown) -> Interval:
    """The mean of per-seed values with its Student-t interval; ``shown``: Interval's scale, unit, digits."""
    measured = mean_of(values)
    return Interval(measured["mean"], measured["low"], measured["high"], measured["n"], **shown)


def paired_difference(first: Sequence[float], second: Sequence[float]) -> Interval:
    """first - second, seed by seed (the same seeds in the same order), with its t interval,
    in percentage points."""
    if len(first) != len(second):
        raise ValueError(f"a paired difference needs the same seeds, got {len(first)} and {len(second)} values")
    return over_seeds([a - b for a, b in zip(first, second)], unit=" points")


def _uninformative(measured: Interval) -> Verdict | None:
    if math.isnan(measured.low) or math.isnan(measured.high):
        return Verdict(UNDECIDED, "no interval: too few images or seeds to give one")
    if measured.informative:
        return None
    seeds = "1 seed" if measured.seeds < 2 else f"{measured.seeds} seeds"
    return Verdict(UNDECIDED, f"{seeds}; an interval over seeds decides nothing below {MIN_SEEDS}")


def above(measured: Interval, line: float, what: str) -> Verdict:
    """Does ``what`` exceed ``line``? Holds when the interval lies above it, does not hold
    when it lies below it (or on it), undecided when it straddles it."""
    return _against(measured, line, what, "above")


def below(measured: Interval, line: float, what: str) -> Verdict:
    """Is ``what`` under ``line``? The mirror of ``above``."""
    return _against(measured, line, what, "below")


def _against(measured: Interval, line: float, what: str, side: str) -> Verdict:
    said = f"{what} {measured.text()}"
    if (uninformative := _uninformative(measured)) is not None:
        return Verdict(UNDECIDED, f"{said}; {uninformative.why}")
    inside, outside = (measured.low > line, measured.high <= line) if side == "above" else \
        (measured.high < line, measured.low >= line)
    if inside:
        return Verdict(HOLDS, f"{said}, all {side} {line:g}")
    if outside:
        return Verdict(FAILS, f"{said}, not {side} {line:g}")
    return Verdict(UNDECIDED, f"{said} straddles {line:g}")


def exceeds(first: Interval, second: Interval, what: tuple[str, str]) -> Verdict:
    """Is the first measure larger than the second (unpaired)? Holds when their intervals do
    not overlap with the first higher; does not hold when they do not overlap with the first
    lower; undecided when they overlap (a conservative test: overlap is not equality)."""
    said = f"{what[0]} {first.text()} against {what[1]} {second.text()}"
    for measured in (first, second):
        if (uninformative := _uninformative(measured)) is not None:
            return Verdict(UNDECIDED, f"{said}; {uninformative.why}")
    if first.low > second.high:
        return Verdict(HOLDS, f"{said}: the intervals do not overlap")
    if first.high < second.low:
        return Verdict(FAILS, f"{said}: the intervals do not overlap, the other way")
    return Verdict(UNDECIDED, f"{said}: the intervals overlap")


def every(verdicts: dict[str, Verdict]) -> Verdict:
    """A claim made of several parts ("at 1 % and at 5 % false positives"): holds when every
    part holds, does not hold when any part does not, else undecided; the why names each."""
    if len(verdicts) == 1:
        return next(iter(verdicts.values()))
    outcomes = [v.outcome for v in verdicts.values()]
    outcome = HOLDS if set(outcomes) == {HOLDS} else FAILS if FAILS in outcomes else UNDECIDED
    return Verdict(outcome, "; ".join(f"{name}: {v.outcome}, {v.why}" for name, v in verdicts.items()))


def combine(verdicts: dict[str, Verdict]) -> Verdict:
    """One verdict of several measurements of the same claim (judges): their common outcome
    when all agree, else undecided; the why names each."""
    if len(verdicts) == 1:
        return next(iter(verdicts.values()))
    outcomes = {v.outcome for v in verdicts.values()}
    parts = "; ".join(f"{name}: {v.outcome}, {v.why}" for name, v in verdicts.items())
    if len(outcomes) == 1:
        return Verdict(outcomes.pop(), parts)
    return Verdict(UNDECIDED, "they disagree: " + parts)


def over_models(verdicts: dict[str, Verdict]) -> Verdict:
    """One verdict of a claim measured on each of several trained models (seeds), each over
    its images: their common outcome (``combine``), labelled "one model" ("2 models") below
    ``MIN_MODELS``: an interval over one model's images says nothing of another training."""
    combined = combine(verdicts)
    if len(verdicts) >= MIN_MODELS:
        return combined
    label = "one model" if len(verdicts) == 1 else f"{len(verdicts)} models"
    return Verdict(combined.outcome, f"{combined.why}; decided by {label}: its interval covers the images, not the "
                                     f"training (at least {MIN_MODELS} seeds decide)", label)
