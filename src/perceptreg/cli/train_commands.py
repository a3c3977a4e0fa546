"""Commands that train: train, demo, sweep, and prepare (datasets for training), and perceive.

As in every command module, the top imports only what the options show (light modules);
what a command runs is imported in its body, so --help does not import torch.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import click

from perceptreg import runs
from perceptreg.adversarial.defaults import STANDING_JUDGE
from perceptreg.cli.app import (
    OutPath,
    defaults_of,
    device_option,
    fresh_run_dir,
    layer_option,
    main,
    run_argument,
)
from perceptreg.core.config import INPUT_SHAPES, MAX_EPOCHS, MODES, TrainConfig
from perceptreg.data.registry import help_text
from perceptreg.sweeps.config import ENGINES, SweepConfig


def _train_and_report(config: TrainConfig, out: Path, resume: bool, quiet: bool) -> None:
    """Train, then print the numbers and draw the perception grid into the run folder."""
    from perceptreg import figures
    from perceptreg.training.train import train

    began = time.perf_counter()
    model, history, run_dir = train(config, out, resume=resume, progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports for all
        return
    test = runs.open_run(run_dir).data()[1]
    grid = figures.save_png(figures.perception_grid(model, test, n=2 * model.num_classes,
                                                    device=config.device),
                            run_dir / runs.PERCEPTION)
    last = history[-1]
    click.echo(f"test accuracy {last['test_accuracy']:.2%}, test reconstruction MSE per pixel "
               f"{last['test_recon_mse']:.4f} ({len(history)} epochs, "
               f"{time.perf_counter() - began:.1f}s)")
    click.echo(f"run folder: {run_dir}\nperception grid: {grid}")


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
def train_command(out, resume, quiet, compile_step, **options):
    """Train a perceptually regularized model into a run folder.

    Example: perceptreg train --lam 1e-2 --epochs 20 --out runs/mnist-lam1e-2
    """
    from perceptreg.data.registry import training_defaults

    given = {k: v for k, v in {**options, "compile": compile_step}.items() if v is not None}
    if resume and out is not None and runs.kind_of(out) is None:  # killed before its config.json was written
        click.echo(f"Warning: {out} holds no run yet (stopped before its config.json was written): it starts over "
                   f"with the options given", err=True)
        resume = False
    if resume:
        if out is None:
            raise click.UsageError("--resume needs --out RUN, the run folder to continue")
        runs.check_writable(out, "trained", resume=True)  # another kind of run is refused before its config is read
        config = dataclasses.replace(runs.read_config(out), **given)  # errors name the flags given
    elif out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise click.UsageError("under torchrun, give --out: every process must write to the same run folder")
    else:
        if "classifier_from" in given:  # the decoder learns on the data its classifier learnt
            source = runs.read_config(given["classifier_from"])
            given = {"dataset": source.dataset, "arch": source.arch, "data_root": source.data_root,
                     "z_dim": source.z_dim, "mode": "post-hoc", **given}
        arch = "custom" if "model" in given else given.get("arch")
        defaults = training_defaults(given.get("dataset", DEFAULTS.dataset), arch)  # arch, schedule
        config = TrainConfig(**{**defaults, **given, "arch": defaults["arch"]})
        out = out or fresh_run_dir(Path("runs") / f"{config.dataset}-lam{config.lam:g}-{config.mode}")
    _train_and_report(config, out, resume, quiet)


@main.command()
@run_argument
@click.option("--n", default=20, show_default=True, help="Number of test images.")
@click.option("--out", type=OutPath(dir_okay=False),
              help=f"PNG to write. [default: RUN/{runs.PERCEPTION}; of a run of `attach`, perception_LAYER.png]")
@device_option
@layer_option
@click.option("--judge", "judge_run", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A run folder whose model reads P(x): its accuracy on x, how often it reads P(x) as the true "
                   "class, and the distance of x and P(x) in its features. [default: on natural images the "
                   "dataset's CNN judge once trained (perceptreg train-judge); else no reading]")
@click.option("--read-size", type=click.IntRange(min=1), help="Test images the judge reads (a stratified "
              "sample). [default: the whole test split]")
def perceive(run, n, out, device, layer, judge_run, read_size):
    """Grid of test images x beside the model's perception P(x) = D(F(x)), and an
    independent judge's reading of P(x), each number with its 95 % interval.

    Example: perceptreg perceive runs/demo --n 20
    """
    from perceptreg import data, figures
    from perceptreg.adversarial import judges

    model = run.model(device, layer)
    test = run.data()[1]
    judge = judges.reading_judge(run.config.dataset, test.image_shape, len(test.classes),
                                 runs.open_run(judge_run) if judge_run else None, device)
    named = runs.for_layer(runs.PERCEPTION, run.output_layer(layer))
    path = figures.save_png(figures.perception_grid(model, test, n=n, device=device), out or run.path / named)
    click.echo(f"perception grid of {min(n, len(test))} test images: {path}")
    if judge is not None:
        read = data.training_subset(test, read_size, seed=0)
        click.echo(judges.format_reading(judges.read_perception(model, read, judge, device=device), test.classes))


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
    from perceptreg.views import report

    config = TrainConfig(dataset="mnist5k", arch="mnist", lam=1e-2, epochs=epochs, device=device)
    run_dir = fresh_run_dir(out)
    _train_and_report(config, run_dir, resume=False, quiet=quiet)
    click.echo(f"report: {report.write_report(run_dir)}")


SWEEP = defaults_of(SweepConfig)


# --- the lambda sweep ------------------------------------------------------------------------------

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
@device_option
@click.option("--data-root", help="Folder of file-based datasets.")
@click.option("--judge", type=click.Path(exists=True, file_okay=False),
              help="A run folder whose model reads each member's P(x) (its accuracy on x, P(x) read as the true "
                   "class, the distance in its features). [default: on natural images the dataset's CNN judge "
                   "once trained (perceptreg train-judge); else no reading]")
@click.option("--out", type=OutPath(file_okay=False),
              help="Sweep folder. [default: runs/sweep-<dataset>]")
def sweep(dataset, lams, seeds, post_hoc, epochs, train_size, quick, workers, ensemble, engine, address, device,
          data_root, judge, out):
    """Train one model per lambda and seed (and the post-hoc baseline), then measure what
    each keeps: accuracy, reconstruction, error maps with their centre-to-edge ratio, and
    linear probes on frozen z. Resumable model by model.

    Example: perceptreg sweep --dataset mnist-strips --lams 1e-4,1e-3,1e-2,1e2
    """
    from perceptreg.sweeps import sweep as sweeps

    seed_list = sweeps.parse_list(seeds, int, "seeds", "0,1")
    if quick:
        train_size, epochs, seed_list = 400, 1, (0,)
    config = SweepConfig(dataset=dataset, lams=sweeps.parse_list(lams, float, "lams", "1e-4,1e-3,1e-2,1e2"), seeds=seed_list, post_hoc=post_hoc,
                                epochs=epochs, train_size=train_size, device=device, data_root=data_root,
                                workers=workers, ensemble=ensemble, engine=engine, address=address, judge=judge)
    out = out or Path("runs") / f"sweep-{dataset.replace(':', '-').replace('/', '-')}"
    began = time.perf_counter()
    summary = sweeps.run_sweep(config, out)
    click.echo(sweeps.sweep_table(summary))
    click.echo(f"{len(config.variants())} models in {time.perf_counter() - began:.0f}s; written to {out}: "
               f"sweep.json, sweep.md, sweep_perception.png, sweep_attention.png, sweep_probes.png")


@main.command()
@click.option("--dataset", required=True, help="Any dataset `train` takes (e.g. celeba:Eyeglasses).")
@click.option("--out", required=True, type=OutPath(file_okay=False), help="Folder to write.")
@click.option("--data-root", help="Folder of file-based datasets.")
def prepare(dataset, out, data_root):
    """Write a dataset once as memory-mapped .npy files, so training reads it from disk
    batch by batch with a small resident set: then train with --dataset memmap:OUT.

    Example: perceptreg prepare --dataset celeba:Eyeglasses --out data/celeba-eyeglasses
    """
    from perceptreg import data as datasets

    runs.check_writable(out, "dataset")  # before the dataset is loaded, which may take minutes
    train_data, test_data = datasets.load_dataset(dataset, data_root, datasets.image_shape_for(dataset))
    path = datasets.write_memmap(out, train_data, test_data)
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    click.echo(f"{len(train_data)} + {len(test_data)} images, {size:.1f} MiB: {path}; "
               f"train with --dataset memmap:{path}")


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
    from perceptreg.adversarial import judges
    from perceptreg.training.train import train

    given = {k: v for k, v in {"epochs": epochs, "train_size": train_size, "data_root": data_root,
                               "device": device}.items() if v is not None}
    config = judges.standing_judge_config(dataset, **given)
    out = out or judges.standing_judge_dir(dataset)
    judge, done = judges.judge_progress(Path(out))
    if judge is not None and done >= judge.config.total_epochs:
        accuracy = judge.metrics[-1]["test_accuracy"]
        click.echo(f"the judge in {out} is already trained ({done} epochs, test accuracy {accuracy:.2%})")
        return
    began = time.perf_counter()
    _, history, run_dir = train(config, out, resume=bool(done), progress=not quiet)
    click.echo(f"judge test accuracy {history[-1]['test_accuracy']:.2%} ({len(history)} epochs, "
               f"{time.perf_counter() - began:.0f}s): {run_dir}")
