"""The perceptual-regularization objective: CE(C(F(x)), y) + lam * ||x - D(F(x))||^2.

The one objective of the project: `train`'s loop takes it through ``perceptual_loss``;
attach's joint fine-tuning, with several decoders, through ``layers_loss``, whose
reconstruction term is the mean of the layers' errors.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from perceptreg.core.config import REDUCTIONS


class LossParts(NamedTuple):
    total: torch.Tensor  # ce + lam * recon, the value to backpropagate
    ce: torch.Tensor  # cross-entropy, averaged over the batch
    recon: torch.Tensor  # reconstruction error in the chosen reduction


def reconstruction_error(images: torch.Tensor, recon: torch.Tensor,
                         reduction: str = "sum") -> torch.Tensor:
    """Squared L2 error, summed per image and averaged over the batch ("sum", the paper's
    scale) or averaged over every pixel and channel ("mean")."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    # In float32 even under autocast: a bf16 sum over 3x64x64 pixels loses the small errors.
    squared = (images.float() - recon.float()).square()  # (B, C, H, W)
    if reduction == "mean":
        return squared.mean()
    return squared.flatten(1).sum(1).mean()


def perceptual_loss(logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                    recon: torch.Tensor, lam: float, reduction: str = "sum") -> LossParts:
    """The paper's objective for one batch; returns the total and both parts.

    With ``reduction="sum"`` (the default) lam = 1e-2 weighs a 28x28 image's summed squared
    error (typically 5 to 50) against a cross-entropy of about 0.1 to 2, which is the scale
    the paper's lambda values assume.
    """
    return _objective(logits, labels, reconstruction_error(images, recon, reduction), lam)


def layers_loss(logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                recons: Sequence[torch.Tensor], lam: float, reduction: str = "sum") -> tuple[LossParts, torch.Tensor]:
    """The objective with one reconstruction per attached layer: the reconstruction term is
    the mean of the layers' errors, not their sum, so that one lam means the same for 1 or 4
    layers (one layer: ``perceptual_loss`` exactly). Returns the parts and each layer's error (L,)."""
    errors = torch.stack([reconstruction_error(images, recon, reduction) for recon in recons])
    return _objective(logits, labels, errors.mean(), lam), errors


def _objective(logits: torch.Tensor, labels: torch.Tensor, recon_error: torch.Tensor, lam: float) -> LossParts:
    ce = F.cross_entropy(logits.float(), labels)
    return LossParts(ce + lam * recon_error, ce, recon_error)
