"""Measures of a perception P(x) = D(F(x)) that do not hang on one judge, each beside pixel MSE:

- consistency: how often the model's own H reads P(x) as it reads x, and how far F(P(x)) lies
  from F(x), relative to the median distance of two test images' latents;
- judges (``judging``): several independent readers of P(x), each with its accuracy on x and
  its bias over classes;
- a perceptual distance of x and P(x) in the features of a network used in no loss
  (``RandomFeatures``);
- the spread of perceptions: D(F(x) + e) for small perturbations e of the latent, the
  per-pixel standard deviation across them: what the network does not determine.

    measured = measure_perception(model, test_data, judges=[knn, cnn])
    measured.lines()   # what perceive prints
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.data import ImageDataset, batches
from perceptreg.measures.blur_control import matched_blur
from perceptreg.measures.judging import JudgeReading, JudgeTally, format_judge
from perceptreg.measures.quality import SpreadTally
from perceptreg.measures.records import MeanOf, Rate

SPREAD_SCALE = 0.1  # perturbations of the latent: this fraction of the latent's own RMS size, per image
SPREAD_SAMPLES = 8  # decoded perturbations per image
FROZEN = ConfigDict(extra="forbid", frozen=True)


class RandomFeatures(nn.Module):
    """The perceptual distance's network: three 3x3 convolutions (16, 32, 64 channels, the
    last two of stride 2) with ReLU, He-initialised from ``seed`` and never trained.

    Why this network: it is used in no loss, so no decoder was trained toward it and none can
    have learned to please it (a decoder loss through the model's own layers, or through a
    comparator, makes the distance in those features small by construction); it needs no
    download and is the same on every machine for a seed; and random convolutional features
    already rank image distortions much as people do (Zhang et al., "The unreasonable
    effectiveness of deep features as a perceptual metric", CVPR 2018: random-weight
    networks well above pixel distances). The distance is LPIPS's form with unit weights:
    each position's channel vector scaled to length 1, squared differences summed over
    channels, averaged over positions, then over the three layers."""

    def __init__(self, channels: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        for c_in, c_out, stride in ((channels, 16, 1), (16, 32, 2), (32, 64, 2)):
            conv = nn.Conv2d(c_in, c_out, 3, stride, 1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2 / (c_in * 9)) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x, found = images.float() - 0.5, []  # centred: a grey image excites nothing
        for conv in self.convs:
            x = conv(x).relu()
            found.append(nn.functional.normalize(x, dim=1))
        return found

    def distance(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Per image (B,): 0 for the same image; at most 2 (features pointing apart)."""
        return feature_distance(self.features(first), self.features(second))


def feature_distance(first: list[torch.Tensor], second: list[torch.Tensor]) -> torch.Tensor:
    """``RandomFeatures.distance`` of features already computed."""
    return torch.stack([(a - b).square().sum(1).flatten(1).mean(1) for a, b in zip(first, second)]).mean(0)


class PerceptionMeasures(BaseModel):
    """What ``measure_perception`` found of P(x) on ``images`` test images; means and rates
    with their 95 % intervals (``MeanOf``, ``Rate``)."""

    model_config = FROZEN
    images: int
    pixel_mse: MeanOf  # squared error per pixel of P(x)
    h_consistency: Rate  # rate: H(P(x)) = H(x)
    latent_distance: MeanOf  # ||F(P(x)) - F(x)|| / the median ||F(x_i) - F(x_j)|| of two test images
    perceptual_distance: MeanOf  # RandomFeatures.distance(x, P(x))
    unrelated_perceptual_distance: MeanOf  # the same of x and another test image: "nothing alike"
    spread: MeanOf  # per image, the mean over pixels of the standard deviation of D(F(x) + e)
    spread_scale: float  # e's size: this fraction of the latent's RMS
    judges: list[JudgeReading]
    # the training's collapse rule (quality.collapsed) on these images: P(x) nearly the same
    # whatever x, so every reading of it is of a failed decoder; None in files written before it
    decoder_collapsed: bool | None = None

    def lines(self, classes: Sequence[str] | None = None) -> list[str]:
        said = [f"P(x) of {self.images} test images: MSE/pixel {self.pixel_mse.text(4)}; H reads P(x) as it reads "
                f"x {self.h_consistency}; |F(P(x)) - F(x)| {self.latent_distance.text(3)} of two test "
                f"images' distance; perceptual distance x-P(x) {self.perceptual_distance.text(3)} (x-another image "
                f"{self.unrelated_perceptual_distance.text(3)}, random conv features); spread of D(F(x) + e) "
                f"{self.spread.text(4)} per pixel at |e| = {self.spread_scale:g} |F(x)|"]
        if self.decoder_collapsed:
            said.append(f"the decoder has collapsed: {COLLAPSED}")
        return said + [format_judge(reading, classes) for reading in self.judges]


COLLAPSED = ("P(x) is nearly the same picture whatever x (or the same shape in each image's colours), so what is "
             "read of it is of a failed decoder, not of what the layer keeps; fit it longer")


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """Indices pairing each of ``n`` items with another (a random order shifted by one never
    pairs an item with itself); for n = 1 the item itself."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    other = torch.empty_like(order)
    other[order] = order.roll(1)
    return other


@torch.no_grad()
def perception_spread(model: PerceptionNet, images: torch.Tensor, scale: float = SPREAD_SCALE,
                      samples: int = SPREAD_SAMPLES, seed: int = 0) -> torch.Tensor:
    """Per image, the per-pixel standard deviation (B, H, W; mean over channels) of D(F(x) + e)
    over ``samples`` perturbations e ~ N(0, (scale * RMS of F(x))^2 I): where the decoder
    draws the same whatever the latent's small changes, 0; where it draws what F(x) does not
    pin down, more. The perturbations are drawn on the CPU from ``seed``."""
    with evaluating(model):
        z = model.encoder(images)
        size = z.flatten(1).square().mean(1).sqrt().view(-1, *[1] * (z.dim() - 1))  # (B, 1, ...)
        generator = torch.Generator().manual_seed(seed)
        drawn = [model.decoder(z + scale * size * torch.randn(z.shape, generator=generator).to(z)).float()
                 for _ in range(samples)]
    return torch.stack(drawn).std(0, unbiased=False).mean(1)


def measure_perception(model: PerceptionNet, data: ImageDataset, judges: Sequence = (), batch_size: int = 500,
                       device: torch.device | str = "cpu", attack=None, spread_scale: float = SPREAD_SCALE
                       ) -> PerceptionMeasures:
    """``PerceptionMeasures`` of ``model``'s P(x) on ``data``. ``judges``: readers of images
    (``judge(images) -> labels``, with a ``name``) of other architectures than the model's.
    ``attack(images, labels) -> x_adv``, if given, attacks H, and each judge reads x_adv and
    P(x_adv) too. The latent distances' reference pairs each image with another of its batch."""
    tally = _Tally(judges, data.classes, data.image_shape, device)
    reference = RandomFeatures(data.image_shape[0]).to(device)
    with evaluating(model):
        for images, labels in batches(data, batch_size, device=device):
            tally.add(model, reference, images, labels, attack, spread_scale)
    return tally.result(spread_scale)


class _Tally:
    """The per-image values of ``measure_perception``, batch by batch."""

    def __init__(self, judges: Sequence, classes: Sequence[str], image_shape: tuple[int, ...], device):
        self.values: dict[str, list] = {k: [] for k in ("mse", "agrees", "latent", "perceptual", "unrelated", "spread")}
        self.judges = [JudgeTally(judge, len(classes)) for judge in judges]
        self.spreads = SpreadTally(image_shape, device)

    @torch.no_grad()
    def add(self, model, reference: RandomFeatures, images, labels, attack, spread_scale: float) -> None:
        logits, z, perceived = model(images)
        perceived = perceived.float()
        other = derangement(len(images)).to(images.device)
        z, z_p = z.flatten(1).float(), model.encoder(perceived).flatten(1).float()
        typical = (z - z[other]).norm(dim=1).median().clamp_min(1e-12)
        seen = reference.features(images)
        for key, value in (("mse", (perceived - images).square().flatten(1).mean(1)),
                           ("agrees", model.classify(perceived).argmax(1) == logits.argmax(1)),
                           ("latent", (z_p - z).norm(dim=1) / typical),
                           ("perceptual", feature_distance(seen, reference.features(perceived))),
                           ("unrelated", feature_distance(seen, [f[other] for f in seen])),
                           ("spread", perception_spread(model, images, spread_scale).flatten(1).mean(1))):
            self.values[key].append(value.cpu())
        self.spreads.add(images, perceived)
        adversarial = None
        if attack is not None and self.judges:
            with torch.enable_grad():  # an attack follows H's gradient
                adversarial = attack(images, labels)
        perceived_adversarial = None if adversarial is None else model.perceive(adversarial).float()
        blurred = matched_blur(images, perceived) if self.judges else None  # the control of every judge's reading
        for judge in self.judges:
            judge.add(images, labels, perceived, adversarial, perceived_adversarial, right=logits.argmax(1) == labels,
                      blurred=blurred)

    def result(self, spread_scale: float) -> PerceptionMeasures:
        joined = {key: torch.cat(values) for key, values in self.values.items()}
        means = {name: MeanOf.of(joined[key].double().tolist()) for name, key in (
            ("pixel_mse", "mse"), ("latent_distance", "latent"), ("perceptual_distance", "perceptual"),
            ("unrelated_perceptual_distance", "unrelated"), ("spread", "spread"))}
        return PerceptionMeasures(images=len(joined["mse"]), h_consistency=Rate.of(joined["agrees"]),
                                  spread_scale=spread_scale, judges=[j.result() for j in self.judges],
                                  decoder_collapsed=self.spreads.collapsed(), **means)
