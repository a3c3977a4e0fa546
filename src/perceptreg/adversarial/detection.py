"""The reconstruction-error detector of adversarial inputs, its ROC, and the baselines
that say how much of its AUC is the model's doing (docs/guides/attacks.md):

- ``reconstruction_scores``: ||x - P(x)||^2, the detector: "the perception does not fit x";
- ``pixel_statistic_scores``: sum over pixels of min(x, 1 - x)^2, no model at all: how far
  pixels sit from pure black or white, which added noise raises (near-binary digits only);
- ``blur_residual_scores``: ||x - blur(x)||^2, no model either: the high-frequency energy
  that added noise raises on natural images too;
- ``squeezing_scores``: feature squeezing (Xu et al. 2018, arXiv:1704.01155): how far H's
  softmax moves when x is squeezed by ``squeeze_bits`` or ``median_filter``;
- ``shuffle_perturbations``: the attack's perturbation with its pixels shuffled and scaled
  to the attack's own L2 norm after the clamp to [0, 1]: as much noise, in L2, with the
  attack's structure gone: the detector's AUC on these is what it owes to noise alone.

``roc_auc_interval`` gives an AUC's 95 % interval (DeLong et al. 1988).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from perceptreg.measures.intervals import WILSON_Z

SHUFFLE_SEED = 0  # the shuffled-perturbation control is one fixed draw, the same on every run
# Xu et al.'s squeezers for CIFAR-10: 5-bit colour depth and a 2x2 median filter.
SQUEEZE_BITS = 5
MEDIAN_SIZE = 2
BLUR_SIZE = 3  # the box blur's window: the smallest that removes one-pixel noise

# The detector's baselines, in the order every table shows them: key in the summary ->
# (row label, column heading, what the score is). The one list tables and summaries follow.
BASELINES = {
    "pixel_statistic": ("pixel statistic (no model)", "pixel AUC", "sum of min(x, 1 - x)^2 over pixels (no model)"),
    "blur_residual": ("blur residual (no model)", "blur AUC",
                      f"||x - blur(x)||^2, a {BLUR_SIZE}x{BLUR_SIZE} box blur (no model)"),
    "bit_depth": (f"feature squeezing, {SQUEEZE_BITS}-bit depth", "bits AUC",
                  f"||softmax(H(x)) - softmax(H(x at {SQUEEZE_BITS} bits))||_1 (Xu et al. 2018)"),
    "median_filter": (f"feature squeezing, {MEDIAN_SIZE}x{MEDIAN_SIZE} median", "median AUC",
                      f"||softmax(H(x)) - softmax(H({MEDIAN_SIZE}x{MEDIAN_SIZE} median of x))||_1 (Xu et al. 2018)"),
    "shuffled_perturbation": ("shuffled perturbation, L2-matched", "shuffled AUC",
                              "||x - P(x)||^2 of x + (x_adv - x) with its pixels shuffled, matched in L2 after the clamp"),
}


def reconstruction_scores(images: torch.Tensor, perceptions: torch.Tensor) -> torch.Tensor:
    """||x - P(x)||^2 per image: the detector's "this input is adversarial" score."""
    return (images - perceptions).square().flatten(1).sum(1)


def pixel_statistic_scores(images: torch.Tensor) -> torch.Tensor:
    """sum over pixels of min(x, 1 - x)^2 per image: the model-free baseline score."""
    return torch.minimum(images, 1 - images).square().flatten(1).sum(1)


def blur(images: torch.Tensor, size: int = BLUR_SIZE) -> torch.Tensor:
    """Each pixel the mean of its ``size`` x ``size`` window (edges replicated): a box blur."""
    return F.avg_pool2d(_pad(images, size), size, stride=1)


def blur_residual_scores(images: torch.Tensor, size: int = BLUR_SIZE) -> torch.Tensor:
    """||x - blur(x)||^2 per image: a model-free baseline that is not trivial on RGB data."""
    return (images - blur(images, size)).square().flatten(1).sum(1)


def squeeze_bits(images: torch.Tensor, bits: int = SQUEEZE_BITS) -> torch.Tensor:
    """Pixels in [0, 1] rounded to ``bits`` bits per channel (2^bits levels)."""
    levels = 2 ** bits - 1
    return torch.round(images * levels) / levels


def median_filter(images: torch.Tensor, size: int = MEDIAN_SIZE) -> torch.Tensor:
    """Each pixel the median of its ``size`` x ``size`` window, per channel (edges replicated;
    an even window takes the upper of its two middle values, as scipy's median_filter)."""
    batch, channels, height, width = images.shape
    windows = F.unfold(_pad(images, size), size)  # (B, C*size*size, H*W)
    windows = windows.view(batch, channels, size * size, height * width)
    return windows.sort(2).values[:, :, size * size // 2].view_as(images)


def _pad(images: torch.Tensor, size: int) -> torch.Tensor:
    """Replicated edges so a ``size`` window fits at every pixel: (size - 1) // 2 before,
    size // 2 after (for an even window the pixel is its top-left centre)."""
    before, after = (size - 1) // 2, size // 2
    return F.pad(images, (before, after, before, after), mode="replicate")


def squeezing_scores(classify: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     squeeze: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 500) -> torch.Tensor:
    """||softmax(H(x)) - softmax(H(squeeze(x)))||_1 per image (feature squeezing): an
    adversarial x sits where a small change moves H's prediction. ``classify``: any
    function from images to logits."""
    scores = []
    with torch.no_grad():
        for chunk in images.split(batch_size):
            before, after = (classify(x).float().softmax(1) for x in (chunk, squeeze(chunk)))
            scores.append((before - after).abs().sum(1))
    return torch.cat(scores) if scores else images.new_zeros(0)


def shuffle_perturbations(images: torch.Tensor, adversarial: torch.Tensor, seed: int = SHUFFLE_SEED) -> torch.Tensor:
    """x + s * shuffle(x_adv - x), clamped to [0, 1]: each image's perturbation values permuted
    over its pixels and channels (a permutation per image, seeded), then scaled per image by
    the s >= 0 that gives the clamped result the attack's own L2 norm ||x_adv - x||.

    Why the scale: shuffled values land on pixels where the clamp cuts them (a negative value
    on a black pixel), so unscaled the control carries less noise than the attack (11 % less
    L2 on MNIST, issue 23) and favours the detector. Matched in L2 it may leave the attack's
    L-inf ball; where even moving every pixel to a wall cannot reach the attack's L2 (never
    seen on real images), it gets as close as the box allows."""
    delta = (adversarial - images).flatten(1)  # (B, C*H*W)
    generator = torch.Generator().manual_seed(seed)
    order = torch.rand(delta.shape, generator=generator).argsort(1).to(delta.device)
    shuffled, flat = delta.gather(1, order), images.flatten(1)
    target = delta.norm(dim=1)  # (B,)

    def moved(scale: torch.Tensor) -> torch.Tensor:  # ||clamp(x + s d) - x||, non-decreasing in s
        return ((flat + scale[:, None] * shuffled).clamp(0, 1) - flat).norm(dim=1)
    # Bisection on s per image, all images at once: s = 1 moves at most the attack's L2, and a
    # scale of 1 / min |d| would move every pixel it touches to a wall.
    low = torch.ones_like(target)
    high = torch.where(shuffled != 0, 1 / shuffled.abs(), 0).amax(1).clamp(min=1.0)
    for _ in range(60):  # (high - low) / 2^60: float64 bits, not an iteration limit that shows
        middle = (low + high) / 2
        short = moved(middle) < target
        low, high = torch.where(short, middle, low), torch.where(short, high, middle)
    return (flat + high[:, None] * shuffled).clamp(0, 1).view_as(images)


# --- ROC of a detector score ----------------------------------------------------------------

def roc_auc(negative: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve of "higher score = positive": the probability that a random
    positive outscores a random negative, ties counting half (the Mann-Whitney U statistic)."""
    if len(negative) == 0 or len(positive) == 0:
        return float("nan")
    positive_ranks = _midranks(torch.cat([negative, positive]))[len(negative):].sum()
    n_pos, n_neg = len(positive), len(negative)
    return float((positive_ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _midranks(scores: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of ``scores``, tied scores sharing the mean of their ranks (float64)."""
    scores = scores.double()
    ranks = torch.empty_like(scores)
    ranks[scores.argsort()] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    unique, inverse = scores.unique(return_inverse=True)
    mean_rank = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks)
    return (mean_rank / torch.bincount(inverse, minlength=len(unique)).double())[inverse]


def roc_auc_interval(negative: torch.Tensor, positive: torch.Tensor) -> tuple[float, float]:
    """The 95 % interval of ``roc_auc`` by DeLong et al. (1988), in Sun & Xu's (2014) rank
    form: AUC +- z sqrt(var(V10) / m + var(V01) / n), V10 of each of the m positives the
    share of negatives it outscores, V01 of each of the n negatives the share of positives
    that outscore it (ties half), clipped to [0, 1]. Deterministic (no resampling); nan with
    fewer than two of either. At an AUC of 0 or 1 the interval closes to a point: read it then
    as "no overlap in this sample", not as certainty."""
    m, n = len(positive), len(negative)
    if m < 2 or n < 2:
        return float("nan"), float("nan")
    both = _midranks(torch.cat([negative, positive]))
    v10 = (both[n:] - _midranks(positive)) / n  # (m,)
    v01 = 1 - (both[:n] - _midranks(negative)) / m  # (n,)
    auc = v10.mean().item()
    half = WILSON_Z * (v10.var().item() / m + v01.var().item() / n) ** 0.5
    return max(0.0, auc - half), min(1.0, auc + half)


def roc_curve(negative: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(false positive rate, true positive rate) at every threshold, from (0, 0) to (1, 1)."""
    scores = torch.cat([negative, positive]).double()
    is_positive = torch.cat([torch.zeros(len(negative)), torch.ones(len(positive))]).double()
    order = scores.argsort(descending=True, stable=True)
    scores, is_positive = scores[order], is_positive[order]
    last_of_tie = torch.cat([scores[1:] != scores[:-1], torch.tensor([True])])
    tp = is_positive.cumsum(0)[last_of_tie]
    fp = (1 - is_positive).cumsum(0)[last_of_tie]
    zero = torch.zeros(1, dtype=torch.float64)
    return (torch.cat([zero, fp / max(len(negative), 1)]),
            torch.cat([zero, tp / max(len(positive), 1)]))
