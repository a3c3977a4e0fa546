"""Decoder objectives beyond the paper's pixel error (ours), for ``core.loss``.

    objective = DecoderObjective(DecoderLoss("deepsim"), comparator, image_shape=(3, 32, 32))
    terms = objective(images, recon)   # terms.loss: the decoder's; terms.critic: the discriminator's

A decoder trained on squared pixel error draws the mean of every image that shares a latent:
a blur wherever they differ in detail. Dosovitskiy & Brox (NeurIPS 2016, DeePSiM) compare
images in a comparator network's features instead, add a discriminator that tells decoded
images from real ones, and keep a little pixel error:

- ``feature``: pixel_share * ||x - x'||^2 + feature_weight * mean over layers ||phi_l(x) - phi_l(x')||^2
- ``deepsim``: the same + adversarial_weight * (-Disc(x')), the hinge generator loss.

Each squared error is taken in the run's reduction (summed per image, or averaged), so lam
still weighs "the decoder's loss" against the cross-entropy; its scale changes with the loss
(docs/guides/decoder-losses.md has the measured ratios).

The comparator and the discriminator are used with their parameters detached
(``frozen_call``): the decoder's loss moves the decoder (and, in joint training, F through z),
never the comparator, or F could make its own comparing layers blind to what D gets wrong;
nor the discriminator, which learns only from its own hinge loss, ``critic``, on real images
and detached decoded ones. One backward of ``loss + critic`` trains both sides of the game.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.parametrizations import spectral_norm

from perceptreg.core.config import DecoderLoss
from perceptreg.core.errors import PerceptregError
from perceptreg.core.loss import reconstruction_error
from perceptreg.core.models import evaluating


class DecoderTerms(NamedTuple):
    loss: torch.Tensor  # the decoder's objective for the batch: what lam weighs
    critic: torch.Tensor  # the discriminator's hinge loss (0 without one): trains only the discriminator


def frozen_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with its parameters detached: gradients reach ``x``, not the module."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, (x,), strict=False)


class _Enough(Exception):
    """Raised by the hook of the deepest layer compared: the rest of the network is not run."""


class Comparator(nn.Module):
    """The activations of ``layers`` of ``net`` (module names as in ``named_modules()``), run in
    eval mode (its BatchNorm statistics are not moved by decoded images) with its parameters
    detached, stopping after the deepest of them. ``prepare`` maps images in [0, 1] to the
    net's input (a normalisation)."""

    def __init__(self, net: nn.Module, layers: Sequence[str], image_shape: tuple[int, ...],
                 prepare: Callable[[torch.Tensor], torch.Tensor] | None = None, name: str = "comparator"):
        super().__init__()
        self.net, self.prepare = net, prepare
        modules = dict(net.named_modules())
        self.layers = tuple(layers) or default_layers(net, image_shape, prepare, name)
        missing = [n for n in self.layers if n not in modules or n == ""]
        if missing:
            known = [n for n, m in net.named_modules() if n and not list(m.children())]
            raise PerceptregError(f"`comparator_layers`: {name} has no layer {missing[0]!r}; its layers are "
                                  f"{', '.join(known[:12])}{' ...' if len(known) > 12 else ''}")
        self._modules_compared = [modules[n] for n in self.layers]
        self._check_input(image_shape, name)

    def _check_input(self, image_shape: tuple[int, ...], name: str) -> None:
        with refused_input(image_shape, name), torch.no_grad():
            self(torch.zeros(2, *image_shape, device=next(self.net.parameters()).device))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        found: dict[int, torch.Tensor] = {}

        def hook_for(index: int):
            def hook(module, inputs, output):
                found[index] = output
                if len(found) == len(self.layers):
                    raise _Enough
            return hook
        handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(self._modules_compared)]
        try:
            with evaluating(self.net):
                frozen_call(self.net, self.prepare(images) if self.prepare else images)
        except _Enough:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return [found[i] for i in range(len(self.layers))]


def default_layers(net: nn.Module, image_shape: tuple[int, ...], prepare: Callable | None = None,
                   name: str = "comparator") -> tuple[str, ...]:
    """Every activation module of ``net`` but the deepest: shallow layers keep the detail the
    decoder should draw; the deepest is the latent itself in the paper's encoders. A network
    that applies its activations as functions (``F.relu``, as most ResNets do) has no such
    modules: then its top-level blocks that give feature maps (larger than 1x1), in the
    order they run, but the deepest."""
    relus = [n for n, m in net.named_modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU))]
    if len(relus) >= 2:
        return tuple(relus[:-1])
    blocks = feature_map_blocks(net, image_shape, prepare, name)
    if len(blocks) < 2:
        raise PerceptregError(f"`comparator_layers`: {name} has {len(relus)} activation module(s) and {len(blocks)} "
                              f"top-level block(s) giving feature maps, too few to choose from; name the layers to "
                              f"compare")
    return tuple(blocks[:-1])


def feature_map_blocks(net: nn.Module, image_shape: tuple[int, ...], prepare: Callable | None = None,
                       name: str = "comparator") -> list[str]:
    """The names of ``net``'s top-level blocks whose output is a feature map (B, C, H, W) with
    H and W above 1, in the order they run on a probe batch of zeros."""
    maps: dict[str, bool] = {}

    def hook_for(block: str):
        def hook(module, inputs, output):
            maps[block] = isinstance(output, torch.Tensor) and output.dim() == 4 and min(output.shape[2:]) > 1
        return hook
    handles = [m.register_forward_hook(hook_for(n)) for n, m in net.named_children()]
    probe = torch.zeros(2, *image_shape, device=next(net.parameters()).device)
    try:
        with refused_input(image_shape, name), torch.no_grad(), evaluating(net):
            net(prepare(probe) if prepare else probe)
    finally:
        for handle in handles:
            handle.remove()
    return [block for block, is_map in maps.items() if is_map]


@contextmanager
def refused_input(image_shape: tuple[int, ...], name: str):
    """A comparator's failure on images of ``image_shape`` as one error line naming it."""
    try:
        yield
    except (RuntimeError, ValueError) as err:
        first = str(err).splitlines()[0][:160]
        raise PerceptregError(f"`comparator`: {name} does not take images of shape {tuple(image_shape)} "
                              f"({first}); use a comparator trained on images of that shape") from None


class Discriminator(nn.Module):
    """Real image or decoded? Scored on the comparator's features of the image, as Projected
    GANs do (Sauer et al., NeurIPS 2021): one small head per compared layer, two 1x1
    convolutions (a linear layer on flat features) scoring every location; the image's score
    is the mean of every head's mean. Chosen for cost: the features are computed for the
    feature loss anyway, and an image discriminator of strided convolutions, as large as the
    paper's SVHN encoder, made a training step 2.9x the pixel step (bench/decoder_loss_step.py).

    Spectral norm on every layer and the hinge loss (Miyato et al. 2018): the discriminator's
    Lipschitz constant stays near 1, so its scores, and the decoder's gradients from them, stay
    bounded. No BatchNorm: the scores of real and decoded batches stay independent."""

    def __init__(self, feature_shapes: Sequence[tuple[int, ...]], width: int = 8):
        super().__init__()
        self.heads = nn.ModuleList([self._head(shape, width) for shape in feature_shapes])

    @staticmethod
    def _head(shape: tuple[int, ...], width: int) -> nn.Module:
        if len(shape) == 3:  # (C, H, W): a score per location
            return nn.Sequential(spectral_norm(nn.Conv2d(shape[0], width, 1)), nn.LeakyReLU(0.2),
                                 spectral_norm(nn.Conv2d(width, 1, 1)), nn.Flatten())
        return nn.Sequential(nn.Flatten(), spectral_norm(nn.Linear(math.prod(shape), width)), nn.LeakyReLU(0.2),
                             spectral_norm(nn.Linear(width, 1)))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([head(f).float().mean(1) for head, f in zip(self.heads, features)]).mean(0)


class DecoderObjective(nn.Module):
    """The decoder's loss of a batch under ``config`` (``feature`` or ``deepsim``; the paper's
    ``pixel`` needs none: ``core.loss`` takes the squared error directly)."""

    def __init__(self, config: DecoderLoss, comparator: Comparator, image_shape: tuple[int, ...],
                 reduction: str = "sum"):
        super().__init__()
        self.config, self.reduction = config, reduction
        self.comparator = comparator
        self.discriminator = None
        if config.name == "deepsim":
            with torch.no_grad():
                shapes = [tuple(f.shape[1:]) for f in comparator(torch.zeros(2, *image_shape, device=_device(comparator)))]
            self.discriminator = Discriminator(shapes).to(_device(comparator))

    def describe(self) -> str:
        """The loss's line (``DecoderLoss.describe``) with the layers its comparator compares:
        a config that names none resolves them here (``default_layers``)."""
        return dataclasses.replace(self.config, layers=self.comparator.layers).describe()

    def forward(self, images: torch.Tensor, recon: torch.Tensor) -> DecoderTerms:
        config = self.config
        loss = config.pixel_share * reconstruction_error(images, recon, self.reduction) if config.pixel_share else 0.0
        with torch.no_grad():
            wanted = self.comparator(images)
        got = self.comparator(recon)
        features = torch.stack([reconstruction_error(w, g, self.reduction) for w, g in zip(wanted, got)]).mean()
        loss = loss + config.feature_weight * features
        critic = torch.zeros((), device=images.device)
        if self.discriminator is not None:
            # the decoder's side: the hinge generator loss, through the discriminator's detached weights
            loss = loss + config.adversarial_weight * -frozen_call(self.discriminator, got).mean()
            # the discriminator's side: real and decoded features, detached from the decoder, in one pass
            scores = self.discriminator([torch.cat([w, g.detach()]) for w, g in zip(wanted, got)])
            real, fake = scores.chunk(2)
            critic = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return DecoderTerms(loss, critic)


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
