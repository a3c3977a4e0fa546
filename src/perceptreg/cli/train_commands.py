"""Commands that train: train, demo and train-judge; each is one library call
(``views.train_run``), this module parses the options and prints the result.

As in every command module, the top imports only what the options show (light modules);
what a command runs is imported in its body, so --help does not import torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from perceptreg.adversarial.defaults import STANDING_JUDGE
from perceptreg.cli.app import OutPath, defaults_of, device_option, main
from perceptreg.cli.decoder_options import decoder_loss_from, decoder_loss_options
from perceptreg.cli.robust_commands import adversarial_options
from perceptreg.core.config import INPUT_SHAPES, MAX_EPOCHS, MODES, TrainConfig
from perceptreg.data.registry import help_text


DEFAULTS = defaults_of(TrainConfig)


def setting(flag: str, help: str, **kwargs):
    """An option for the TrainConfig field of the same name; its help shows TrainConfig's
    default. Options left out stay None, so a resumed run keeps its own settings."""
    field = flag.removeprefix("--").replace("-", "_")
    default = getattr(DEFAULTS, field)
    shown = "" if default is None else f" [default: {default}]"
    return click.option(flag, field, help=help + shown, **kwargs)


@main.command("train")
@setting("--dataset", f"Training data: {help_text()}.")
@click.option("--arch", type=click.Choice(list(INPUT_SHAPES)),
              help="Paper architecture. [default: the one for the dataset's images]")
@setting("--model", "Your own network instead: FILE.py:FUNCTION returning a PerceptionNet of your F, C, D.")
@setting("--z-dim", "Latent size of the paper architecture (ours, beside the paper's). [default: the paper's: "
         "mnist 32, svhn 64, celeba 128]", type=int)
@setting("--decoder-width", "Multiply the decoder's channels (ours, beside the paper's D; costs time and memory "
         "in proportion).", type=int)
@setting("--lam", "Weight of the reconstruction term.", type=float)
@setting("--reduction", "Squared error summed per image (paper) or averaged per pixel.",
         type=click.Choice(["sum", "mean"]))
@setting("--mode", "joint: F, C, D together; post-hoc: F, C, then D on frozen F.", type=click.Choice(MODES))
@decoder_loss_options
@setting("--epochs", "Epochs (of F and C, in post-hoc mode); CelebA's default is 30, 10 past its lr drop.",
         type=int)
@setting("--decoder-epochs", "Post-hoc: epochs of the decoder phase (none: --epochs).", type=int)
@setting("--batch-size", "Batch size.", type=int)
@setting("--decoder-batch-size", "Post-hoc: batch size of the decoder phase (none: --batch-size).", type=int)
@setting("--lr", "Adam learning rate.", type=float)
@setting("--lr-drop-epoch", "Multiply the lr by 0.1 after this many epochs; 0: never. [default: the "
         "dataset's schedule: CelebA 20, others never]", type=int)
@setting("--seed", "Seed of init, shuffling and the --train-size subset (the split is fixed).", type=int)
@setting("--train-size", "Train on a stratified subset of this many images.", type=int)
@setting("--steps-per-epoch", "Cap each epoch at this many batches (very large datasets).", type=int)
@setting("--eval-size", "Test images evaluated after every epoch: a fixed stratified sample of the test split, "
         "the same for every epoch and seed; 0: the whole split. Each image costs a forward pass per epoch: "
         "10,000 took about 40 s with the svhn net (32x32) on 2 busy CPU cores, several minutes with the "
         "celeba net (64x64).", type=int)
@setting("--device", "cpu, cuda or cuda:N (bf16 autocast).")
@setting("--data-root", "Folder of file-based datasets (mnist is downloaded there).")
@setting("--classifier-from", "Post-hoc: a new decoder for the frozen F and C of this run (its dataset and "
         "architecture).", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=OutPath(file_okay=False),
              help="Run folder. [default: runs/<dataset>-lam<lam>-<mode>]")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option("--compile", "compile_step", is_flag=True, default=None,
              help="torch.compile the training step (pays on GPUs and long runs; ~30 s to start).")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@adversarial_options
def train_command(out, resume, quiet, compile_step, **options):
    """Train a perceptually regularized model into a run folder.

    Example: perceptreg train --lam 1e-2 --epochs 20 --out runs/mnist-lam1e-2
    """
    from perceptreg.views.train_run import is_main_process, train_run

    options["decoder_loss"] = decoder_loss_from(options)  # None: not given
    result = train_run({**options, "compile": compile_step}, out, resume=resume, progress=not quiet)
    if is_main_process():  # under torchrun, rank 0 reports for all
        click.echo("\n".join(result.lines()))


@main.command()
@click.option("--out", type=OutPath(file_okay=False), default=Path("runs/demo"),
              show_default=True, help="Run folder (a numbered sibling if it holds a run).")
@click.option("--epochs", default=DEFAULTS.epochs, show_default=True, help="Training epochs.")
@device_option
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
def demo(out, epochs, device, quiet):
    """Train the paper's MNIST network (z = 32, lambda = 1e-2) on the embedded 5000 digits
    (4000 train / 1000 test), draw its perception grid and write its HTML report.
    About 20 s on 2 CPU cores.

    Example: perceptreg demo
    """
    from perceptreg.views.train_run import demo as run_demo

    click.echo("\n".join(run_demo(out, epochs, device, progress=not quiet).lines()))


@main.command("train-judge")
@click.option("--dataset", required=True, help="A natural-image dataset `train` takes (cifar10, folder:PATH, ...).")
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), help=f"Epochs. [default: {STANDING_JUDGE['epochs']}]")
@click.option("--train-size", type=click.IntRange(10), help="Train on a stratified subset of this many images "
              "(fewer: faster, a weaker judge). [default: the whole training split]")
@click.option("--data-root", help="Folder of file-based datasets.")
@device_option
@click.option("--out", type=OutPath(file_okay=False), help="Run folder, to pass as --judge RUN. [default: the "
              "dataset's standing judge, used by default: $PERCEPTREG_JUDGES/<dataset>, else "
              "~/.cache/perceptreg/judges/<dataset>]")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
def train_judge(dataset, epochs, train_size, data_root, device, out, quiet):
    """Train the independent CNN judge of a natural-image dataset: a VGG-style classifier
    (another architecture and seed than the svhn net) on the real training images only.
    Attacks, attach and edits on that dataset then read P(x) with it by default. An
    interrupted judge resumes; a finished one is reported, not retrained.

    Example: perceptreg train-judge --dataset cifar10 --train-size 20000
    """
    from perceptreg.views.train_run import train_judge as run_train_judge

    result = run_train_judge(dataset, out, progress=not quiet, epochs=epochs, train_size=train_size,
                             data_root=data_root, device=device)
    click.echo("\n".join(result.lines()))
