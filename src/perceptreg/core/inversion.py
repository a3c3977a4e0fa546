"""Inversion, the method: images x' optimised so that a network's layer gives the activation
it gives images x, with no decoder (Mahendran & Vedaldi, "Understanding deep image
representations by inverting them", CVPR 2015):

    argmin ||Phi(x') - Phi(x)||^2 / ||Phi(x)||^2 + tv * TV(x') + norm * ||x' - 1/2||^2,  x' in [0, 1]

plus, where the model has batch norm, its running statistics as an image prior (DeepInversion,
Yin et al., CVPR 2020): the batch's mean and variance at the input of every batch-norm layer
are drawn toward the ones the layer saw in training.

    inverted, error = invert_images(net.encoder, images, InversionSettings(steps=200))
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from perceptreg.core.attached import LayerView
from perceptreg.core.inversion_settings import GREY, InversionSettings
from perceptreg.core.models import PerceptionNet, evaluating


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Per image (B,): the squared differences of vertically and horizontally neighbouring
    pixels, summed, over the image's pixel count (Mahendran & Vedaldi's TV with beta = 2)."""
    down = (images[..., 1:, :] - images[..., :-1, :]).square().flatten(1).sum(1)
    right = (images[..., :, 1:] - images[..., :, :-1]).square().flatten(1).sum(1)
    return (down + right) / images[0].numel()


def batch_norm_layers(module: nn.Module) -> list[nn.Module]:
    """The batch-norm layers of ``module`` that keep running statistics: the prior's."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]


@contextlib.contextmanager
def batch_norm_prior(module: nn.Module):
    """While open, every forward adds to the yielded list, per batch-norm layer of
    ``module`` that keeps running statistics, DeepInversion's distance of the batch's
    statistics to them: ||mean - running_mean|| + ||var - running_var|| at the layer's input."""
    terms: list[torch.Tensor] = []

    def hook(layer, inputs, output):
        x = inputs[0]
        dims = [d for d in range(x.dim()) if d != 1]  # every dimension but the channels
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        terms.append((mean - layer.running_mean).norm() + (var - layer.running_var).norm())

    handles = [layer.register_forward_hook(hook) for layer in batch_norm_layers(module)]
    try:
        yield terms
    finally:
        for handle in handles:
            handle.remove()


def searched_module(model: nn.Module) -> nn.Module:
    """The module whose batch-norm layers run when ``model``'s latent is computed: the
    user's network of an attached layer (it runs whole), F of a PerceptionNet, else ``model``."""
    if isinstance(model, LayerView):
        return model.seen.model
    return model.encoder if isinstance(model, PerceptionNet) else model


def invert_images(encoder: nn.Module, images: torch.Tensor, settings: InversionSettings = InversionSettings(),
                  priors_of: nn.Module | None = None, each_step: Callable[[], object] = lambda: None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images x' (B, C, H, W) in [0, 1] whose ``encoder`` output matches that of ``images``,
    and each one's relative error ||Phi(x') - Phi(x)||^2 / ||Phi(x)||^2 (B,). The batch-norm
    prior looks in ``priors_of`` (default ``encoder``); ``each_step`` is called after every
    step (a progress bar's ``update``). Deterministic for a seed: the starts
    are drawn on the CPU, batch by batch in order."""
    generator = torch.Generator().manual_seed(settings.seed)
    chunks = images.split(settings.batch_size)
    found, errors = [], []
    with evaluating(encoder), batch_norm_prior(priors_of or encoder) as bn_terms:
        for chunk in chunks:
            start = GREY + 0.1 * (torch.rand(chunk.shape, generator=generator) - 0.5)
            x, error = _invert_batch(encoder, chunk, start.to(chunk), settings, bn_terms, each_step)
            found.append(x)
            errors.append(error)
    return torch.cat(found), torch.cat(errors)


def _invert_batch(encoder, images, start, settings, bn_terms, each_step) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        target = encoder(images).flatten(1).float()
    scale = target.square().sum(1).clamp_min(1e-12)  # (B,): the relative error is 1 at Phi(x') = 0
    x = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    for _ in range(settings.steps):
        bn_terms.clear()
        error = (encoder(x).flatten(1).float() - target).square().sum(1) / scale
        # per image sums: an image's x' does not depend on the batch it is in, but for the
        # batch-norm prior, which is of the batch (weighted by its size to match)
        loss = (error.sum() + settings.tv_weight * total_variation(x).sum()
                + settings.norm_weight * (x - GREY).square().flatten(1).mean(1).sum()
                + settings.bn_weight * len(x) * sum(bn_terms, torch.zeros((), device=x.device)))
        # the gradient of x alone: the model's parameters get none, and keep none
        (x.grad,) = torch.autograd.grad(loss, x)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        each_step()
    with torch.no_grad():
        error = (encoder(x).flatten(1).float() - target).square().sum(1) / scale
    return x.detach(), error
