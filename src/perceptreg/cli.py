"""The `perceptreg` command: a thin layer over the library (train, perceive, demo, attacks)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from pathlib import Path

import click
import torch

from perceptreg import data as datasets, figures, latent, metrics, models, report, sweep as sweeps
from perceptreg.attacks import NORMS, PGD, FromNoise
from perceptreg.checkpoint import write_json
from perceptreg.errors import PerceptregError
from perceptreg.train import MODES, TrainConfig, decoder_collapsed, load_config, load_data, load_model, train


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


@contextlib.contextmanager
def plain_warnings():
    """The library's warnings (a collapsed decoder, ...) as one "Warning: ..." line each,
    not Python's file:line format."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for warning in caught:
                click.echo(f"Warning: {warning.message}", err=True)


def _train_and_report(config: TrainConfig, out: Path, resume: bool, quiet: bool) -> None:
    """Train, then print the numbers and draw the perception grid into the run folder."""
    began = time.perf_counter()
    with plain_warnings():
        model, history, run_dir = train(config, out, resume=resume, progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports for all
        return
    test = load_data(run_dir)[1]
    grid = figures.save_png(figures.perception_grid(model, test, n=2 * model.num_classes,
                                                    device=config.device),
                            run_dir / "perception.png")
    last = history[-1]
    click.echo(f"test accuracy {last['test_accuracy']:.2%}, test reconstruction MSE per pixel "
               f"{last['test_recon_mse']:.4f} ({len(history)} epochs, "
               f"{time.perf_counter() - began:.1f}s)")
    click.echo(f"run folder: {run_dir}\nperception grid: {grid}")


@main.command("train")
@click.option("--dataset", help="Training data: mnist5k, mnist, svhn, mnist-strips, celeba:ATTRIBUTE "
                                 "or folder:PATH. [default: mnist5k]")
@click.option("--arch", type=click.Choice(list(models.ARCHITECTURES)),
              help="Paper architecture. [default: the one for the dataset's images]")
@click.option("--lam", type=float, help="Weight of the reconstruction term. [default: 0.01]")
@click.option("--reduction", type=click.Choice(["sum", "mean"]),
              help="Squared error summed per image (paper) or averaged per pixel. [default: sum]")
@click.option("--mode", type=click.Choice(MODES),
              help="joint: F, C, D together; post-hoc: F, C, then D on frozen F. [default: joint]")
@click.option("--epochs", type=int, help="Epochs (of F and C, in post-hoc mode). [default: 20]")
@click.option("--decoder-epochs", type=int, help="Post-hoc: epochs of the decoder phase. [default: --epochs]")
@click.option("--batch-size", type=int, help="Batch size. [default: 64]")
@click.option("--decoder-batch-size", type=int, help="Post-hoc: batch size of the decoder phase. [default: --batch-size]")
@click.option("--lr", type=float, help="Adam learning rate. [default: 0.001]")
@click.option("--lr-drop-epoch", type=int, help="Multiply the lr by 0.1 from this epoch on (CelebA: 20).")
@click.option("--seed", type=int, help="Seed of init and shuffling (the split is fixed). [default: 0]")
@click.option("--train-size", type=int, help="Train on a stratified subset of this many images.")
@click.option("--steps-per-epoch", type=int, help="Cap each epoch at this many batches (very large datasets).")
@click.option("--device", help="cpu, or cuda (bf16 autocast). [default: cpu]")
@click.option("--data-root", help="Folder of file-based datasets (mnist is downloaded there).")
@click.option("--classifier-from", type=click.Path(exists=True, file_okay=False),
              help="Post-hoc: a new decoder for the frozen F and C of this run (its dataset and architecture).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder. [default: runs/<dataset>-lam<lam>-<mode>]")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option("--compile", "compile_step", is_flag=True, default=None,
              help="torch.compile the training step (pays on GPUs and long runs; ~30 s to start).")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
def train_command(out, resume, quiet, compile_step, **options):
    """Train a perceptually regularized model into a run folder.

    Example: perceptreg train --lam 1e-2 --epochs 20 --out runs/mnist-lam1e-2
    """
    given = {k: v for k, v in {**options, "compile": compile_step}.items() if v is not None}
    if resume:
        if out is None:
            raise click.UsageError("--resume needs --out RUN, the run folder to continue")
        config = TrainConfig.from_dict({**load_config(out).to_dict(), **given})
    elif out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise click.UsageError("under torchrun, give --out: every process must write to the same run folder")
    else:
        if "classifier_from" in given:  # the decoder learns on the data its classifier learnt
            source = load_config(given["classifier_from"])
            given = {"dataset": source.dataset, "arch": source.arch, "data_root": source.data_root,
                     "mode": "post-hoc", **given}
        given.setdefault("arch", datasets.default_arch(given.get("dataset", "mnist5k")))
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
    model = load_model(run, device=device)
    test = load_data(run)[1]
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
    (4000 train / 1000 test), draw its perception grid and write its HTML report.
    About 20 s on 2 CPU cores.

    Example: perceptreg demo
    """
    config = TrainConfig(dataset="mnist5k", arch="mnist", lam=1e-2, epochs=epochs, device=device)
    run_dir = fresh_run_dir(out)
    _train_and_report(config, run_dir, resume=False, quiet=quiet)
    click.echo(f"report: {report.write_report(run_dir)}")


# --- attacks -----------------------------------------------------------------------------------

def attack_options(command):
    """The PGD settings shared by `attack` and `evaluate-attack`."""
    options = [
        click.option("--eps", default=0.2, show_default=True, type=float,
                     help="Radius of the threat model (paper: 0.2 on MNIST, 0.03 on CelebA)."),
        click.option("--steps", default=100, show_default=True, type=click.IntRange(min=1),
                     help="PGD iterations (paper: 100)."),
        click.option("--norm", default="linf", show_default=True, type=click.Choice(NORMS),
                     help="Threat model."),
        click.option("--alpha", type=float, help="Step size. [default: 2.5 * eps / steps]"),
        click.option("--target", type=int, help="Targeted attack toward this class (default: untargeted)."),
        click.option("--seed", default=0, show_default=True, help="Seed of the random start."),
        click.option("--device", default="cpu", show_default=True, help="cpu or cuda."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _attack_setup(run: Path, device: str, eps: float, steps: int, norm: str, alpha, seed: int):
    model = load_model(run, device=device)
    if decoder_collapsed(run):
        click.echo(f"Warning: {run} has a collapsed decoder: its perceptions P(x) show nothing "
                   f"about the inputs; the figures render, but read them as such", err=True)
    train_data, test_data = load_data(run)
    return model, train_data, test_data, PGD(model, eps=eps, alpha=alpha, steps=steps, norm=norm, seed=seed)


def _model_judge(judge_run: Path, attacked_run: Path, device: str) -> metrics.ModelJudge:
    judged_on, trained_on = load_config(attacked_run).dataset, load_config(judge_run).dataset
    if judged_on != trained_on:
        click.echo(f"Warning: the judge {judge_run} was trained on {trained_on!r}, the images come "
                   f"from the test set of {judged_on!r}: its training data may hold some of them", err=True)
    return metrics.ModelJudge(load_model(judge_run, device=device), f"model {judge_run.name}")


def _check_target(target: int, model) -> None:
    if not 0 <= target < model.num_classes:
        raise PerceptregError(f"--target {target} is outside the model's classes 0..{model.num_classes - 1}")


def _targets_for(target, data: datasets.ImageDataset, model) -> torch.Tensor | None:
    if target is None:
        return None
    _check_target(target, model)
    return torch.full((len(data),), target, dtype=torch.long)


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@attack_options
@click.option("--n", default=10, show_default=True, type=click.IntRange(min=1),
              help="Images shown (spread over the classes); with --from-noise, per class.")
@click.option("--pool", default=200, show_default=True, type=click.IntRange(min=1),
              help="Test images attacked to find failure cases among.")
@click.option("--from-noise", is_flag=True, help="Start from uniform noise, targeted toward each class.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG to write. [default: RUN/attack.png or RUN/attack_from_noise.png]")
def attack(run, eps, steps, norm, alpha, target, seed, device, n, pool, from_noise, out):
    """Attack H = C(F(x)) with PGD and show what the model perceives: rows x, x_adv, P(x),
    P(x_adv), then the failure cases (attacks that fooled H while a 3-NN judge still reads
    P(x_adv) as the true class).

    Example: perceptreg attack runs/demo --eps 0.2 --steps 100
    """
    model, train_data, test_data, pgd = _attack_setup(run, device, eps, steps, norm, alpha, seed)
    if from_noise:
        classes = torch.arange(model.num_classes).repeat_interleave(n)
        noise, adversarial = FromNoise(model, eps=eps, alpha=alpha, steps=steps, norm=norm, seed=seed
                                       ).generate(classes.to(device), model.input_shape, device)
        picture = figures.noise_grid(model, noise, adversarial, test_data.classes, columns=model.num_classes * min(n, 2))
        path = figures.save_png(picture, out or run / "attack_from_noise.png")
        click.echo(f"noise attacked toward each class, with the perceptions: {path}")
        return
    pool_data = test_data.subset(figures.spread_over_classes(test_data.labels, min(pool, len(test_data))))
    evaluation = metrics.evaluate_attack(model, pgd, pool_data, [metrics.KNNJudge(train_data)],
                                         targets=_targets_for(target, pool_data, model), device=device)
    shown = torch.arange(min(n, len(pool_data)))
    judge = next(iter(evaluation.judge_readings.values()))
    failures = (evaluation.success & (judge["P(x_adv)"] == evaluation.labels)).nonzero().squeeze(1)[:n]
    panels = [(f"PGD {norm} eps={eps}, {steps} steps: rows x, x_adv, P(x), P(x_adv); H's label and confidence",
               figures.attack_grid(evaluation, shown, test_data.classes))]
    if len(failures):
        panels.append((f"Failure cases: H fooled, but the 3-NN judge reads P(x_adv) as the true class "
                       f"({int((evaluation.success & (judge['P(x_adv)'] == evaluation.labels)).sum())} "
                       f"of {int(evaluation.success.sum())} successful attacks on {len(pool_data)} images)",
                       figures.attack_grid(evaluation, failures, test_data.classes)))
    path = figures.save_png(figures.stack_panels(panels), out or run / "attack.png")
    s = evaluation.summary
    click.echo(f"attack success {s['attack_success_rate']:.1%} on {len(pool_data)} test images, "
               f"{len(failures)} failure cases shown: {path}")


@main.command("evaluate-attack")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@attack_options
@click.option("--images", "n_images", type=click.IntRange(min=1), help="Attack only this many test images (spread over classes). [default: all]")
@click.option("--judge", "judge_runs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A run folder whose model judges the images too (repeatable); a 3-NN pixel judge always does.")
@click.option("--compare", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A second run (e.g. --mode post-hoc) attacked on the same images, reported beside RUN.")
def evaluate_attack(run, eps, steps, norm, alpha, target, seed, device, n_images, judge_runs, compare):
    """Measure an attack: success, what independent judges read in x_adv and P(x_adv), and
    how well ||x - P(x)||^2 detects adversarial inputs (ROC AUC). Writes
    RUN/attack_metrics.json and RUN/attack_roc.png.

    Example: perceptreg evaluate-attack runs/demo --compare runs/mnist5k-lam0.01-post-hoc
    """
    runs = [run] + ([compare] if compare else [])
    summaries = {}
    for current in runs:
        model, train_data, test_data, pgd = _attack_setup(current, device, eps, steps, norm, alpha, seed)
        if n_images:
            test_data = test_data.subset(figures.spread_over_classes(test_data.labels, min(n_images, len(test_data))))
        judges = [metrics.KNNJudge(train_data, device=device)]
        judges += [_model_judge(j, current, device) for j in judge_runs]
        evaluation = metrics.evaluate_attack(model, pgd, test_data, judges, device=device,
                                             targets=_targets_for(target, test_data, model))
        summaries[str(current)] = evaluation.summary
        scores_clean = metrics.reconstruction_scores(evaluation.images, evaluation.perceptions).cpu()
        scores_adv = metrics.reconstruction_scores(evaluation.adversarial, evaluation.adversarial_perceptions)[evaluation.success].cpu()
        fpr, tpr = metrics.roc_curve(scores_clean, scores_adv)
        figures.roc_figure(fpr, tpr, evaluation.summary["detector"]["roc_auc"],
                           f"||x - P(x)||^2 detector, {current.name}", current / "attack_roc.png")
    settings = {"attack": "PGD", "eps": eps, "steps": steps, "norm": norm, "alpha": pgd.alpha,
                "target": target, "seed": seed, "images": n_images or "all"}
    write_json(run / "attack_metrics.json", {"settings": settings, "runs": summaries})
    click.echo(metrics.attack_table(summaries))
    click.echo(f"written: {run / 'attack_metrics.json'}, ROC curve: "
               + ", ".join(str(Path(r) / "attack_roc.png") for r in runs))


# --- latent directions ----------------------------------------------------------------------------

GRID_ROWS = 20


def _edit_images(test_data, train_data, target, source, n_images, fit_images, from_file, model):
    """The images to edit and the images the mean direction is fitted on (training images,
    so the mean direction is tested on images it has not seen)."""
    def pick(data, n):
        keep = data.labels != target if source is None else data.labels == source
        chosen = keep.nonzero().squeeze(1)
        if len(chosen) == 0:
            raise PerceptregError(f"no images of class {source} in {data.name}")
        return chosen[figures.spread_over_classes(data.labels[chosen], min(n, len(chosen)))]

    if from_file:
        images = datasets.load_image_files(from_file, model.input_shape)
    else:
        images = test_data.images[pick(test_data, n_images)]
    return datasets.to_float(images), datasets.to_float(train_data.images[pick(train_data, fit_images)])


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--target", required=True, type=int, help="The class to edit toward.")
@click.option("--source", type=int, help="Edit (and fit the mean direction on) images of this class only. [default: every other class]")
@click.option("--alphas", default="0:2:0.25", show_default=True, help="start:stop:step, or a comma-separated list.")
@click.option("--images", "n_images", default=8, show_default=True, type=click.IntRange(min=1),
              help="Test images to edit (the grids show the first 20).")
@click.option("--from-file", type=click.Path(exists=True, path_type=Path), help="Edit this image file (or folder of images) instead.")
@click.option("--fit-images", default=100, show_default=True, type=click.IntRange(min=1),
              help="Training images the mean direction is averaged over.")
@click.option("--apply-direction", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this saved mean direction (.safetensors) instead of fitting one.")
@click.option("--save-direction", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the mean direction here. [default: RUN/direction-<source>-to-<target>.safetensors]")
@click.option("--compare", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A second run (e.g. post-hoc) edited on the same images, its curves dashed.")
@click.option("--eps", default=0.2, show_default=True, type=float, help="Radius of the targeted attack.")
@click.option("--steps", default=100, show_default=True, type=click.IntRange(min=1), help="Its PGD iterations.")
@click.option("--seed", default=0, show_default=True, help="Seed of the attack's random start.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder for the outputs. [default: RUN]")
def interpolate(run, target, source, alphas, n_images, from_file, fit_images, apply_direction,
                save_direction, compare, eps, steps, seed, device, out):
    """Edit images toward a class along latent directions found by a targeted attack:
    D(F(x) + a * dz), dz = F(x_adv) - F(x), per image and averaged over training images.
    Writes the grids, the flip curves (how often H, C and a 3-NN judge read the target, by
    alpha), the change maps and interpolation_metrics.json.

    Example: perceptreg interpolate runs/demo --target 8 --alphas 0:2:0.25
    """
    alphas = latent.parse_alphas(alphas)
    out = out or run
    results, curves = {}, {}
    for current in [run] + ([compare] if compare else []):
        model = load_model(current, device=device)
        train_data, test_data = load_data(current)
        _check_target(target, model)
        images, fit = _edit_images(test_data, train_data, target, source, n_images, fit_images, from_file, model)
        direction = latent.load_direction(apply_direction, model) if apply_direction else None
        region = latent.target_region(datasets.to_float(train_data.images[train_data.labels == target]))
        attack = PGD(model, eps=eps, steps=steps, seed=seed)
        study = latent.study_edits(model, images.to(device), target, attack, alphas,
                                   [metrics.KNNJudge(train_data, device=device)], region.to(device),
                                   direction, fit.to(device), source)
        results[str(current)] = study.summary
        suffix = "" if current == run else " (compare)"
        for kind, entry in study.summary["directions"].items():
            for reader, values in entry["flip_curve"].items():
                curves.setdefault(f"{kind} direction", {})[f"{reader}{suffix}"] = values
        if current == run:
            rows = slice(0, GRID_ROWS)  # the measures use every image; the grids show the first
            for kind in study.edited:
                figures.save_png(figures.interpolation_grid(
                    study.edited[kind][rows], study.readings[kind]["H(image)"][rows],
                    study.confidence[kind][rows], test_data.classes, alphas), out / f"interpolation_{kind}.png")
            maps = {f"{kind}: |change| a={alphas[0]:g} to {alphas[-1]:g}":
                    latent.locality(study.edited[kind], region.to(device))["change_map"] for kind in study.edited}
            figures.heatmaps(maps, out / "interpolation_change.png", outline=region)
            if not apply_direction:
                meta = {"run": str(run), "eps": eps, "steps": steps, "seed": seed}
                name = f"direction-{'any' if source is None else source}-to-{target}"
                saved = latent.save_direction(dataclasses.replace(study.direction, meta=meta),
                                              save_direction or run / name, model)
                click.echo(f"mean direction saved: {saved}")
    figures.line_plot(alphas, curves, out / "interpolation_flip.png", xlabel="alpha",
                      ylabel=f"fraction read as class {target}", ylim=(-0.02, 1.02))
    write_json(out / "interpolation_metrics.json", {"runs": results})
    for name, summary in results.items():
        mean_curve = summary["directions"]["mean"]["flip_curve"]
        judge = next(k for k in mean_curve if k not in ("H(image)", "C(latent)"))
        click.echo(f"{Path(name).name}: mean direction, flip to {target} at a={alphas[-1]:g}: "
                   f"H {mean_curve['H(image)'][-1]:.1%}, {judge} {mean_curve[judge][-1]:.1%} "
                   f"(at a={alphas[0]:g}: {mean_curve['H(image)'][0]:.1%}, {mean_curve[judge][0]:.1%})")
    click.echo(f"written to {out}: interpolation_per-image.png, interpolation_mean.png, "
               f"interpolation_flip.png, interpolation_change.png, interpolation_metrics.json")


# --- report and explorer ----------------------------------------------------------------------

@main.command("report")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="HTML file. [default: RUN/report.html]")
def report_command(run, out):
    """One self-contained HTML page of the run: config, training curves, perception,
    attacks, latent edits, sweep; what the run lacks is named with the command to make it.

    Example: perceptreg report runs/demo
    """
    click.echo(f"report: {report.write_report(run, out)}")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the model to the network.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
def explore(run, port, host, device):
    """Serve a web page to explore the run's model: gallery of perceptions, live attacks,
    a slider along a latent direction, and your own drawings or uploads.

    Example: perceptreg explore runs/demo --port 8765
    """
    import uvicorn

    from perceptreg.explorer import create_app

    if host not in LOOPBACK:
        click.echo(f"Warning: --host {host} serves the explorer beyond this machine; it has no "
                   f"authentication", err=True)
    app = create_app(run, device=device)
    click.echo(f"explorer of {run} on http://{host}:{port} (Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


# --- the lambda sweep ------------------------------------------------------------------------------

@main.command()
@click.option("--dataset", default="mnist-strips", show_default=True, help="Any dataset `train` takes.")
@click.option("--lams", default="1e-4,1e-2,1,1e2", show_default=True, help="Lambdas, comma-separated.")
@click.option("--seeds", default="0,1", show_default=True, help="Seeds, comma-separated (2+ give intervals).")
@click.option("--post-hoc/--no-post-hoc", default=True, show_default=True, help="Add the post-hoc decoder baseline.")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1), help="Epochs per model.")
@click.option("--train-size", type=click.IntRange(min=10), help="Train on a stratified subset of this many images.")
@click.option("--quick", is_flag=True, help="A smoke run: 400 training images, 1 epoch, seed 0.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--data-root", help="Folder of file-based datasets.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Sweep folder. [default: runs/sweep-<dataset>]")
def sweep(dataset, lams, seeds, post_hoc, epochs, train_size, quick, device, data_root, out):
    """Train one model per lambda and seed (and the post-hoc baseline), then measure what
    each keeps: accuracy, reconstruction, error maps with their centre-to-edge ratio, and
    linear probes on frozen z. Resumable model by model.

    Example: perceptreg sweep --dataset mnist-strips --lams 1e-4,1e-2,1,1e2
    """
    try:
        seed_list = tuple(int(s) for s in seeds.split(","))
    except ValueError:
        raise PerceptregError(f"--seeds {seeds!r}: give integers separated by commas, e.g. 0,1") from None
    if quick:
        train_size, epochs, seed_list = 400, 1, (0,)
    config = sweeps.SweepConfig(dataset=dataset, lams=sweeps.parse_lams(lams), seeds=seed_list, post_hoc=post_hoc,
                                epochs=epochs, train_size=train_size, device=device, data_root=data_root)
    out = out or Path("runs") / f"sweep-{dataset.replace(':', '-').replace('/', '-')}"
    began = time.perf_counter()
    with plain_warnings():
        summary = sweeps.run_sweep(config, out)
    click.echo(sweeps.sweep_table(summary))
    click.echo(f"{len(config.variants())} models in {time.perf_counter() - began:.0f}s; written to {out}: "
               f"sweep.json, sweep.md, sweep_perception.png, sweep_attention.png, sweep_probes.png")


@main.command()
@click.option("--dataset", required=True, help="Any dataset `train` takes (e.g. celeba:Eyeglasses).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@click.option("--data-root", help="Folder of file-based datasets.")
def prepare(dataset, out, data_root):
    """Write a dataset once as memory-mapped .npy files, so training reads it from disk
    batch by batch with a small resident set: then train with --dataset memmap:OUT.

    Example: perceptreg prepare --dataset celeba:Eyeglasses --out data/celeba-eyeglasses
    """
    shape = models.INPUT_SHAPES.get(datasets.default_arch(dataset))
    train_data, test_data = datasets.load_dataset(dataset, data_root, shape)
    path = datasets.write_memmap(out, train_data, test_data)
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    click.echo(f"{len(train_data)} + {len(test_data)} images, {size:.1f} MiB: {path}; "
               f"train with --dataset memmap:{path}")
