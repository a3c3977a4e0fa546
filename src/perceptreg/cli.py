"""The `perceptreg` command: a thin layer over the library (train, perceive, demo)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import click

from perceptreg import data as datasets, figures, models
from perceptreg.errors import PerceptregError
from perceptreg.metrics import evaluate
from perceptreg.train import MODES, TrainConfig, load_config, load_model, train


class _Group(click.Group):
    """Turns library errors about bad input into one line and exit code 1, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PerceptregError as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=_Group)
@click.version_option(package_name="perceptreg")
def main():
    """See what a network sees: train classifiers with a decoder on their latent and look
    at their perception P(x) = D(F(x)).

    Start with `perceptreg demo`.
    """


def fresh_run_dir(base: Path) -> Path:
    """``base`` if it holds no run yet, else base-2, base-3, ... (as ultralytics' runs/ do)."""
    candidate, k = base, 1
    while (candidate / "config.json").exists():
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    return candidate


def _train_and_report(config: TrainConfig, out: Path, resume: bool, quiet: bool) -> None:
    """Train, then print the numbers and draw the perception grid into the run folder."""
    began = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        model, history, run_dir = train(config, out, resume=resume, progress=not quiet)
    for warning in caught:  # one plain line each, not Python's file:line format
        click.echo(f"Warning: {warning.message}", err=True)
    test = datasets.load_dataset(config.dataset, config.seed, config.data_root)[1]
    grid = figures.save_png(figures.perception_grid(model, test, n=2 * model.num_classes,
                                                    device=config.device),
                            run_dir / "perception.png")
    last = history[-1]
    click.echo(f"test accuracy {last['test_accuracy']:.2%}, test reconstruction MSE per pixel "
               f"{last['test_recon_mse']:.4f} ({len(history)} epochs, "
               f"{time.perf_counter() - began:.1f}s)")
    click.echo(f"run folder: {run_dir}\nperception grid: {grid}")


@main.command("train")
@click.option("--dataset", type=click.Choice(list(datasets.DATASETS)), help="Training data. [default: mnist5k]")
@click.option("--arch", type=click.Choice(list(models.ARCHITECTURES)), help="Paper architecture. [default: mnist]")
@click.option("--lam", type=float, help="Weight of the reconstruction term. [default: 0.01]")
@click.option("--reduction", type=click.Choice(["sum", "mean"]),
              help="Squared error summed per image (paper) or averaged per pixel. [default: sum]")
@click.option("--mode", type=click.Choice(MODES),
              help="joint: F, C, D together; post-hoc: F, C, then D on frozen F. [default: joint]")
@click.option("--epochs", type=int, help="Epochs (of F and C, in post-hoc mode). [default: 20]")
@click.option("--decoder-epochs", type=int, help="Post-hoc: epochs of the decoder phase. [default: --epochs]")
@click.option("--batch-size", type=int, help="Batch size. [default: 64]")
@click.option("--lr", type=float, help="Adam learning rate. [default: 0.001]")
@click.option("--lr-drop-epoch", type=int, help="Multiply the lr by 0.1 from this epoch on (CelebA: 20).")
@click.option("--seed", type=int, help="Seed of init, split and shuffling. [default: 0]")
@click.option("--train-size", type=int, help="Train on a stratified subset of this many images.")
@click.option("--device", help="cpu, or cuda (bf16 autocast). [default: cpu]")
@click.option("--data-root", help="Folder of file-based datasets (mnist is downloaded there).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder. [default: runs/<dataset>-lam<lam>-<mode>]")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
def train_command(out, resume, quiet, **options):
    """Train a perceptually regularized model into a run folder.

    Example: perceptreg train --lam 1e-2 --epochs 20 --out runs/mnist-lam1e-2
    """
    given = {k: v for k, v in options.items() if v is not None}
    if resume:
        if out is None:
            raise click.UsageError("--resume needs --out RUN, the run folder to continue")
        config = TrainConfig.from_dict({**load_config(out).to_dict(), **given})
    else:
        config = TrainConfig(**given)
        default = Path("runs") / f"{config.dataset}-lam{config.lam:g}-{config.mode}"
        out = out or fresh_run_dir(default)
    _train_and_report(config, out, resume, quiet)


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--n", default=20, show_default=True, help="Number of test images.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG to write. [default: RUN/perception.png]")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
def perceive(run, n, out, device):
    """Grid of test images x beside the model's perception P(x) = D(F(x)).

    Example: perceptreg perceive runs/demo --n 20
    """
    config = load_config(run)
    model = load_model(run, device=device)
    test = datasets.load_dataset(config.dataset, config.seed, config.data_root)[1]
    path = figures.save_png(figures.perception_grid(model, test, n=n, device=device),
                            out or run / "perception.png")
    click.echo(f"perception grid of {min(n, len(test))} test images: {path}")


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Run folder (a numbered sibling if it holds a run).")
@click.option("--epochs", default=20, show_default=True, help="Training epochs.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
def demo(out, epochs, device, quiet):
    """Train the paper's MNIST network (z = 32, lambda = 1e-2) on the embedded 5000 digits
    (4000 train / 1000 test) and draw its perception grid. About 20 s on 2 CPU cores.

    Example: perceptreg demo
    """
    config = TrainConfig(dataset="mnist5k", arch="mnist", lam=1e-2, epochs=epochs, device=device)
    _train_and_report(config, fresh_run_dir(out), resume=False, quiet=quiet)
