"""Adversarial training with perceptual regularization (issue 36): the examples C learns
on, the loss that joins them to lambda's reconstruction term, and the robust accuracy each
epoch is scored on.

    adversary = adversary_for(config, model, train_data, device)   # None without config.adversarial
    adv = adversary.examples(model, images, labels, epoch, step, batches)
    parts = adversarial_loss(model, images, adv, labels, phase, config)

The examples are ``adversarial.attacks.PGD``'s, the project's one PGD: Madry et al. 2018
(``method`` "pgd": ``steps`` steps of ``step_size`` from a random start) and Wong et al.
2020 (``method`` "fgsm-rs": one step of 1.25 eps from a uniform random start, projected
back into the ball). The attack runs the model in eval mode, as TRADES does, and leaves
its weights' gradients and mode as found.

Resumable bit for bit: each batch's random start comes from its own seed, a function of
the run's seed, the epoch and the batch (``batch_seed``), as the batch order comes from the
epoch's (``train.epoch_shuffle``): a run resumed at an epoch boundary draws the very starts
an uninterrupted one draws, and no generator state needs saving.
"""

from __future__ import annotations

import warnings

import torch

from perceptreg import data as datasets
from perceptreg.adversarial.attacks import PGD
from perceptreg.adversarial.callables import frozen
from perceptreg.core import models
from perceptreg.core.config import MAX_IMAGES, AdversarialConfig, TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.core.loss import LossParts, classifier_loss, perceptual_loss

# Each epoch's robust accuracy: PGD of this many steps on a fixed stratified sample of the
# epoch's test images, at the training eps. 10 steps see catastrophic overfitting (Wong et al.
# use PGD-10 for it too) at about 11 forward-backward passes of 500 images.
ROBUST_EVAL_STEPS = 10
ROBUST_EVAL_IMAGES = 500
ROBUST_EVAL_SEED = 0
# Catastrophic overfitting (Wong et al. 2020, Sec. 5): FGSM training whose PGD robust accuracy
# collapses to about 0 while clean accuracy stays. Below this share of the sample: warned.
OVERFIT_BELOW = 0.01


def batch_seed(seed: int, epoch: int, step: int) -> int:
    """The seed of one batch's random starts: distinct for every (epoch, batch) of a run
    (an epoch has fewer than 100,003 batches at MAX_IMAGES), within torch's 63 bits."""
    return (seed * 1_000_003 * 100_003 + epoch * 100_003 + step) % 2**63


class Adversary:
    """The threat model of a run at work: builds each batch's attack, scores robust accuracy."""

    def __init__(self, config: AdversarialConfig, seed: int):
        self.config, self.seed = config, seed

    def attack(self, model: models.PerceptionNet, seed: int, steps: int | None = None,
               step_size: float | None = None, scale: float = 1.0) -> PGD:
        """The PGD of the threat model; ``scale`` shrinks eps and the step size together."""
        c = self.config
        # one chunk: a training batch is attacked whole, as one forward-backward per step
        return PGD(model, eps=c.eps * scale, alpha=(step_size or c.step_size) * scale, steps=steps or c.steps,
                   norm=c.norm, seed=seed, chunk_size=MAX_IMAGES)

    def warmup_scale(self, epoch: int, step: int, batches: int) -> float:
        """The share of eps at a batch: a linear ramp from 0 to 1 over ``warmup_epochs``,
        a function of where the batch is, so a resumed run ramps as an uninterrupted one."""
        if not self.config.warmup_epochs:
            return 1.0
        return min(1.0, (epoch - 1 + (step + 1) / batches) / self.config.warmup_epochs)

    def examples(self, model: models.PerceptionNet, images: torch.Tensor, labels: torch.Tensor,
                 epoch: int, step: int, batches: int) -> torch.Tensor:
        """x_adv of one training batch (pixels in [0, 1], in the eps-ball), detached; batch
        ``step`` of the epoch's ``batches``."""
        scale = self.warmup_scale(epoch, step, batches)
        return self.attack(model, batch_seed(self.seed, epoch, step), scale=scale)(images, labels)

    def measure(self, model: models.PerceptionNet, eval_data: datasets.ImageDataset, epoch: int,
                device: torch.device, autocast_dtype: torch.dtype | None = None) -> dict:
        """The epoch's metrics row entries: PGD-10 robust accuracy at the training eps on a fixed
        sample of ``eval_data``, and whether it warned of catastrophic overfitting of FGSM training."""
        sample = datasets.evaluation_subset(eval_data, ROBUST_EVAL_IMAGES)
        attack = self.attack(model, ROBUST_EVAL_SEED, ROBUST_EVAL_STEPS, 2.5 * self.config.eps / ROBUST_EVAL_STEPS)
        correct = torch.zeros(2, dtype=torch.int64, device=device)  # clean, robust
        for images, labels in datasets.batches(sample, ROBUST_EVAL_IMAGES, device=device):
            with torch.autocast(device.type, autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
                adv = attack(images, labels)
                with torch.no_grad(), models.evaluating(model):
                    correct += torch.stack([(model.classify(x).argmax(1) == labels).sum() for x in (images, adv)])
        clean, robust = (correct / len(sample)).tolist()
        # during the warm-up C has not yet met the full eps: a low robust accuracy is expected
        warming_up = epoch <= self.config.warmup_epochs
        warned = self.config.method == "fgsm-rs" and not warming_up and overfitted(clean, robust, len(eval_data.classes))
        if warned:
            warn_overfitting(epoch, clean, robust, self.config)
        # recorded, so that whether the warning was right can be checked against AutoAttack later
        return {"test_robust_accuracy": robust, "catastrophic_overfitting": warned}


def overfitted(clean: float, robust: float, num_classes: int) -> bool:
    """Catastrophic overfitting's mark: no image survives PGD while C reads clean images well
    (above twice chance): not a model that has learnt nothing yet, which fails both."""
    return robust < OVERFIT_BELOW and clean > 2 / num_classes


def warn_overfitting(epoch: int, clean: float, robust: float, config: AdversarialConfig) -> None:
    warnings.warn(
        f"catastrophic overfitting at epoch {epoch}: robust accuracy under PGD-{ROBUST_EVAL_STEPS} at eps "
        f"{config.eps:g} is {robust:.1%} (clean {clean:.1%}), though C trains on FGSM examples (Wong et al. "
        f"2020); lower eps or step_size ({config.step_size:g}), or train with method pgd",
        RuntimeWarning, stacklevel=3)


def adversary_for(config: TrainConfig, model: models.PerceptionNet,
                  train_data: datasets.ImageDataset) -> Adversary | None:
    """The run's ``Adversary``, None without ``config.adversarial``; a model whose logits
    have no gradient to its input is refused first, in one line (no attack could move it),
    on a few training images on the model's device."""
    if config.adversarial is None:
        return None
    device = next(model.parameters()).device
    images, _ = next(iter(datasets.batches(train_data, 8, device=device)))
    check_input_gradient(model, images)
    return Adversary(config.adversarial, config.seed)


def check_input_gradient(model: models.PerceptionNet, images: torch.Tensor) -> None:
    """Refuse a model whose logits do not depend on its input through a gradient (a detach,
    an argmax, a rounding): PGD would leave every image where it is, and the run would
    train on clean images while its config says adversarial."""
    with frozen(model), torch.enable_grad():
        images = images.clone().requires_grad_(True)
        logits = model.classify(images)
        grad = torch.autograd.grad(logits.float().sum(), images, allow_unused=True)[0] if logits.requires_grad else None
    if grad is None or not bool(grad.abs().sum() > 0):
        raise PerceptregError("`adversarial` training needs the gradient of the model's logits with respect to "
                              "its input, and this model has none (a detach, argmax or rounding in F or C?); "
                              "train it without `adversarial`, or make F and C differentiable")


def adversarial_loss(model: models.PerceptionNet, images: torch.Tensor, adv: torch.Tensor, labels: torch.Tensor,
                     phase: str, config: TrainConfig, decoder_objective=None) -> LossParts:
    """CE(C(F(x_adv)), y) + lam * the reconstruction term of ``decoder_input``: D(F(x)) against
    x ("x"), D(F(x_adv)) against x_adv ("x_adv"), or both in one batch of twice the size
    ("both", CE still on x_adv alone, as Madry's objective); the reconstruction term is
    ``decoder_objective``'s (None: the paper's pixel error), as in ``perceptual_loss``."""
    decoder_input = config.adversarial.decoder_input
    if phase == "classifier":  # post-hoc's first phase: no decoder yet
        return classifier_loss(model.classify(adv), labels)
    if decoder_input == "x":
        recon = model.decoder(model.encoder(images))
        return perceptual_loss(model.classify(adv), labels, images, recon, config.lam, config.reduction,
                               decoder_objective)
    inputs = adv if decoder_input == "x_adv" else torch.cat([images, adv])
    logits, _, recon = model(inputs)
    return perceptual_loss(logits[-len(labels):], labels, inputs, recon, config.lam, config.reduction,
                           decoder_objective)
