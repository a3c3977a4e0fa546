"""The decoder-loss options that train, attach and sweep share: ``decoder_loss_options``
adds them to a command, ``decoder_loss_from`` turns what was given into a ``DecoderLoss``."""

from __future__ import annotations

import click

from perceptreg.core.config import DECODER_LOSSES, DecoderLoss
from perceptreg.core.errors import PerceptregError

FIELDS = {"decoder_loss": "name", "comparator": "comparator", "comparator_layers": "layers",
          "pixel_weight": "pixel_weight", "feature_weight": "feature_weight",
          "adversarial_weight": "adversarial_weight"}  # option -> DecoderLoss field
OPTIONS = [
    click.option("--decoder-loss", type=click.Choice(DECODER_LOSSES),
                 help="What the decoder learns to minimise: pixel, the paper's squared pixel error [default]; ours: "
                      "feature (a comparator network's features, plus a little pixel error) or deepsim (feature + a "
                      "discriminator, Dosovitskiy & Brox 2016). docs/guides/decoder-losses.md"),
    click.option("--comparator", help="feature, deepsim: self (the model's own earlier layers) [default], or the "
                                      "folder of a run of `train` whose encoder compares; never the judge."),
    click.option("--comparator-layers", help="The comparator's modules compared, comma-separated, as in "
                                             "named_modules(). [default: its ReLUs but the deepest]"),
    click.option("--pixel-weight", type=float, help="Weight of the squared pixel error. [default: 1 for pixel, 0.1 "
                                                    "for feature and deepsim]"),
    click.option("--feature-weight", type=float, help=f"Weight of the comparator's feature error. "
                                                      f"[default: {DecoderLoss.feature_weight:g}]"),
    click.option("--adversarial-weight", type=float, help=f"deepsim: weight of the discriminator's loss. "
                                                          f"[default: {DecoderLoss.adversarial_weight:g}]"),
]


def decoder_loss_options(command):
    for option in reversed(OPTIONS):
        command = option(command)
    return command


def decoder_loss_from(options: dict) -> DecoderLoss | None:
    """The ``DecoderLoss`` of the options given (taken out of ``options``); None when none was
    given (a resumed run keeps its own)."""
    given = {FIELDS[k]: options.pop(k) for k in list(FIELDS) if options.get(k) is not None}
    for k in FIELDS:
        options.pop(k, None)
    if not given:
        return None
    if "name" not in given:
        raise PerceptregError("`comparator` and the loss weights set the decoder loss: give `decoder_loss` "
                              "(feature or deepsim) with them")
    if "layers" in given:
        given["layers"] = tuple(n.strip() for n in given["layers"].split(",") if n.strip())
    return DecoderLoss(**given)
