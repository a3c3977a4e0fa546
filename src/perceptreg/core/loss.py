"""The perceptual-regularization objective: CE(C(F(x)), y) + lam * ||x - D(F(x))||^2.

The one objective of the project: `train`'s loop takes it through ``perceptual_loss``;
attach's joint fine-tuning, with several decoders, through ``layers_loss``, whose
reconstruction term is the mean of the layers' errors. The decoder's term is the paper's
squared pixel error, or, given a ``core.decoder_losses.DecoderObjective`` (ours: ``feature``,
``deepsim``), that objective's loss: the classifier still sees CE + lam * the decoder's loss.
A discriminator's hinge loss (``critic``) is added to the total unweighted: it has no gradient
path to the model, and trains the discriminator in the same backward.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from perceptreg.core.config import REDUCTIONS


class LossParts(NamedTuple):
    total: torch.Tensor  # ce + lam * recon (+ a discriminator's hinge loss), the value to backpropagate
    ce: torch.Tensor  # cross-entropy, averaged over the batch
    recon: torch.Tensor  # the decoder's loss: reconstruction error in the chosen reduction (or ours)


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


def decoder_terms(images: torch.Tensor, recon: torch.Tensor, reduction: str = "sum",
                  objective=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the decoder's loss, the discriminator's) for one decoder: the squared pixel error and
    0 (the paper's), or ``objective``'s terms (a ``core.decoder_losses.DecoderObjective``)."""
    if objective is None:
        return reconstruction_error(images, recon, reduction), torch.zeros((), device=images.device)
    return tuple(objective(images, recon))


def perceptual_loss(logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                    recon: torch.Tensor, lam: float, reduction: str = "sum", objective=None) -> LossParts:
    """The paper's objective for one batch; returns the total and both parts.

    With ``reduction="sum"`` (the default) lam = 1e-2 weighs a 28x28 image's summed squared
    error (typically 5 to 50) against a cross-entropy of about 0.1 to 2, which is the scale
    the paper's lambda values assume.
    """
    if objective is None:  # the paper's, as it always was: the same numbers to the last bit
        return _objective(logits, labels, reconstruction_error(images, recon, reduction), lam)
    return layers_loss(logits, labels, images, [recon], lam, reduction, objective)[0]


def classifier_loss(logits: torch.Tensor, labels: torch.Tensor) -> LossParts:
    """The objective before there is a decoder (post-hoc's first phase): CE alone, the
    reconstruction term 0; ``logits`` of clean images, or of x_adv in adversarial training."""
    return _objective(logits, labels, torch.zeros((), device=logits.device), 0.0)


def layers_loss(logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                recons: Sequence[torch.Tensor], lam: float, reduction: str = "sum",
                objective=None) -> tuple[LossParts, torch.Tensor]:
    """The objective with one reconstruction per attached layer: the reconstruction term is
    the mean of the layers' errors, not their sum, so that one lam means the same for 1 or 4
    layers (one layer: ``perceptual_loss`` exactly). Returns the parts and each layer's error (L,).
    With ``objective`` each layer's error is its decoder loss, and the discriminator's hinge
    losses (one discriminator judges every layer's decoded images) join the total as their mean."""
    terms = [decoder_terms(images, recon, reduction, objective) for recon in recons]
    errors = torch.stack([loss for loss, _ in terms])
    critic = None if objective is None else torch.stack([critic for _, critic in terms]).mean()
    return _objective(logits, labels, errors.mean(), lam, critic), errors


def _objective(logits: torch.Tensor, labels: torch.Tensor, recon_error: torch.Tensor, lam: float,
               critic: torch.Tensor | None = None) -> LossParts:
    ce = F.cross_entropy(logits.float(), labels)
    total = ce + lam * recon_error
    return LossParts(total if critic is None else total + critic, ce, recon_error)
