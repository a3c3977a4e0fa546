"""What an attack ascends, per image, from the logits: cross-entropy, the C&W margin, or
Croce & Hein's DLR; and the margin that says whether an image is fooled.

All are "larger is better for the attacker". Untargeted (``targets`` None) they push the
true label ``labels`` down; targeted they pull ``targets`` up.

    values = attack_loss("margin", logits, labels)            # (B,)
    fooled = margins(logits, labels) > 0                       # (B,)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from perceptreg.adversarial.defaults import LOSSES
from perceptreg.core.errors import PerceptregError


def check_loss(loss: str, kappa: float = math.inf) -> None:
    """The one check of a loss name and of the margin's cap ``kappa``."""
    if loss not in LOSSES:
        raise PerceptregError(f"`loss` must be one of {', '.join(LOSSES)}, got {loss!r}")
    if not kappa >= 0:  # also refuses nan
        raise PerceptregError(f"`kappa` must be >= 0 (math.inf: no cap), got {kappa}")


def _best_other(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """max over j != classes of z_j, per image."""
    others = logits.scatter(1, classes[:, None], -math.inf)
    return others.max(1).values


def margins(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """How far the attack is past the decision boundary, per image, > 0 when it succeeded:
    untargeted max_{j != y} z_j - z_y; targeted z_t - max_{j != t} z_j (Carlini & Wagner 2017)."""
    if targets is None:
        return _best_other(logits, labels) - logits.gather(1, labels[:, None]).squeeze(1)
    return logits.gather(1, targets[:, None]).squeeze(1) - _best_other(logits, targets)


def attack_loss(loss: str, logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None = None,
                kappa: float = math.inf) -> torch.Tensor:
    """The attack's objective per image (B,), larger = better for the attacker.

    - "ce": the cross-entropy of the labels (untargeted), minus that of the targets (targeted)
      (Madry et al. 2018). Its gradient vanishes on confident images.
    - "margin": ``margins``, capped at ``kappa`` (Carlini & Wagner 2017, f_6): once an image is
      ``kappa`` past the boundary the margin stops pulling, so other terms (the adaptive
      attack's reconstruction penalty) get the whole gradient. math.inf: no cap.
    - "dlr": the margin divided by z_pi1 - z_pi3, the spread of the sorted logits (Croce &
      Hein 2020, https://arxiv.org/abs/2003.01690): invariant to scaling the logits;
      targeted, (z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2). Needs 3 classes (targeted: 4).
    """
    if loss == "ce":
        if targets is None:
            return F.cross_entropy(logits, labels, reduction="none")
        return -F.cross_entropy(logits, targets, reduction="none")
    if loss == "margin":
        return margins(logits, labels, targets).clamp(max=kappa)
    needed = 3 if targets is None else 4
    if logits.shape[1] < needed:
        raise PerceptregError(f"`loss` 'dlr' needs at least {needed} classes, the model has {logits.shape[1]}: "
                              f"use 'margin'")
    top = logits.sort(1, descending=True).values  # (B, classes)
    if targets is None:
        return margins(logits, labels) / (top[:, 0] - top[:, 2] + 1e-12)
    pull = (logits.gather(1, targets[:, None]) - logits.gather(1, labels[:, None])).squeeze(1)
    return pull / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12)
