"""Attacks from elsewhere: any torchattacks-style callable ``attack(images, labels)`` that
returns adversarial images is accepted wherever ``PGD`` is, and checked as ours are.

    attack = load_attack("torchattacks:CW", model, {"c": 1.0}, eps=3.0, norm="l2")
    adv_images = attack(images, labels)
    check_adversarial("torchattacks:CW", images, adv_images, eps=3.0, norm="l2")
"""

from __future__ import annotations

import contextlib
import importlib
import inspect

import torch
from torch import nn

from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet, evaluating

# Tolerances of the ball check: a projection in float32 lands a few ulps past eps.
BALL_RELATIVE, BALL_ABSOLUTE = 1e-5, 1e-6


class Logits(nn.Module):
    """A ``PerceptionNet``'s classifier branch H = C(F(x)) as a module that returns logits:
    what a torchattacks attack takes as its model."""

    def __init__(self, net: PerceptionNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.classify(x)


def as_logits(model: nn.Module) -> nn.Module:
    """The one way a model becomes its logits function: a ``PerceptionNet`` as its classifier
    branch (``Logits``), any other module as it is (it returns logits already)."""
    return Logits(model) if isinstance(model, PerceptionNet) else model


@contextlib.contextmanager
def frozen(model: nn.Module):
    """``model`` in eval mode with no gradients for its weights inside the block (an attack
    needs d loss / d images only); after it, whatever happens, each weight's
    ``requires_grad`` flag and each part's mode as they were."""
    flags = [p.requires_grad for p in model.parameters()]
    try:
        with evaluating(model):
            model.requires_grad_(False)
            yield model
    finally:
        for param, flag in zip(model.parameters(), flags):
            param.requires_grad_(flag)


def attack_name(attack) -> str:
    """How errors and tables name an attack: its ``name``, else its class or function name."""
    name = getattr(attack, "name", None)
    if isinstance(name, str):
        return name
    return getattr(attack, "__qualname__", type(attack).__name__)


class ExternalAttack:
    """An attack callable built from elsewhere, with our chores done around it: the model in
    eval mode and its ``requires_grad`` flags given back afterwards, whatever happens, and
    the global random generator (which torchattacks draws its starts from) seeded with
    ``seed`` inside and restored after. ``eps`` and ``norm``: the threat model its images
    are checked against (``check_adversarial``)."""

    def __init__(self, attack, model: nn.Module, name: str, eps: float | None, norm: str = "linf", seed: int = 0):
        self.attack, self.model, self.name = attack, model, name
        self.eps, self.norm, self.seed = eps, norm, seed

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None = None):
        if targets is not None:
            raise PerceptregError(f"`attack` {self.name}: targeted attacks (--target) need our PGD; "
                                  f"leave out --target or --attack")
        with frozen(self.model), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self.attack(images, labels)


def load_attack(spec: str, model: nn.Module, options: dict | None = None, *, eps: float | None = None,
                steps: int | None = None, norm: str = "linf", seed: int = 0) -> ExternalAttack:
    """``"package.module:Class"`` (e.g. ``"torchattacks:CW"``) built on ``model`` (a
    ``PerceptionNet`` is handed over as its logits, ``as_logits``) with ``options`` as keyword
    arguments; ``eps`` and ``steps`` are passed too where its constructor takes them and
    ``options`` does not name them."""
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name.isidentifier():
        raise PerceptregError(f"`attack` {spec!r}: give pgd or package.module:Class, e.g. torchattacks:CW")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise PerceptregError(f"`attack` {spec!r}: cannot import {module_name} ({err}); "
                              f"install it (pip install {module_name.split('.')[0]})") from err
    factory = getattr(module, name, None)
    if not callable(factory):
        raise PerceptregError(f"`attack` {spec!r}: {module_name} has no class or function {name!r}")
    options = dict(options or {})
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: pass only the options
        accepted = {}
    for key, value in (("eps", eps), ("steps", steps)):
        if value is not None and key in accepted and key not in options:
            options[key] = value
    try:
        attack = factory(as_logits(model), **options)
    except Exception as err:  # the user's attack: whatever it raises, say which
        raise PerceptregError(f"`attack` {spec!r}: building it with {options} failed "
                              f"({type(err).__name__}: {err})") from err
    if not callable(attack):
        raise PerceptregError(f"`attack` {spec!r}: built a {type(attack).__name__}, which cannot be called "
                              f"as attack(images, labels)")
    return ExternalAttack(attack, model, spec, options.get("eps", eps), norm, seed)


def check_adversarial(name: str, images: torch.Tensor, adversarial, eps: float | None = None,
                      norm: str = "linf") -> None:
    """The one check of what an attack returned: a tensor of the images' shape and dtype,
    finite, in [0, 1], and (``eps`` given) within the eps-ball of ``norm`` around the images.
    Raises one ``PerceptregError`` naming the attack."""
    where = f"the attack {name}"
    if not isinstance(adversarial, torch.Tensor):
        raise PerceptregError(f"{where} returned a {type(adversarial).__name__}; it must return a tensor of images")
    if adversarial.shape != images.shape or adversarial.dtype != images.dtype:
        raise PerceptregError(f"{where} returned {tuple(adversarial.shape)} {adversarial.dtype}; it must return "
                              f"the images' shape and dtype, {tuple(images.shape)} {images.dtype}")
    if adversarial.numel() == 0:
        return
    low, high = adversarial.min().item(), adversarial.max().item()  # one sync each, once per attack
    if not (0 <= low and high <= 1):  # also catches nan
        raise PerceptregError(f"{where} returned pixels in [{low:.3g}, {high:.3g}]; they must lie in [0, 1]")
    if eps is None:
        return
    delta = (adversarial - images).flatten(1)
    distance = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    outside = distance > eps * (1 + BALL_RELATIVE) + BALL_ABSOLUTE
    if outside.any():
        raise PerceptregError(f"{where} moved {int(outside.sum())} of {len(images)} images outside the "
                              f"{norm} eps-ball (largest distance {distance.max().item():.4g} > eps {eps:g}); "
                              f"give the attack eps {eps:g}, or the eps and norm it keeps to")
