"""The perception network H = C(F(x)), P = D(F(x)), and the paper's three architectures.

``PerceptionNet`` wraps any three ``nn.Module``s: an encoder F (images -> latent z), a
classifier head C (z -> logits) and a decoder D (z -> images). The factories ``mnist``,
``svhn`` and ``celeba`` build the networks of the paper's appendix B, with the errata of
the paper's errata fixed (no ReLU before the final sigmoid; the SVHN decoder takes 64 channels).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable, NamedTuple

import torch
from torch import nn

from perceptreg.core.errors import PerceptregError


class PerceptionOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes)
    z: torch.Tensor  # (B, *latent_shape)
    recon: torch.Tensor  # (B, C, H, W), the perception P(x)


class PerceptionNet(nn.Module):
    """Classifier C(F(x)) with a decoder D on the same latent z = F(x).

    Args:
        encoder: F, maps images (B, *input_shape) to a latent z (B, ...).
        classifier: C, maps z to logits (B, num_classes).
        decoder: D, maps z back to images of the input's shape, values in [0, 1].
        input_shape: (C, H, W) of one image; used to check, with one dummy batch, that
            the three modules chain. A mismatch raises ``PerceptregError`` naming the module.

    Example:
        >>> net = PerceptionNet(encoder, classifier, decoder, input_shape=(1, 28, 28))
        >>> logits, z, recon = net(images)
    """

    def __init__(self, encoder: nn.Module, classifier: nn.Module, decoder: nn.Module,
                 input_shape: tuple[int, ...]):
        super().__init__()
        self.encoder, self.classifier, self.decoder = encoder, classifier, decoder
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_shape, self.num_classes = self._check_shapes()

    @torch.no_grad()
    def _check_shapes(self) -> tuple[tuple[int, ...], int]:
        # A batch of 2: batch-norm layers need more than one sample, and a module that
        # mixes up batch and feature dimensions is caught.
        with evaluating(self):
            x = torch.zeros(2, *self.input_shape, device=_device_of(self))
            z = _run("encoder F", self.encoder, x)
            logits = _run("classifier C", self.classifier, z)
            recon = _run("decoder D", self.decoder, z)
        if logits.dim() != 2 or logits.shape[0] != 2:
            raise PerceptregError(
                f"classifier C must return logits of shape (batch, classes); it returned "
                f"{tuple(logits.shape)} for a batch of 2 (add nn.Flatten or fix its output layer)")
        if recon.shape != x.shape:
            raise PerceptregError(
                f"decoder D must return images of the input's shape {tuple(x.shape)}; it "
                f"returned {tuple(recon.shape)} for a batch of 2 (check its layers' strides "
                f"and paddings)")
        return tuple(z.shape[1:]), int(logits.shape[1])

    def forward(self, x: torch.Tensor) -> PerceptionOutput:
        z = self.encoder(x)
        return PerceptionOutput(self.classifier(z), z, self.decoder(z))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """H(x) = C(F(x)): logits, without running the decoder."""
        return self.classifier(self.encoder(x))

    def perceive(self, x: torch.Tensor) -> torch.Tensor:
        """P(x) = D(F(x)): what the model perceives of x."""
        return self.decoder(self.encoder(x))

    def init_output_bias(self, pixel_mean: torch.Tensor | float) -> bool:
        """D's output bias at logit(mean training pixel): see ``init_output_bias``."""
        return init_output_bias(self.decoder, self.latent_shape, self.input_shape, pixel_mean)


def init_output_bias(decoder: nn.Module, latent_shape: tuple[int, ...], image_shape: tuple[int, int, int],
                     pixel_mean: torch.Tensor | float) -> bool:
    """Set the bias of D's output layer to logit(mean training pixel), per channel, if D's
    output comes out of a sigmoid.

    Why: with PyTorch's default init the summed squared error drives every output of a
    sigmoid decoder to 0 within a few dozen steps (the background is most of each
    image); the sigmoid saturates and the decoder stays all black for good
    (docs/guides/train-and-perceive.md). Starting the output at the mean intensity avoids it.

    The output layer is found by running D once: the last layer with a bias before the
    last sigmoid, with only parameter-free reshapes (Unflatten, ...) after the sigmoid.
    Its bias holds one value per channel (a convolution) or per output value (a dense
    layer, channel-major as Unflatten lays it out). Returns whether a bias was set:
    False without a final sigmoid; a warning names the decoder it could not handle.
    """
    order = _run_order(decoder, torch.zeros(2, *latent_shape, device=_device_of(decoder)))
    last_sigmoid = max((i for i, (m, _) in enumerate(order) if isinstance(m, nn.Sigmoid)), default=None)
    if last_sigmoid is None or any(list(m.parameters()) for m, _ in order[last_sigmoid + 1:]):
        return False
    at, layer, width = next(((i, m, out) for i, (m, out) in reversed(list(enumerate(order[:last_sigmoid])))
                             if isinstance(getattr(m, "bias", None), nn.Parameter)), (0, None, 0))
    # A pixel shuffle after it (the decoders of large images) makes each output channel of
    # s*s of its channels, in order: the bias repeats per channel s*s times.
    blocks = math.prod(m.upscale_factor ** 2 for m, _ in order[at + 1:last_sigmoid] if isinstance(m, nn.PixelShuffle))
    channels, height, width_px = image_shape
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32).clamp(1e-3, 1 - 1e-3).flatten()
    mean = mean.expand(channels) if mean.numel() == 1 else mean
    logit = torch.logit(mean)
    if layer is not None and layer.bias.numel() == channels * blocks and width == channels * blocks:
        value = logit.repeat_interleave(blocks)  # one bias per output channel (a convolution)
    elif layer is not None and layer.bias.numel() == channels * height * width_px:
        value = logit.repeat_interleave(height * width_px)  # a dense layer's channel-major output
    else:
        warnings.warn("init_output_bias: found no layer whose bias sets D's output per channel before its "
                      "final sigmoid; the bias is left as it is (watch for the all-black collapse: "
                      "docs/guides/train-and-perceive.md)",
                      RuntimeWarning, stacklevel=2)
        return False
    with torch.no_grad():
        layer.bias.copy_(value.to(layer.bias))
    return True


def _run_order(module: nn.Module, example: torch.Tensor) -> list[tuple[nn.Module, int]]:
    """The leaf modules of ``module`` in the order a forward pass on ``example`` runs them,
    each with the size of its output's dimension 1 (channels, or features)."""
    order = []
    hooks = [m.register_forward_hook(lambda m, args, out: order.append((m, out.shape[1] if out.dim() > 1 else 0)))
             for m in module.modules() if not list(m.children())]
    try:
        with torch.no_grad(), evaluating(module):
            module(example)
    finally:
        for hook in hooks:
            hook.remove()
    return order


@contextlib.contextmanager
def evaluating(module: nn.Module):
    """Eval mode inside the block; after it, whatever happens, each submodule's own mode as
    it was (``train(mode)`` would set one mode for all, waking a part kept in eval)."""
    modes = [(part, part.training) for part in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for part, training in modes:
            part.training = training


def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _run(name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    try:
        out = module(x)
    except (RuntimeError, ValueError, TypeError) as err:
        raise PerceptregError(
            f"{name} failed on an input of shape {tuple(x.shape)}: {err}") from err
    if not isinstance(out, torch.Tensor):
        raise PerceptregError(f"{name} must return one tensor, it returned {type(out).__name__}")
    return out


# --- the paper's architectures (appendix B); every conv is 4x4 ---------------------------

def _encoder(channels: list[int], strides: list[int], paddings: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out, s, p in zip(channels, channels[1:], strides, paddings):
        layers += [nn.Conv2d(c_in, c_out, 4, s, p), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten())  # (B, z_dim, 1, 1) -> (B, z_dim)


def _decoder(channels: list[int], strides: list[int], paddings: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Unflatten(1, (channels[0], 1, 1))]
    for c_in, c_out, s, p in zip(channels, channels[1:], strides, paddings):
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, s, p), nn.ReLU()]
    layers[-1] = nn.Sigmoid()  # erratum: no ReLU before the sigmoid, or outputs sit in [0.5, 1)
    return nn.Sequential(*layers)


def _classifier(z_dim: int, hidden: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def mnist(num_classes: int = 10, z_dim: int = 32, decoder_width: int = 1) -> PerceptionNet:
    """MNIST network, 1x28x28 -> z in R^32 (28->14->7->4->1 and back). 73,083 parameters (F 29,024, C 2,762, D 41,297).
    ``z_dim`` and ``decoder_width`` (a multiplier on D's channels) are ours, beside the paper's."""
    w = decoder_width
    return PerceptionNet(
        _encoder([1, 16, 16, 32, z_dim], [2, 2, 1, 1], [1, 1, 0, 0]),
        _classifier(z_dim, 64, num_classes),
        _decoder([z_dim, 32 * w, 32 * w, 16 * w, 1], [1, 1, 2, 2], [0, 0, 1, 1]),
        input_shape=(1, 28, 28))


def svhn(num_classes: int = 10, z_dim: int = 64, decoder_width: int = 1) -> PerceptionNet:
    """SVHN network, 3x32x32 -> z in R^64 (32->16->8->4->1 and back). 224,429 parameters.
    ``z_dim`` and ``decoder_width`` (a multiplier on D's channels) are ours, beside the paper's."""
    w = decoder_width
    return PerceptionNet(
        _encoder([3, 16, 32, 64, z_dim], [2, 2, 2, 1], [1, 1, 1, 0]),
        _classifier(z_dim, 128, num_classes),
        _decoder([z_dim, 64 * w, 32 * w, 16 * w, 3], [1, 2, 2, 2], [0, 1, 1, 1]),
        input_shape=(3, 32, 32))


def celeba(num_classes: int = 2, z_dim: int = 128, decoder_width: int = 1) -> PerceptionNet:
    """CelebA network, 3x64x64 -> z in R^128 (64->32->16->8->4->1 and back). 26,264,197 parameters.
    ``z_dim`` and ``decoder_width`` (a multiplier on D's channels) are ours, beside the paper's."""
    w = decoder_width
    return PerceptionNet(
        _encoder([3, 128, 256, 512, 1024, z_dim], [2, 2, 2, 2, 1], [1, 1, 1, 1, 0]),
        _classifier(z_dim, 256, num_classes),
        _decoder([z_dim, 1024 * w, 512 * w, 256 * w, 128 * w, 3], [1, 2, 2, 2, 2], [0, 1, 1, 1, 1]),
        input_shape=(3, 64, 64))


def vgg(num_classes: int = 10, z_dim: int = 256, decoder_width: int = 1) -> PerceptionNet:
    """Ours, not the paper's: a VGG-style F for 3x32x32 natural images (three blocks of two 3x3
    convolutions with batch norm and a max pool, 32->16->8->4, then a 4x4 convolution to z in
    R^256) and a decoder of the svhn net's shape. 1,570,253 parameters. Another architecture
    than the paper's svhn net, so that it can judge it (``adversarial.judges``)."""
    blocks: list[nn.Module] = []
    for c_in, c_out in zip([3, 32, 64], [32, 64, 128]):
        for a, b in ((c_in, c_out), (c_out, c_out)):
            blocks += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        blocks.append(nn.MaxPool2d(2))
    w = decoder_width
    return PerceptionNet(
        nn.Sequential(*blocks, nn.Conv2d(128, z_dim, 4), nn.ReLU(), nn.Flatten()),
        _classifier(z_dim, 256, num_classes),
        _decoder([z_dim, 128 * w, 64 * w, 32 * w, 3], [1, 2, 2, 2], [0, 1, 1, 1]),
        input_shape=(3, 32, 32))


ARCHITECTURES: dict[str, Callable[..., PerceptionNet]] = {
    "mnist": mnist, "svhn": svhn, "celeba": celeba, "vgg": vgg}


def build(arch: str, num_classes: int, z_dim: int | None = None, decoder_width: int = 1) -> PerceptionNet:
    """One of the paper's architectures by name (``ARCHITECTURES``); ``z_dim`` None keeps the
    paper's latent size, ``decoder_width`` multiplies the decoder's channels (1: the paper's)."""
    if arch not in ARCHITECTURES:
        raise PerceptregError(
            f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    sizes = {"decoder_width": decoder_width} | ({"z_dim": z_dim} if z_dim else {})
    return ARCHITECTURES[arch](num_classes=num_classes, **sizes)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
