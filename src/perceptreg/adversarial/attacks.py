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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from perceptreg.adversarial.detection import reconstruction_scores
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet, evaluating

NORMS = ("linf", "l2")
DEFAULT_EPS = 0.2  # the paper's MNIST radius (L-inf); CelebA used 0.03
DEFAULT_STEPS = 100  # the paper's iterations


@dataclass(frozen=True)
class AttackSettings:
    """PGD's settings as one value: what the attack commands share and write with results."""

    eps: float = DEFAULT_EPS
    steps: int = DEFAULT_STEPS
    norm: str = "linf"
    alpha: float | None = None  # None: 2.5 * eps / steps
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.seed < 2**63:  # torch's generators take 64 bits; FromNoise adds NOISE_SEED_OFFSET
            raise PerceptregError(f"`seed` must be in [0, 2^63), got {self.seed}")

    def build(self, model: nn.Module, attack: type["PGD"] | None = None, **extra) -> "PGD":
        """The attack (``PGD``, or a subclass such as ``FromNoise``) on ``model``; ``extra``:
        the subclass's own settings (``AdaptivePGD``'s beta)."""
        return (attack or PGD)(model, eps=self.eps, alpha=self.alpha, steps=self.steps, norm=self.norm,
                               seed=self.seed, **extra)

    @property
    def step_size(self) -> float:
        """``alpha`` as the attack uses it: the given one, or the default for eps and steps."""
        return default_step_size(self.eps, self.steps) if self.alpha is None else self.alpha


def default_step_size(eps: float, steps: int) -> float:
    """2.5 * eps / steps (Madry et al.): enough for the steps to cross the eps-ball."""
    return 2.5 * eps / max(steps, 1)


def check_target(target: int, num_classes: int) -> None:
    """The one check of a target class: it must be one of the model's classes."""
    if not 0 <= int(target) < num_classes:
        raise PerceptregError(f"`target` class {int(target)} is outside the model's classes 0..{num_classes - 1}")


class Attack:
    """Base class: validates the inputs, sets the model up, calls ``forward``, restores it.

    Subclasses write only ``forward(images, labels, targets)``.
    """

    def __init__(self, model: nn.Module, seed: int = 0):
        self.model = model
        self.seed = seed
        self.logits_of = model.classify if isinstance(model, PerceptionNet) else model

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor | None = None) -> torch.Tensor:
        if images.dim() < 2 or len(images) != len(labels):
            raise PerceptregError(f"images (B, ...) and labels (B,) must have the same batch size; "
                                  f"got {tuple(images.shape)} and {tuple(labels.shape)}")
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise PerceptregError(f"attacks take pixels in [0, 1]; these images range over "
                                  f"[{images.min():.3g}, {images.max():.3g}] (undo any normalization)")
        flags = [p.requires_grad for p in self.model.parameters()]
        try:
            with evaluating(self.model):
                # No gradients for weights: the attack needs d loss / d images only.
                self.model.requires_grad_(False)
                if targets is not None:
                    self._check_targets(images, targets)
                return self.forward(images.detach(), labels.detach(), targets)
        finally:
            for param, flag in zip(self.model.parameters(), flags):
                param.requires_grad_(flag)

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
    """Projected gradient descent (Madry et al. 2018, https://arxiv.org/abs/1706.06083).

    Untargeted, it ascends the cross-entropy of the true labels; targeted, it descends
    the cross-entropy of the targets. Each step moves ``alpha`` along the gradient's sign
    (L-inf) or its normalized direction (L2), then projects back onto the eps-ball around
    the images and the [0, 1] box.

    Args:
        model: a ``PerceptionNet`` or a module returning logits (B, classes).
        eps: radius of the threat model (paper: 0.2 on MNIST, 0.03 on CelebA, L-inf).
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

    Shapes: images (B, C, H, W) in [0, 1], labels (B,), targets (B,) or None -> (B, C, H, W).

    Example:
        >>> attack = PGD(model, eps=0.2, steps=100)
        >>> adv_images = attack(images, labels)
    """

    def __init__(self, model: nn.Module, eps: float = DEFAULT_EPS, alpha: float | None = None,
                 steps: int = DEFAULT_STEPS, norm: str = "linf", random_start: bool = True, seed: int = 0,
                 chunk_size: int = 256):
        super().__init__(model, seed)
        if not 0 < eps < math.inf:
            raise PerceptregError(f"`eps` must be a finite number > 0, got {eps}")
        if steps < 0:
            raise PerceptregError(f"`steps` must be >= 0, got {steps}")
        if norm not in NORMS:
            raise PerceptregError(f"`norm` must be one of {', '.join(NORMS)}, got {norm!r}")
        if alpha is not None and not 0 < alpha < math.inf:
            raise PerceptregError(f"`alpha` must be a finite number > 0, got {alpha}")
        if chunk_size < 1:
            raise PerceptregError(f"`chunk_size` must be >= 1, got {chunk_size}")
        self.eps, self.steps, self.norm, self.random_start = eps, steps, norm, random_start
        self.chunk_size = chunk_size
        self.alpha = alpha if alpha is not None else default_step_size(eps, steps)

    def forward(self, images, labels, targets):
        goal, sign = (labels, 1.0) if targets is None else (targets, -1.0)
        start = self.start(images)  # drawn for the whole batch, as a one-batch loop would
        # Each image's path depends on its own gradient only, so the batch runs in chunks
        # one after another: a chunk whose activations fit the cache runs faster than the
        # whole batch, and memory stays bounded (bench/attack_throughput.py).
        return torch.cat([
            self._descend(images[part], start[part], goal[part], sign, len(images))
            for part in torch.arange(len(images)).split(self.chunk_size)])

    def _descend(self, images, adv, goal, sign, batch_size):
        for _ in range(self.steps):
            adv.requires_grad_(True)
            # The batch mean, summed chunk by chunk: the same gradients.
            (grad,) = torch.autograd.grad(self.objective(adv, goal, sign) / batch_size, adv)
            adv = self.project(images, adv.detach() + self.alpha * self.direction(grad))
        return adv.detach()

    def objective(self, adv: torch.Tensor, goal: torch.Tensor, sign: float) -> torch.Tensor:
        """What each step ascends, summed over the images: the cross-entropy of the true
        labels (sign +1), or minus that of the targets (sign -1)."""
        return sign * F.cross_entropy(self.logits_of(adv), goal, reduction="sum")

    def start(self, images: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return images.clone()
        generator = torch.Generator(images.device).manual_seed(self.seed)
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


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) to broadcast over ``like``'s image dimensions."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class AdaptivePGD(PGD):
    """PGD that knows the reconstruction-error detector (Carlini & Wagner 2017,
    https://arxiv.org/abs/1705.07263; Tramer et al. 2020, https://arxiv.org/abs/2002.08347).

    Each step ascends PGD's objective minus ``beta * ||x_adv - P(x_adv)||^2``: the attack must
    fool H while keeping the perception close to x_adv, so the detector's score stays low.
    With ``beta = 0`` it is exactly ``PGD``. The question it answers (the paper's Fig. 4):
    when the reconstruction must stay good, does the perception still show the adversarial class?

    Args:
        model: a ``PerceptionNet`` (the decoder gives P).
        beta: weight of the reconstruction error, >= 0; the other arguments are ``PGD``'s.

    Example:
        >>> adv_images = AdaptivePGD(model, beta=1.0, eps=0.2, steps=100)(images, labels)
    """

    def __init__(self, model: PerceptionNet, beta: float = 1.0, **settings):
        if not isinstance(model, PerceptionNet):
            raise PerceptregError(f"AdaptivePGD needs a PerceptionNet (its decoder gives P(x)), got {type(model).__name__}")
        if not 0 <= beta < math.inf:
            raise PerceptregError(f"`beta` must be a finite number >= 0, got {beta}")
        super().__init__(model, **settings)
        self.beta = beta

    def objective(self, adv, goal, sign):
        logits, _, recon = self.model(adv)
        return (sign * F.cross_entropy(logits, goal, reduction="sum")
                - self.beta * reconstruction_scores(adv, recon).sum())


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
