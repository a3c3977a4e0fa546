"""Robust accuracy the way robustness researchers report it (issue 36): AutoAttack's standard
ensemble (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020, https://arxiv.org/abs/2003.01690)
on the first N test images (RobustBench's protocol, Croce et al. 2021), clean and robust
accuracy with Wilson intervals, the attack budget, and the two signs of gradient masking.

    result = robust_accuracy(model, images, labels, norm="linf", eps=0.3)
    result.robust.rate, result.warnings

AutoAttack is torchattacks', built through the attack-callable path every external attack
takes (``callables.load_attack``: the model frozen, the seed fixed, its images checked to lie
in the ball). torchattacks leaves APGD, APGD-T and FAB-T at its default of 10 iterations; the
standard AutoAttack runs 100, which is set here (``STANDARD_STEPS``).
"""

from __future__ import annotations

import time
import warnings

import torch
from pydantic import ConfigDict
from torch import nn

from perceptreg.adversarial.attacks import PGD
from perceptreg.adversarial.callables import as_logits, check_adversarial, load_attack
from perceptreg.adversarial.summary import Rate
from perceptreg.core.config import NORMS
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import evaluating
from perceptreg.storage.schema import Sealed

AUTOATTACK = "torchattacks:AutoAttack"
STANDARD_ATTACKS = ("APGD-CE", "APGD-T", "FAB-T", "Square")  # torchattacks' order, version "standard"
STANDARD_STEPS = 100  # of APGD-CE, APGD-T and FAB-T, as the standard AutoAttack (torchattacks' default: 10)
SQUARE_QUERIES = 5000  # the standard's, torchattacks' too
STANDARD_IMAGES = 1000  # RobustBench evaluates the first 1000 test images (its leaderboards: 10,000)
# Radii of the standard threat models: RobustBench's on CIFAR-10 (L-inf 8/255, L2 0.5); on MNIST,
# Madry et al.'s L-inf 0.3 and Tramer & Boneh's L2 2.0. Grey images take MNIST's, colour CIFAR-10's.
STANDARD_EPS = {("grey", "linf"): 0.3, ("grey", "l2"): 2.0, ("colour", "linf"): 8 / 255, ("colour", "l2"): 0.5}
# The PGD beside AutoAttack, for the first masking check: Madry's PGD (CE, one random start).
PGD_STEPS = 50
# PGD's robust accuracy this far above AutoAttack's is "far above": on models without masking
# PGD overestimates by a few points (Croce & Hein 2020, Table 2), not by ten.
MASKING_GAP = 0.10
BATCH = 500  # images attacked at a time: memory stays bounded, the numbers do not change


class RobustAccuracy(Sealed):
    """Clean and robust accuracy of a model on ``images`` test images under AutoAttack, with
    the attack's budget and what it says about gradient masking (the schema of
    RUN/robust_accuracy.json)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    dataset: str
    images: int  # N test images: the first N (RobustBench's protocol), see ``selection``
    selection: str  # "first", or "first of each class" where the first N would miss classes
    norm: str
    eps: float
    attack: str  # AutoAttack's version "standard", through torchattacks
    budget: dict[str, str]  # each attack of the ensemble: its iterations, restarts, queries
    seed: int
    clean: Rate
    robust: Rate  # correct on AutoAttack's images: each image counts as broken by any one attack
    pgd_robust: Rate  # correct on PGD-50's images: far above ``robust`` is gradient masking
    broken_by: dict[str, int]  # correctly classified images each attack broke first, in the ensemble's order
    warnings: list[str]
    seconds: float

    def lines(self) -> list[str]:
        from perceptreg.measures import format_rate  # as every rate is printed

        return [f"{self.dataset}, {self.images} test images ({self.selection}), {self.norm} eps {self.eps:g}, "
                f"{self.attack}:",
                f"clean accuracy  {format_rate(self.clean.model_dump())}",
                f"robust accuracy {format_rate(self.robust.model_dump())} (AutoAttack)",
                f"robust accuracy {format_rate(self.pgd_robust.model_dump())} (PGD-{PGD_STEPS}, the masking check)",
                "broken first by: " + ", ".join(f"{name} {count}" for name, count in self.broken_by.items()),
                "budget: " + "; ".join(f"{name} {spent}" for name, spent in self.budget.items()),
                f"({self.seconds:.0f}s)"]


def standard_eps(norm: str, image_shape: tuple[int, ...]) -> float:
    """The usual radius of a ``norm`` threat model on images of ``image_shape`` (C first)."""
    check_norm(norm)
    return STANDARD_EPS[("grey" if image_shape[0] == 1 else "colour", norm)]


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise PerceptregError(f"`norm` must be one of {', '.join(NORMS)}, got {norm!r}")


def check_threat(norm: str, eps: float) -> None:
    check_norm(norm)
    if not (isinstance(eps, (int, float)) and 0 < eps < float("inf")):
        raise PerceptregError(f"`eps` must be a finite number > 0, got {eps}")


def autoattack(model: nn.Module, norm: str, eps: float, num_classes: int, seed: int = 0,
               steps: int = STANDARD_STEPS):
    """torchattacks' AutoAttack, version standard, as an ``ExternalAttack`` (``load_attack``),
    its white-box attacks at ``steps`` iterations."""
    attack = load_attack(AUTOATTACK, model, {"version": "standard", "norm": {"linf": "Linf", "l2": "L2"}[norm],
                                             "n_classes": num_classes, "seed": seed}, eps=eps, norm=norm, seed=seed)
    for component in attack.attack._autoattack.attacks[:3]:  # APGD-CE, APGD-T, FAB-T
        component.steps = steps
    return attack


def budget(steps: int, num_classes: int) -> dict[str, str]:
    targets = num_classes - 1
    return {"APGD-CE": f"{steps} iterations, 1 restart", "APGD-T": f"{steps} iterations x {targets} target classes",
            "FAB-T": f"{steps} iterations x {targets} target classes", "Square": f"{SQUARE_QUERIES} queries, 1 restart"}


def robust_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, norm: str, eps: float,
                    num_classes: int, dataset: str = "", selection: str = "first", seed: int = 0,
                    steps: int = STANDARD_STEPS, device: torch.device | str = "cpu") -> RobustAccuracy:
    """Clean and AutoAttack robust accuracy of ``model`` (a ``PerceptionNet`` or a module
    returning logits) on ``images`` (pixels in [0, 1]); PGD-50's beside it; warns, one line
    each, where PGD's is more than ``MASKING_GAP`` above AutoAttack's or where black-box Square
    broke images the white-box attacks could not (signs of gradient masking)."""
    check_threat(norm, eps)
    began = time.perf_counter()
    logits_of = as_logits(model)
    attack = autoattack(model, norm, eps, num_classes, seed, steps)
    pgd = PGD(model, eps=eps, steps=PGD_STEPS, norm=norm, seed=seed)
    multi = attack.attack._autoattack
    # torchattacks' own bookkeeping: images still unbroken after each attack, summed over calls
    multi._accumulate_multi_atk_records, multi._multi_atk_records = True, [0.0] * (len(STANDARD_ATTACKS) + 1)
    clean = robust = pgd_robust = 0
    for start in range(0, len(images), BATCH):
        x, y = images[start:start + BATCH].to(device), labels[start:start + BATCH].to(device)
        adv, pgd_adv = attack(x, y), pgd(x, y)
        check_adversarial(AUTOATTACK, x, adv, eps, norm)
        with torch.no_grad(), evaluating(model):
            clean += int((logits_of(x).argmax(1) == y).sum())
            robust += int((logits_of(adv).argmax(1) == y).sum())
            pgd_robust += int((logits_of(pgd_adv).argmax(1) == y).sum())
    left = [int(n) for n in multi._multi_atk_records]
    n = len(images)
    broken_by = {name: left[i] - left[i + 1] for i, name in enumerate(STANDARD_ATTACKS)}
    broken_by["APGD-CE"] -= n - clean  # the first attack "breaks" the images misclassified already
    found = masking_warnings(pgd_robust / n, robust / n, broken_by["Square"])
    for line in found:
        warnings.warn(line, RuntimeWarning, stacklevel=2)
    return RobustAccuracy(
        dataset=dataset, images=n, selection=selection, norm=norm, eps=eps, attack=f"{AUTOATTACK} (version standard)",
        budget=budget(steps, num_classes), seed=seed, clean=Rate.count(clean, n), robust=Rate.count(robust, n),
        pgd_robust=Rate.count(pgd_robust, n), broken_by=broken_by, warnings=found,
        seconds=time.perf_counter() - began)


def masking_warnings(pgd_robust: float, robust: float, square_broke: int) -> list[str]:
    """The lines that say a model may mask its gradients (Athalye et al. 2018; Croce & Hein
    2020): PGD's robust accuracy far above AutoAttack's, and Square (black-box) breaking
    images the white-box attacks before it could not (AutoAttack's own check)."""
    found = []
    if pgd_robust - robust > MASKING_GAP:
        found.append(f"gradient masking? robust accuracy under PGD-{PGD_STEPS} ({pgd_robust:.1%}) is "
                     f"{pgd_robust - robust:.1%} above AutoAttack's ({robust:.1%}): report AutoAttack's, and "
                     f"distrust PGD-based numbers of this model")
    if square_broke > 0:
        found.append(f"gradient masking? black-box Square broke {square_broke} image(s) that white-box APGD-CE, "
                     f"APGD-T and FAB-T could not: the gradients mislead the white-box attacks")
    return found
