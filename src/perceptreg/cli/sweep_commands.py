"""`perceptreg sweep`: one call of ``sweeps.sweep.run_sweep``; this module parses the options
and prints the result."""

from __future__ import annotations

import click

from perceptreg.cli.app import OutPath, defaults_of, device_option, main
from perceptreg.cli.decoder_options import decoder_loss_from, decoder_loss_options
from perceptreg.cli.robust_commands import adversarial_options
from perceptreg.core.config import MAX_EPOCHS
from perceptreg.sweeps.config import ENGINES, QUICK, SweepConfig

SWEEP = defaults_of(SweepConfig)


@main.command()
@click.option("--dataset", default=SWEEP.dataset, show_default=True, help="Any dataset `train` takes.")
@click.option("--lams", default=",".join(f"{v:g}" for v in SWEEP.lams), show_default=True,
              help="Lambdas, comma-separated.")
@click.option("--seeds", default=",".join(map(str, SWEEP.seeds)), show_default=True,
              help="Seeds, comma-separated (2+ give intervals).")
@click.option("--post-hoc/--no-post-hoc", default=SWEEP.post_hoc, show_default=True, help="Add the post-hoc decoder baseline.")
@click.option("--epochs", default=SWEEP.epochs, show_default=True, type=click.IntRange(1, MAX_EPOCHS),
              help="Epochs per model.")
@click.option("--train-size", type=click.IntRange(min=10), help="Train on a stratified subset of this many images.")
@click.option("--quick", is_flag=True, help="A smoke run: 400 training images, 1 epoch, seed 0.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Models trained at once, in processes sharing the cores (threads = cores / workers). "
                   "[default: on CPU one per core, up to the number of models; on CUDA 1]")
@click.option("--engine", default=SWEEP.engine, show_default=True, type=click.Choice(ENGINES),
              help="ray: each model a Ray task with cores / workers CPUs, here or on a cluster "
                   "(pip install perceptreg[ray]).")
@click.option("--address", help="--engine ray: the cluster's head node, HOST:6379. "
                                "[default: $RAY_ADDRESS, else a Ray instance on this machine]")
@click.option("--ensemble/--no-ensemble", default=None,
              help="Train the joint models as one vmapped ensemble per worker (docs/guides/sweeps.md). "
                   "[default: on with --device cuda and the local engine, else off]")
@decoder_loss_options
@device_option
@click.option("--data-root", help="Folder of file-based datasets.")
@click.option("--judge", type=click.Path(exists=True, file_okay=False),
              help="A run folder whose model reads each member's P(x) (its accuracy on x, P(x) read as the true "
                   "class, the distance in its features). [default: on natural images the dataset's CNN judge "
                   "once trained (perceptreg train-judge); else no reading]")
@click.option("--out", type=OutPath(file_okay=False),
              help="Sweep folder. [default: runs/sweep-<dataset>]")
@click.option("--extend", is_flag=True, help="Rerun the sweep in --out with other --lams, --seeds or more --epochs: "
              "its members are trained on, new ones added, and sweep.json sums up the grid given (without it, "
              "such a rerun is refused).")
@adversarial_options
def sweep(lams, seeds, quick, out, extend, **options):
    """Train one model per lambda and seed (and the post-hoc baseline), then measure what
    each keeps: accuracy, reconstruction, error maps with their centre-to-edge ratio, and
    linear probes on frozen z. Resumable model by model.

    Example: perceptreg sweep --dataset mnist-strips --lams 1e-4,1e-3,1e-2,1e2
    """
    from perceptreg.sweeps.sweep import parse_list, run_sweep

    options["decoder_loss"] = decoder_loss_from(options) or SWEEP.decoder_loss
    options.update(lams=parse_list(lams, float, "lams", "1e-4,1e-3,1e-2,1e2"), seeds=parse_list(seeds, int, "seeds", "0,1"))
    result = run_sweep(SweepConfig(**{**options, **(QUICK if quick else {})}), out, extend=extend)
    click.echo("\n".join(result.lines()))
