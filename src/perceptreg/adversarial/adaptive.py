"""Attacks that know the reconstruction-error detector ||x - P(x)||^2 (Carlini & Wagner 2017,
https://arxiv.org/abs/1705.07263; Tramer et al. 2020, https://arxiv.org/abs/2002.08347):

- ``AdaptivePGD``: PGD on the attack's loss - beta ||x_adv - P(x_adv)||^2, one beta;
- ``AdaptiveAttack``: the strong one: the C&W margin (kappa 0) and CE, each minus the
  penalty, for a grid of betas, keeping per image the best iterate of any loss, beta and
  restart, and of the attacks run before it: fooled and undetected first, then fooled with
  the lowest score.

    attack = AdaptiveAttack(model, eps=0.2, steps=100, band=(-math.inf, threshold))
    adv_images = attack(images, labels)
"""

from __future__ import annotations

import math

import torch

from perceptreg.adversarial.attacks import PGD, Attack, Iterate, keep_better
from perceptreg.adversarial.defaults import DEFAULT_BETAS
from perceptreg.adversarial.detection import reconstruction_scores
from perceptreg.adversarial.losses import attack_loss, margins
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet

NO_BAND = (-math.inf, math.inf)  # no thresholds known: every fooled image counts as undetected
SEARCH_LOSSES = ("margin", "ce")  # the search's losses: C&W's margin, and the CE of the paper's PGD


def check_band(band: tuple[float, float]) -> tuple[float, float]:
    low, high = band
    if not low <= high:
        raise PerceptregError(f"`band` must be (low, high) with low <= high, got {band}")
    return float(low), float(high)


def check_perception_net(model, who: str) -> None:
    if not isinstance(model, PerceptionNet):
        raise PerceptregError(f"{who} needs a PerceptionNet (its decoder gives P(x)), got {type(model).__name__}")


class AdaptivePGD(PGD):
    """PGD that knows the reconstruction-error detector.

    Each step ascends PGD's loss minus ``beta * ||x_adv - P(x_adv)||^2``: the attack must
    fool H while keeping the perception close to x_adv, so the detector's score stays low.
    With ``beta = 0`` and the defaults it is exactly ``PGD``. With ``loss="ce"`` (the default)
    it is weak: CE's gradient vanishes on confident images, so the penalty takes over; use
    ``AdaptiveAttack`` for the strong one.

    The best iterate (``best_iterate=True``) is ranked by the detector, not by the margin:
    fooled with a score inside ``band`` = (low, high), the detector's thresholds (an image
    is flagged below low or above high), first, the lowest score among them; then fooled
    but flagged, nearest the band; then not fooled, the largest margin.

    Args:
        model: a ``PerceptionNet`` (the decoder gives P).
        beta: weight of the reconstruction error, >= 0.
        band: the detector's (low, high) thresholds; default none (-inf, inf).

    The other arguments are ``PGD``'s.

    Example:
        >>> adv_images = AdaptivePGD(model, beta=1.0, eps=0.2, steps=100)(images, labels)
    """

    def __init__(self, model: PerceptionNet, beta: float = 1.0, band: tuple[float, float] = NO_BAND, **settings):
        check_perception_net(model, type(self).__name__)
        if not 0 <= beta < math.inf:
            raise PerceptregError(f"`beta` must be a finite number >= 0, got {beta}")
        super().__init__(model, **settings)
        self.beta, self.band = beta, check_band(band)

    def evaluate(self, adv, labels, targets):
        logits, _, recon = self.model(adv)
        scores = reconstruction_scores(adv, recon)
        values = attack_loss(self.loss, logits, labels, targets, self.kappa) - self.beta * scores
        return (values, *rank_by_detector(margins(logits.detach(), labels, targets), scores.detach(), self.band))


def rank_by_detector(margin: torch.Tensor, scores: torch.Tensor,
                     band: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(tier, key) per image for ``keep_better``: tier 2 fooled and undetected (key: minus
    the score, the lowest wins), 1 fooled but flagged (key: minus the distance to the
    band), 0 not fooled (key: the margin)."""
    low, high = band
    fooled = margin > 0
    outside = (low - scores).clamp(min=0) + (scores - high).clamp(min=0)
    tier = fooled.float() + (fooled & (outside == 0)).float()
    key = torch.where(fooled, torch.where(outside > 0, -outside, -scores), margin)
    return tier, key


class AdaptiveAttack(Attack):
    """The strong adaptive attack on H and the detector together.

    For each loss of ``losses`` and each beta of ``betas``, ``AdaptivePGD`` on that loss (the
    C&W margin capped at ``kappa``: 0, once fooled, only the penalty pulls; cross-entropy,
    whose gradient points elsewhere) minus beta ||x_adv - P(x_adv)||^2, with ``restarts`` and
    the best iterate; per image the best result of every run is kept, and of ``candidates``
    (adversarial images of the same images made already, e.g. by the plain attack), ranked
    as ``AdaptivePGD`` ranks iterates (which depends on neither loss nor beta): the search is
    never weaker than any attack it was given. A grid instead of a search: each image gets the
    loss and beta that suit it, in ``len(losses) * len(betas)`` runs.

    Args:
        model: a ``PerceptionNet``.
        betas (tuple[float, ...]): the penalty weights tried, each >= 0 (default 0, 0.01, 0.1, 1, 10).
        band: the detector's (low, high) thresholds, e.g. ``thresholds.band`` of held-out
            clean scores; default none: the lowest score among the fooled iterates wins.
        kappa: the margin's cap; losses: the losses tried (default margin and CE);
        candidates (torch.Tensor): adversarial images (B, ...) of the images the attack is called on, in
            their order, kept where they rank better; the other settings (eps, steps,
            restarts, schedule, ...) are ``PGD``'s, passed to every run.

    Example:
        >>> adv_images = AdaptiveAttack(model, eps=0.2, steps=100, restarts=2)(images, labels)
    """

    def __init__(self, model: PerceptionNet, betas=DEFAULT_BETAS, band: tuple[float, float] = NO_BAND,
                 kappa: float = 0.0, losses: tuple[str, ...] = SEARCH_LOSSES, candidates=(), **settings):
        check_perception_net(model, type(self).__name__)
        if not len(betas):
            raise PerceptregError("`betas` must name at least one beta, e.g. 0,0.1,1")
        if not len(losses):
            raise PerceptregError("`losses` must name at least one loss, e.g. margin,ce")
        if settings.get("steps", 1) < 1:
            raise PerceptregError(f"`steps` must be >= 1 for the adaptive attack, got {settings['steps']}")
        # the settings' one loss (AttackSettings.build passes it) gives way to the search's ``losses``
        settings = {**{k: v for k, v in settings.items() if k != "loss"}, "kappa": kappa, "best_iterate": True}
        self.attacks = [AdaptivePGD(model, beta=beta, band=band, loss=loss, **settings)
                        for loss in losses for beta in betas]
        super().__init__(model, self.attacks[0].seed)
        self.betas, self.losses, self.candidates = tuple(betas), tuple(losses), tuple(candidates)
        self.band, self.eps, self.norm = self.attacks[0].band, self.attacks[0].eps, self.attacks[0].norm

    def forward(self, images, labels, targets):
        for candidate in self.candidates:
            if candidate.shape != images.shape:
                raise PerceptregError(f"`candidates` must be adversarial images of the images attacked, "
                                      f"{tuple(images.shape)}; got {tuple(candidate.shape)}")
        best = None
        for adv in [*(attack.forward(images, labels, targets) for attack in self.attacks),
                    *(c.to(images.device) for c in self.candidates)]:
            with torch.no_grad():  # the rank of the returned images, the same for every run
                _, tier, key = self.attacks[0].evaluate(adv, labels, targets)
            best = keep_better(best, Iterate(adv, tier, key))
        return best.images
