"""`perceptreg invert`: what a layer keeps of test images, found by optimisation without a
decoder (``figures.inversion.invert``); this module parses the options and prints the result."""

from __future__ import annotations

import click

from perceptreg.cli.app import OutPath, defaults_of, device_option, layer_option, main, run_argument
from perceptreg.core.inversion_settings import InversionSettings
from perceptreg.runs.files import INVERSION_PNG

DEFAULTS = defaults_of(InversionSettings)


@main.command()
@run_argument
@layer_option
@click.option("--n", default=20, show_default=True, type=int, help="Test images to invert, spread over the classes.")
@click.option("--steps", default=DEFAULTS.steps, show_default=True, type=int, help="Optimisation steps (Adam).")
@click.option("--lr", default=DEFAULTS.lr, show_default=True, type=float, help="Adam's step size, decayed to 0.")
@click.option("--tv-weight", default=DEFAULTS.tv_weight, show_default=True, type=float,
              help="Weight of the total-variation prior (smooth images).")
@click.option("--norm-weight", default=DEFAULTS.norm_weight, show_default=True, type=float,
              help="Weight of the norm prior (pixels near mid-grey).")
@click.option("--bn-weight", default=DEFAULTS.bn_weight, show_default=True, type=float,
              help="Weight of the batch-norm statistics prior (DeepInversion), where the model has batch norm.")
@click.option("--batch-size", default=DEFAULTS.batch_size, show_default=True, type=int, help="Images inverted at once.")
@click.option("--seed", default=DEFAULTS.seed, show_default=True, type=click.IntRange(0, 2**63 - 1),
              help="Seed of the starting images.")
@click.option("--out", type=OutPath(dir_okay=False),
              help=f"PNG to write. [default: RUN/{INVERSION_PNG}; of a run of `attach`, inversion_LAYER.png]")
@device_option
def invert(run, layer, n, out, device, **settings):
    """Invert a layer: images x' optimised to give the layer's activation of test images x,
    under total-variation and norm priors (Mahendran & Vedaldi 2015) and the batch-norm
    statistics prior (DeepInversion) where the model has batch norm. Draws x, P(x) and x'
    side by side and writes the measures to RUN/inversion.json. Where x' and P(x) differ,
    the decoder's prior speaks.

    Example: perceptreg invert runs/demo --n 20 --steps 200
    """
    from perceptreg.figures.inversion import invert as run_inversion

    result = run_inversion(run, layer, n, InversionSettings(**settings), out, device, progress=True)
    click.echo("\n".join(result.lines()))
