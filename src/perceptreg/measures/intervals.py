"""Intervals: of a mean (Student-t), stored as {"mean", "low", "high", "n"}, and of a rate
(Wilson), as every rate is stored and printed: {"rate", "low", "high", "n"}, shown as
"87.0 % [84.8, 89.0]"; and McNemar's test of two yes/no measures paired on the same items."""

from __future__ import annotations

from typing import Sequence

import torch


def mean_and_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (0 for one value)."""
    from scipy.stats import t

    tensor = torch.tensor(list(values), dtype=torch.float64)
    if len(tensor) < 2:
        return tensor.mean().item(), 0.0
    half = t.ppf(0.5 + confidence / 2, len(tensor) - 1) * tensor.std().item() / len(tensor) ** 0.5
    return tensor.mean().item(), float(half)


def mean_of(values: Sequence[float], confidence: float = 0.95) -> dict:
    """``values``' mean with its Student-t interval, as {"mean", "low", "high", "n"}: over
    images (a judge's distances) or over seeds (a sweep's verdicts); low = high = mean for
    one value."""
    mean, half = mean_and_interval(values, confidence)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(values)}


# --- rates with their intervals --------------------------------------------------------------

WILSON_Z = 1.959964  # the normal quantile of a two-sided 95 % interval


def rate(successes: int, n: int) -> dict:
    """``successes`` of ``n`` as {"rate", "low", "high", "n"}: the share with its 95 % Wilson
    score interval (Wilson 1927), which stays inside [0, 1] and is sound at 0 and at n
    successes and for small n, where the normal approximation is not. n = 0: all nan."""
    successes, n = int(successes), int(n)
    if n == 0:
        return {"rate": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    share, z2 = successes / n, WILSON_Z ** 2
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = WILSON_Z / (1 + z2 / n) * (share * (1 - share) / n + z2 / (4 * n * n)) ** 0.5
    # At 0 and n successes one end is the share itself; rounding must not move it past it.
    return {"rate": share, "low": min(share, max(0.0, centre - half)), "high": max(share, min(1.0, centre + half)), "n": n}


def rate_of(hits: torch.Tensor) -> dict:
    """``rate`` of a bool tensor: the share of True among its elements."""
    return rate(int(hits.sum()), hits.numel())


def format_rate(measured: dict) -> str:
    """A ``rate`` as "87.0 % [84.8, 89.0]" (percent, then its 95 % interval); a share of
    no items (n = 0) as "- (of none)", not "nan %"."""
    if measured.get("n") == 0:
        return "- (of none)"
    return f"{100 * measured['rate']:.1f} % [{100 * measured['low']:.1f}, {100 * measured['high']:.1f}]"


def mcnemar(first: torch.Tensor, second: torch.Tensor) -> dict:
    """McNemar's exact test of two bool tensors paired item by item (e.g. "the judge reads
    P(x_adv) as adversarial" through two decoders, on the same images): only the discordant
    pairs count, b = first only, c = second only; the two-sided p-value is
    min(1, 2 P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2). Returns the four counts and p."""
    from scipy.stats import binom

    if first.shape != second.shape:
        raise ValueError(f"paired measures need the same items, got {tuple(first.shape)} and {tuple(second.shape)}")
    b, c = int((first & ~second).sum()), int((~first & second).sum())
    p_value = 1.0 if b + c == 0 else min(1.0, 2 * float(binom.cdf(min(b, c), b + c, 0.5)))
    return {"both": int((first & second).sum()), "first_only": b, "second_only": c,
            "neither": int((~first & ~second).sum()), "p_value": p_value}
