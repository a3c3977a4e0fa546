"""The detector at a fixed false-positive rate: thresholds set on held-out clean images,
and how many attacks succeed without being flagged.

A detector flags a score outside its band (low, high):
- one-sided, "a large ||x - P(x)||^2 is adversarial": (-inf, high);
- two-sided, "too large or too small": (low, high), each tail getting half the rate, which
  catches attacks that make the reconstruction too good (an AUROC far below 0.5).

    low, high = band(held_out_scores, 0.05, "two-sided")
    hidden = success & ~flagged(adversarial_scores, (low, high))
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from perceptreg.core.errors import PerceptregError
from perceptreg.measures import rate, rate_of

SIDES = ("one-sided", "two-sided")


def check_fprs(fprs: Sequence[float]) -> tuple[float, ...]:
    """The one check of false-positive rates: at least one, each in (0, 1)."""
    if not len(fprs):
        raise PerceptregError("`fpr` needs at least one rate, e.g. 0.01,0.05")
    if len(set(fprs)) != len(fprs):
        raise PerceptregError(f"`fpr` gives a rate more than once ({', '.join(f'{f:g}' for f in fprs)}); give each once")
    for fpr in fprs:
        if not 0 < fpr < 1:
            raise PerceptregError(f"`fpr` must lie in (0, 1), e.g. 0.05 for 5 %; got {fpr}")
    return tuple(float(f) for f in fprs)


def band(clean_scores: torch.Tensor, fpr: float, sided: str = "one-sided") -> tuple[float, float]:
    """The thresholds (low, high) that flag at most ``fpr`` of ``clean_scores``: with n clean
    scores sorted, k = floor(fpr * n) of them lie above high (one-sided), or k = floor(fpr * n / 2)
    above high and as many below low (two-sided); fewer where scores tie at a threshold."""
    check_fprs([fpr])
    if sided not in SIDES:
        raise PerceptregError(f"`sided` must be one of {', '.join(SIDES)}, got {sided!r}")
    n = len(clean_scores)
    if n == 0:
        raise PerceptregError("thresholds need held-out clean images; got none")
    ordered = clean_scores.double().sort().values
    # + 1e-9: fpr * n is an integer in exact arithmetic more often than in floats (0.29 * 100)
    tail = math.floor(fpr * n / (1 if sided == "one-sided" else 2) + 1e-9)
    high = ordered[n - 1 - tail].item()
    return (-math.inf, high) if sided == "one-sided" else (ordered[tail].item(), high)


def flagged(scores: torch.Tensor, thresholds: tuple[float, float]) -> torch.Tensor:
    """Which scores the detector flags: outside [low, high]."""
    low, high = thresholds
    return (scores < low) | (scores > high)


def strictest_band(clean_scores: torch.Tensor, fprs: Sequence[float]) -> tuple[float, float]:
    """The band inside every detector's at these rates (both sides): what an adaptive attacker
    aims at, to stay unflagged by each detector measured."""
    bands = [band(clean_scores, fpr, sided) for fpr in fprs for sided in SIDES]
    return max(b[0] for b in bands), min(b[1] for b in bands)


def at_fixed_rates(held_out: torch.Tensor, clean: torch.Tensor, adversarial: torch.Tensor,
                   success: torch.Tensor, eligible: torch.Tensor, fprs: Sequence[float]) -> dict:
    """Per detector (one- and two-sided) and rate: thresholds on the ``held_out`` clean scores;
    the false positives they give on ``clean``, the clean scores of the attacked images (an
    out-of-sample check of the rate); and of the ``eligible`` images (classified right), the
    share the attack fooled (``success``) with an ``adversarial`` score left unflagged.
    Rates are ``measures.rate``: the share with its 95 % Wilson interval."""
    found = {}
    for sided in SIDES:
        found[sided] = []
        for fpr in check_fprs(fprs):
            low, high = band(held_out, fpr, sided)
            hidden = success & ~flagged(adversarial, (low, high))
            found[sided].append({"fpr": fpr, "low": low if math.isfinite(low) else None, "high": high,
                                 "false_positives": rate_of(flagged(clean, (low, high))),
                                 "succeeded_and_undetected": rate(int(hidden.sum()), int(eligible.sum()))})
    return found
