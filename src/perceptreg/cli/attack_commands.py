"""Commands that attack a run's model and edit along latent directions: attack,
evaluate-attack, interpolate."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import click
import torch

from perceptreg import figures, runs
from perceptreg.adversarial.attacks import (
    DEFAULT_EPS,
    DEFAULT_STEPS,
    NORMS,
    AttackSettings,
    FromNoise,
)
from perceptreg.adversarial.detection import roc_curve
from perceptreg.adversarial.evaluation import adaptive_table, attack_table, evaluate_run, noise_to_target
from perceptreg.adversarial.judges import KNNJudge
from perceptreg.cli.app import (
    OutPath,
    device_option,
    layer_option,
    main,
    plain_warnings,
    run_argument,
)
from perceptreg.core.checkpoint import write_json
from perceptreg.core.devices import check_memory
from perceptreg.edits import latent
from perceptreg.figures import plots
from perceptreg.measures import format_rate
from perceptreg.sweeps.sweep import parse_list

# --- attacks -----------------------------------------------------------------------------------

def attack_options(command=None, *, seed_flag: str = "--seed"):
    """The PGD settings every attack command shares; they reach it as ``settings``.
    ``seed_flag``: the random start's seed under another name, where --seed means training."""
    if command is None:
        return functools.partial(attack_options, seed_flag=seed_flag)
    options = [
        click.option("--eps", default=DEFAULT_EPS, show_default=True, type=float,
                     help="Radius of the threat model (paper: 0.2 on MNIST, 0.03 on CelebA)."),
        click.option("--steps", default=DEFAULT_STEPS, show_default=True, type=click.IntRange(min=1),
                     help="PGD iterations (paper: 100)."),
        click.option("--norm", default="linf", show_default=True, type=click.Choice(NORMS), help="Threat model."),
        click.option("--alpha", type=float, help="Step size. [default: 2.5 * eps / steps]"),
        click.option(seed_flag, "attack_seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1),
                     help="Seed of the random start."),
        device_option,
    ]

    @functools.wraps(command)  # keeps the options already declared on ``command``
    def wrapped(eps, steps, norm, alpha, attack_seed, **kwargs):
        return command(settings=AttackSettings(eps, steps, norm, alpha, attack_seed), **kwargs)
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


target_option = click.option("--target", type=int, help="Targeted attack toward this class (default: untargeted).")


@main.command()
@run_argument
@attack_options
@target_option
@click.option("--n", default=10, show_default=True, type=click.IntRange(min=1),
              help="Images shown (spread over the classes); with --from-noise, per class.")
@click.option("--pool", default=200, show_default=True, type=click.IntRange(min=1),
              help="Test images attacked to find failure cases among.")
@click.option("--from-noise", is_flag=True, help="Start from uniform noise, targeted toward each class.")
@click.option("--out", type=OutPath(dir_okay=False),
              help=f"PNG to write. [default: RUN/{runs.ATTACK} or RUN/{runs.ATTACK_FROM_NOISE}]")
@layer_option
def attack(run, settings, device, target, n, pool, from_noise, out, layer):
    """Attack H = C(F(x)) with PGD and show what the model perceives: rows x, x_adv, P(x),
    P(x_adv), then the failure cases (attacks that fooled H while a 3-NN judge still reads
    P(x_adv) as the true class).

    Example: perceptreg attack runs/demo --eps 0.2 --steps 100
    """
    if from_noise:
        if target is not None:
            raise click.UsageError("--from-noise attacks toward every class in turn; leave out --target")
        model, (train_data, test_data) = run.model(device, layer), run.data()
        # the noise, the attacked images, their gradients and perceptions: four float copies
        check_memory("n", n, 4 * 4 * n * model.num_classes * math.prod(model.input_shape),
                     f"{n * model.num_classes} noise images ({n} per class)")
        classes = torch.arange(model.num_classes).repeat_interleave(n).to(device)
        noise, adversarial = settings.build(model, FromNoise).generate(classes, model.input_shape, device)
        picture = figures.noise_grid(model, noise, adversarial, test_data.classes, columns=model.num_classes * min(n, 2))
        judge = KNNJudge(train_data, device=device)
        reached = noise_to_target(model, adversarial, classes, judge)
        click.echo(f"noise -> target on {len(classes)} noise images: H reads the target on {format_rate(reached['H'])}, "
                   f"the {judge.name} judge reads P(x_adv) as the target on {format_rate(reached[judge.name])}")
        write_json(run.path / runs.NOISE_METRICS, {"settings": {**dataclasses.asdict(settings), "images_per_class": n},
                                              "noise_images": len(classes), "judge": judge.name, "reached": reached})
        click.echo(f"noise attacked toward each class, with the perceptions: "
                   f"{figures.save_png(picture, out or run.path / runs.ATTACK_FROM_NOISE)}")
        return
    with plain_warnings():
        evaluation = evaluate_run(run, settings, target=target, images=pool, device=device, layer=layer)
    classes = run.data()[1].classes
    failures = evaluation.failures()
    shown = torch.arange(min(n, len(evaluation.labels)))
    panels = [figures.attack_grid(evaluation, shown, classes, f"PGD {settings.norm} eps={settings.eps}, "
                                  f"{settings.steps} steps: x, x_adv, P(x), P(x_adv) of {len(shown)} test images")]
    if len(failures):
        panels.append(figures.attack_grid(
            evaluation, failures[:n], classes, f"Failure cases: H fooled, but the 3-NN judge reads P(x_adv) as the "
            f"true class ({len(failures)} of {int(evaluation.success.sum())} successful attacks on "
            f"{len(evaluation.labels)} images)", min_width=panels[0].picture.size[0]))
    path = figures.save_png(figures.stack_panels(panels), out or run.path / runs.ATTACK)
    click.echo(f"attack success {format_rate(evaluation.summary['attack_success_rate'])} on {len(evaluation.labels)} test "
               f"images, {min(n, len(failures))} failure cases shown: {path}")


@main.command("evaluate-attack")
@run_argument
@attack_options
@target_option
@click.option("--images", "n_images", type=click.IntRange(min=1), help="Attack only this many test images (spread over classes). [default: all]")
@click.option("--judge", "judge_runs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A run folder whose model judges the images too (repeatable); a 3-NN pixel judge always does.")
@click.option("--compare", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A second run (e.g. --mode post-hoc) attacked on the same images, reported beside RUN.")
@click.option("--adaptive",
              help="Also run the adaptive PGD, which keeps beta * ||x_adv - P(x_adv)||^2 low, for these "
                   "comma-separated betas (e.g. 0,0.1,1,10): the detector against an attacker who knows it.")
@layer_option
def evaluate_attack(run, settings, device, target, n_images, judge_runs, compare, adaptive, layer):
    """Measure an attack: success, what independent judges read in x_adv and P(x_adv), and
    how well ||x - P(x)||^2 detects adversarial inputs (ROC AUC), beside a model-free pixel
    statistic and the same perturbations shuffled. Writes RUN/attack_metrics.json and
    RUN/attack_roc.png.

    Example: perceptreg evaluate-attack runs/demo --adaptive 0,0.1,1,10 --compare runs/mnist5k-lam0.01-post-hoc
    """
    betas = parse_list(adaptive, float, "adaptive", "0,0.1,1,10") if adaptive else ()
    summaries = {}
    judges = [runs.open_run(path) for path in judge_runs]
    for current in [run] + ([runs.open_run(compare)] if compare else []):
        with plain_warnings():
            evaluation = evaluate_run(current, settings, target=target, images=n_images,
                                      judge_runs=judges, device=device, layer=layer, adaptive=betas)
        summaries[str(current.path)] = evaluation.summary
        fpr, tpr = roc_curve(*(scores.cpu() for scores in evaluation.detector_scores()))
        plots.roc_figure(fpr, tpr, evaluation.summary["detector"]["auroc"],
                         f"||x - P(x)||^2 detector, {current.path.name}", current.path / runs.ATTACK_ROC)
    written = {"attack": "PGD", **dataclasses.asdict(settings), "alpha": settings.step_size, "target": target,
               "images": n_images or "all"}
    write_json(run.path / runs.ATTACK_METRICS, {"settings": written, "runs": summaries})
    click.echo(attack_table(summaries))
    for name, summary in summaries.items():
        if "adaptive" in summary:
            click.echo(f"\nadaptive PGD on {name} (ascends the attack's loss - beta * ||x_adv - P(x_adv)||^2):\n"
                       + adaptive_table(summary["adaptive"]))
    click.echo(f"written: {run.path / runs.ATTACK_METRICS}, ROC curve: "
               + ", ".join(str(Path(r) / runs.ATTACK_ROC) for r in summaries))


# --- latent directions ----------------------------------------------------------------------------

@main.command()
@run_argument
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
@attack_options
@click.option("--out", type=OutPath(file_okay=False), help="Folder for the outputs. [default: RUN]")
def interpolate(run, target, source, alphas, n_images, from_file, fit_images, apply_direction,
                save_direction, compare, settings, device, out):
    """Edit images toward a class along latent directions found by a targeted attack:
    D(F(x) + a * dz), dz = F(x_adv) - F(x), per image and averaged over training images.
    Writes the grids, the flip curves (how often H, C and a 3-NN judge read the target, by
    alpha), the change maps and interpolation_metrics.json.

    Example: perceptreg interpolate runs/demo --target 8 --alphas 0:2:0.25
    """
    edit = latent.EditSettings(target, source, latent.parse_alphas(alphas), n_images, fit_images,
                               from_file, apply_direction)
    out = out or run.path
    results, curves = {}, {}
    for current in [run] + ([runs.open_run(compare)] if compare else []):
        study, region = latent.study_run(current, edit, settings, device)
        results[str(current.path)] = study.summary
        suffix = "" if current == run else " (compare)"
        for kind, entry in study.summary["directions"].items():
            for reader, values in entry["flip_curve"].items():
                curves.setdefault(f"{kind} direction", {})[f"{reader}{suffix}"] = values
        if current == run:
            figures.edit_study_figures(study, region, run.data()[1].classes, out)
            if not apply_direction:
                meta = {"run": str(run.path), **dataclasses.asdict(settings)}
                name = f"direction-{'any' if source is None else source}-to-{target}"
                saved = latent.save_direction(dataclasses.replace(study.direction, meta=meta),
                                              save_direction or run.path / name, run.model())
                click.echo(f"mean direction saved: {saved}")
    plots.line_plot(edit.alphas, curves, out / runs.INTERPOLATION_FLIP, xlabel="alpha",
                    ylabel=f"fraction read as class {target}", ylim=(-0.02, 1.02))
    write_json(out / runs.INTERPOLATION_METRICS, {"runs": results})
    for name, summary in results.items():
        mean = summary["directions"]["mean"]
        judge = next(k for k in mean["flip_curve"] if k not in ("H(image)", "C(latent)"))

        def flipped(reader: str, at: int) -> str:  # the fraction with its 95 % interval
            low, high = mean["flip_interval"][reader][at]
            return format_rate({"rate": mean["flip_curve"][reader][at], "low": low, "high": high})
        click.echo(f"{Path(name).name}: mean direction, flip to {target} at a={edit.alphas[-1]:g}: "
                   f"H {flipped('H(image)', -1)}, {judge} {flipped(judge, -1)} (at a={edit.alphas[0]:g}: "
                   f"{flipped('H(image)', 0)}, {flipped(judge, 0)}; {summary['images']} images)")
    click.echo(f"written to {out}: interpolation_per-image.png, interpolation_mean.png, "
               f"{runs.INTERPOLATION_FLIP}, {runs.INTERPOLATION_CHANGE}, {runs.INTERPOLATION_METRICS}")


