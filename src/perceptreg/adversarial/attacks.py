"""Adversarial attacks on the classifier H = C(F(x)), in the shape torchattacks users know.

    attack = PGD(model, eps=0.2, steps=100)          # settings in the constructor
    adv_images = attack(images, labels)              # data in the call
    adv_images = attack(images, labels, targets)     # targeted

``model`` is a ``PerceptionNet`` (its classifier branch is attacked) or any ``nn.Module``
returning logits. Images are pixels in [0, 1]; adversarial images stay in [0, 1] and in the
eps-ball around the images. An attack runs the model in eval mode, computes gradients for
the images only, and leaves the model's weights, ``requires_grad`` flags and mode as found.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from perceptreg.adversarial.callables import as_logits, frozen
from perceptreg.adversarial.defaults import DEFAULT_EPS, DEFAULT_STEPS, MAX_RESTARTS, MAX_STEPS, NORMS, SCHEDULES
from perceptreg.adversarial.losses import attack_loss, check_loss, margins
from perceptreg.core.errors import PerceptregError
from perceptreg.data.registry import attack_eps
from perceptreg.display import tqdm


@dataclass(frozen=True)
class AttackSettings:
    """PGD's settings as one value: what the attack commands share and write with results.
    ``eps`` None is the radius of the images attacked (``for_images``): every function given a
    run or a dataset fills it in, and writes the radius it used."""

    eps: float | None = None
    steps: int = DEFAULT_STEPS
    norm: str = "linf"
    alpha: float | None = None  # None: 2.5 * eps / steps
    seed: int = 0
    loss: str = "ce"  # Madry's PGD; "margin" / "dlr" for the stronger losses
    restarts: int = 1
    schedule: str = "constant"
    best_iterate: bool = False  # False: the last iterate, as torchattacks' PGD returns

    def __post_init__(self):
        if not 0 <= self.seed < 2**63:  # torch's generators take 64 bits; FromNoise adds NOISE_SEED_OFFSET
            raise PerceptregError(f"`seed` must be in [0, 2^63), got {self.seed}")
        check_budget(self.steps, self.restarts)  # here too: refused before any model is loaded

    def for_images(self, dataset: str, image_shape: tuple[int, ...]) -> "AttackSettings":
        """These settings with ``eps`` the radius of ``dataset``'s images in ``norm``
        (``data.registry.attack_eps``: L-inf 0.2 on MNIST digits, 0.03 on colour images; L2 2.0
        and 0.5) where none was given."""
        if self.eps is not None:
            return self
        return dataclasses.replace(self, eps=attack_eps(dataset, image_shape, self.norm))

    def build(self, model: nn.Module, attack: type["PGD"] | None = None, **extra) -> "PGD":
        """The attack (``PGD``, or a subclass such as ``FromNoise``) on ``model``; ``extra``:
        the subclass's own settings (``AdaptivePGD``'s beta), or settings that override these."""
        if self.eps is None and "eps" not in extra:
            raise PerceptregError("`eps`: no radius given and no dataset known; give eps, or take the radius "
                                  "of the images attacked with settings.for_images(dataset, image_shape)")
        fields = dict(eps=self.eps, alpha=self.alpha, steps=self.steps, norm=self.norm, seed=self.seed,
                      loss=self.loss, restarts=self.restarts, schedule=self.schedule,
                      best_iterate=self.best_iterate)
        return (attack or PGD)(model, **{**fields, **extra})

    @property
    def step_size(self) -> float:
        """``alpha`` as the attack uses it: the given one, or the default for eps and steps."""
        return default_step_size(self.eps, self.steps) if self.alpha is None else self.alpha


def default_step_size(eps: float, steps: int) -> float:
    """2.5 * eps / steps (Madry et al.): enough for the steps to cross the eps-ball."""
    return 2.5 * eps / max(steps, 1)


def check_budget(steps: int, restarts: int) -> None:
    """The one check of an attack's budget: 0 steps (the random start alone) up to
    ``MAX_STEPS``, 1 to ``MAX_RESTARTS`` restarts."""
    if not 0 <= steps <= MAX_STEPS:
        raise PerceptregError(f"`steps` must be in [0, {MAX_STEPS:,}], got {steps}")
    if not 1 <= restarts <= MAX_RESTARTS:
        raise PerceptregError(f"`restarts` must be in [1, {MAX_RESTARTS:,}], got {restarts}")


def check_target(target: int, num_classes: int, name: str = "target") -> None:
    """The one check of a class given by the user (a target, an edit's source): it must be one
    of the model's classes; ``name``: the argument that gave it."""
    if not 0 <= int(target) < num_classes:
        raise PerceptregError(f"`{name}` class {int(target)} is outside the model's classes 0..{num_classes - 1}")


class Attack:
    """Base class: validates the inputs, sets the model up, calls ``forward``, restores it.

    Subclasses write only ``forward(images, labels, targets)``.
    """

    def __init__(self, model: nn.Module, seed: int = 0):
        self.model = model
        self.seed = seed
        self.logits_of = as_logits(model)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor | None = None) -> torch.Tensor:
        if images.dim() < 2 or len(images) != len(labels):
            raise PerceptregError(f"images (B, ...) and labels (B,) must have the same batch size; "
                                  f"got {tuple(images.shape)} and {tuple(labels.shape)}")
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise PerceptregError(f"attacks take pixels in [0, 1]; these images range over "
                                  f"[{images.min():.3g}, {images.max():.3g}] (undo any normalization)")
        # enable_grad: an attack called inside torch.no_grad() still needs d loss / d images.
        with frozen(self.model), torch.enable_grad():
            if targets is not None:
                self._check_targets(images, targets)
            return self.forward(images.detach(), labels.detach(), targets)

    def _check_targets(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        with torch.no_grad():
            num_classes = self.logits_of(images[:1]).shape[1]
        if targets.shape != (len(images),):
            raise PerceptregError(f"targets must have shape ({len(images)},), got {tuple(targets.shape)}")
        if len(targets):
            check_target(int(targets.max()), num_classes)
            check_target(int(targets.min()), num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor,
                targets: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018, https://arxiv.org/abs/1706.06083), with
    the parts of a strong attack as options (Carlini & Wagner 2017, https://arxiv.org/abs/1608.04644;
    Croce & Hein 2020, APGD, https://arxiv.org/abs/2003.01690).

    Each step moves ``alpha`` along the gradient's sign (L-inf) or its normalized direction
    (L2) of the attack's loss, then projects back onto the eps-ball around the images and
    the [0, 1] box. With the defaults it is Madry's PGD: cross-entropy, constant steps, one
    random start, the last iterate (torchattacks' PGD from the same start, bit for bit).

    Args:
        model: a ``PerceptionNet`` or a module returning logits (B, classes).
        eps: radius of the threat model (paper: 0.2 on MNIST, 0.03 on CelebA, L-inf); the
            default is MNIST's: on other images give theirs (``data.registry.attack_eps``).
        alpha: step size; default 2.5 * eps / steps (Madry et al.), so the steps can cross the ball.
        steps: iterations (paper: 100); 0 returns the (random) start.
        norm: "linf" or "l2".
        random_start: start at a uniform point of the ball (L-inf) or a random direction
            and radius (L2), drawn from a generator seeded with ``seed``: the same inputs
            and seed give the same adversarial images. The start is drawn for the whole
            batch at once: attack all images in one call (it runs in chunks) for starts
            that do not repeat from batch to batch.
        seed: seed of the random start.
        chunk_size: images attacked at a time; the result does not depend on it.
        loss: "ce", "margin" (C&W) or "dlr" (APGD): ``losses.attack_loss``.
        kappa: the margin loss's cap (C&W's confidence); default none.
        restarts: random starts, each a new draw of the same seeded generator (restart 0 is
            the single start); per image the best result of all is kept.
        schedule: "constant" (alpha every step) or "cosine": step t of T moves
            alpha * (1 + cos(pi * (t + 1/2) / T)), from near 2 alpha down to near 0, alpha on
            average (the same path length); large steps explore, small ones settle. (APGD
            halves per image when progress stalls; a fixed decay is simpler and seeded alike.)
        best_iterate: keep per image the best iterate seen, not the last: the one with the
            largest margin (``losses.margins``), so a success is never undone by a later step.
        progress: a progress bar of the steps (all chunks and restarts), with the time left.

    Shapes: images (B, C, H, W) in [0, 1], labels (B,), targets (B,) or None -> (B, C, H, W).

    Example:
        >>> attack = PGD(model, eps=0.2, steps=100, loss="margin", restarts=5, best_iterate=True)
        >>> adv_images = attack(images, labels)
    """

    def __init__(self, model: nn.Module, eps: float = DEFAULT_EPS, alpha: float | None = None,
                 steps: int = DEFAULT_STEPS, norm: str = "linf", random_start: bool = True, seed: int = 0,
                 chunk_size: int = 256, loss: str = "ce", kappa: float = math.inf, restarts: int = 1,
                 schedule: str = "constant", best_iterate: bool = False, progress: bool = False):
        super().__init__(model, seed)
        if not 0 < eps < math.inf:
            raise PerceptregError(f"`eps` must be a finite number > 0, got {eps}")
        check_budget(steps, restarts)
        if norm not in NORMS:
            raise PerceptregError(f"`norm` must be one of {', '.join(NORMS)}, got {norm!r}")
        if alpha is not None and not 0 < alpha < math.inf:
            raise PerceptregError(f"`alpha` must be a finite number > 0, got {alpha}")
        if chunk_size < 1:
            raise PerceptregError(f"`chunk_size` must be >= 1, got {chunk_size}")
        check_loss(loss, kappa)
        if restarts > 1 and not random_start:
            raise PerceptregError(f"`restarts` must be 1 without a random start, got {restarts}")
        if schedule not in SCHEDULES:
            raise PerceptregError(f"`schedule` must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.eps, self.steps, self.norm, self.random_start = eps, steps, norm, random_start
        self.chunk_size, self.loss, self.kappa, self.restarts = chunk_size, loss, kappa, restarts
        self.schedule, self.best_iterate, self.progress = schedule, best_iterate, progress
        self._tick = lambda: None  # one step of the progress bar, during a call
        self.alpha = alpha if alpha is not None else default_step_size(eps, steps)

    def forward(self, images, labels, targets):
        generator = torch.Generator(images.device).manual_seed(self.seed)
        # Drawn for the whole batch, as a one-batch loop would, restart after restart.
        starts = [self.start(images, generator) for _ in range(self.restarts)]
        chunks = torch.arange(len(images)).split(self.chunk_size)
        with tqdm(total=len(chunks) * self.restarts * self.steps, disable=not self.progress, leave=False,
                  desc=f"attack ({type(self).__name__}, {len(images)} images)", unit="step") as bar:
            self._tick = bar.update
            try:
                # Each image's path depends on its own gradient only, so the batch runs in chunks
                # one after another: a chunk whose activations fit the cache runs faster than the
                # whole batch, and memory stays bounded (bench/attack_throughput.py).
                return torch.cat([
                    self._attack(images[part], [start[part] for start in starts], labels[part],
                                 None if targets is None else targets[part], len(images))
                    for part in chunks])
            finally:
                self._tick = lambda: None

    def _attack(self, images, starts, labels, targets, batch_size):
        best = None
        for start in starts:
            best = self._descend(images, start, labels, targets, batch_size, best)
        return best.images

    def _descend(self, images, adv, labels, targets, batch_size, best):
        for step in range(self.steps):
            adv.requires_grad_(True)
            values, tier, key = self.evaluate(adv, labels, targets)
            # The batch mean, summed chunk by chunk: the same gradients.
            (grad,) = torch.autograd.grad(values.sum() / batch_size, adv)
            if self.best_iterate:  # the iterate the gradient was taken at: no extra forward pass
                best = keep_better(best, Iterate(adv.detach(), tier, key))
            adv = self.project(images, adv.detach() + self.step_size(step) * self.direction(grad))
            self._tick()
        adv = adv.detach()
        if not (self.best_iterate or self.restarts > 1):
            return Iterate(adv, None, None)  # the last iterate: nothing to rank it against
        with torch.no_grad():
            _, tier, key = self.evaluate(adv, labels, targets)
        return keep_better(best, Iterate(adv, tier, key))

    def evaluate(self, adv: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(what each step ascends, per image; the rank of each image as ``tier``, ``key``):
        tier 1 when the attack succeeded, else 0, the key its margin (``keep_better``)."""
        logits = self.logits_of(adv)
        margin = margins(logits.detach(), labels, targets)
        return attack_loss(self.loss, logits, labels, targets, self.kappa), (margin > 0).float(), margin

    def step_size(self, step: int) -> float:
        if self.schedule == "constant":
            return self.alpha
        # At mid-step points the cosines cancel in pairs: the steps sum to steps * alpha.
        return self.alpha * (1 + math.cos(math.pi * (step + 0.5) / self.steps))

    def start(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.random_start:
            return images.clone()
        if self.norm == "linf":
            noise = torch.empty_like(images).uniform_(-self.eps, self.eps, generator=generator)
        else:
            noise = torch.empty_like(images).normal_(generator=generator)
            radius = torch.empty(len(images), device=images.device).uniform_(0, 1, generator=generator)
            noise *= _per_image(radius * self.eps / noise.flatten(1).norm(dim=1), noise)
        return (images + noise).clamp(0, 1)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return grad.sign()
        return grad / _per_image(grad.flatten(1).norm(dim=1) + 1e-10, grad)

    def project(self, images: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
        delta = adv - images
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            norms = delta.flatten(1).norm(dim=1)
            delta = delta * _per_image((self.eps / norms).clamp(max=1.0), delta)
        return (images + delta).clamp(0, 1)


@dataclass
class Iterate:
    """Adversarial images with their rank: a higher ``tier`` wins, within a tier a higher
    ``key`` (both (B,), None for a last iterate that is not ranked)."""

    images: torch.Tensor
    tier: torch.Tensor | None
    key: torch.Tensor | None


def keep_better(best: Iterate | None, candidate: Iterate) -> Iterate:
    """Per image, the better of ``best`` and ``candidate``; on a tie the earlier, ``best``."""
    if best is None:
        return candidate
    better = (candidate.tier > best.tier) | ((candidate.tier == best.tier) & (candidate.key > best.key))
    return Iterate(torch.where(_per_image(better, best.images), candidate.images, best.images),
                   torch.where(better, candidate.tier, best.tier), torch.where(better, candidate.key, best.key))


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) to broadcast over ``like``'s image dimensions."""
    return values.view(-1, *([1] * (like.dim() - 1)))


# FromNoise's noise seed is seed + this: one no small start seed shares (the CPU generator
# keeps the low 32 bits of a seed, so 2**32 would be the same seed again).
NOISE_SEED_OFFSET = 2**31


class FromNoise(PGD):
    """The paper's Fig. 7: targeted PGD that starts from uniform noise instead of an image.

    ``attack(targets)`` draws one noise image per target (seeded) and moves it, within the
    eps-ball around the noise, toward being classified as its target. With a decoder, the
    model's perception of the result shows what it takes that class to look like.

    Example:
        >>> noise, adv_images = FromNoise(model, eps=0.2, steps=100).generate(torch.arange(10), (1, 28, 28))
    """

    def generate(self, targets: torch.Tensor, image_shape: tuple[int, ...],
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        # The noise has its own seed: with the start's, the start would be exactly
        # clamp((1 + 2 eps) * noise - eps), both drawn from the same uniform numbers.
        generator = torch.Generator(device).manual_seed(self.seed + NOISE_SEED_OFFSET)
        noise = torch.rand(len(targets), *image_shape, generator=generator, device=device)
        return noise, self(noise, targets, targets)
