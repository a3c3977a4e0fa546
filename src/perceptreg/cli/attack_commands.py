"""Commands that attack a run's model and edit along latent directions: attack,
evaluate-attack, interpolate."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import click

from perceptreg import runs
from perceptreg.adversarial.defaults import (
    DEFAULT_BETAS,
    DEFAULT_FPRS,
    DEFAULT_STEPS,
    JUDGE_CHECK_IMAGES,
    LOSSES,
    MAX_RESTARTS,
    MAX_STEPS,
    NOISE_SHOWN,
    NORMS,
    OURS,
    SCHEDULES,
)
from perceptreg.cli.app import (
    OutPath,
    device_option,
    layer_option,
    main,
    run_argument,
)
from perceptreg.data.registry import COLOUR_EPS, COLOUR_L2_EPS, GREY_EPS, GREY_L2_EPS

# --- attacks -----------------------------------------------------------------------------------

def attack_options(command=None, *, seed_flag: str = "--seed"):
    """The PGD settings every attack command shares; they reach it as ``settings``.
    ``seed_flag``: the random start's seed under another name, where --seed means training."""
    if command is None:
        return functools.partial(attack_options, seed_flag=seed_flag)
    options = [
        click.option("--eps", type=float,
                     help=f"Radius of the threat model. [default: the dataset's radius in --norm: L-inf {GREY_EPS:g} "
                          f"on MNIST digits, {COLOUR_EPS:g} on colour images (the paper's on MNIST and on CelebA); "
                          f"L2 {GREY_L2_EPS:g} on digits, {COLOUR_L2_EPS:g} on colour images (RobustBench's on "
                          "CIFAR-10)]"),
        click.option("--steps", default=DEFAULT_STEPS, show_default=True, type=click.IntRange(1, MAX_STEPS),
                     help="PGD iterations (paper: 100)."),
        click.option("--norm", default="linf", show_default=True, type=click.Choice(NORMS), help="Threat model."),
        click.option("--alpha", type=float, help="Step size. [default: 2.5 * eps / steps]"),
        click.option(seed_flag, "attack_seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1),
                     help="Seed of the random start."),
        click.option("--loss", default="ce", show_default=True, type=click.Choice(LOSSES),
                     help="What PGD ascends: cross-entropy (Madry), the C&W margin, or APGD's DLR."),
        click.option("--restarts", default=1, show_default=True, type=click.IntRange(1, MAX_RESTARTS),
                     help="Random starts; per image the best result is kept."),
        click.option("--schedule", default="constant", show_default=True, type=click.Choice(SCHEDULES),
                     help="Step sizes: alpha every step, or cosine from 2 alpha down to 0 (alpha on average)."),
        click.option("--best-iterate", is_flag=True, help="Keep per image the best iterate (largest margin), not the last."),
        device_option,
    ]

    @functools.wraps(command)  # keeps the options already declared on ``command``
    def wrapped(eps, steps, norm, alpha, attack_seed, loss, restarts, schedule, best_iterate, **kwargs):
        from perceptreg.adversarial.attacks import AttackSettings

        return command(settings=AttackSettings(eps, steps, norm, alpha, attack_seed, loss, restarts, schedule,
                                               best_iterate), **kwargs)
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


target_option = click.option("--target", type=int, help="Targeted attack toward this class (default: untargeted).")
judge_option = click.option("--judge", "judge_run", type=click.Path(exists=True, file_okay=False, path_type=Path),
                            help="A run folder whose model reads the images. [default: a 3-NN pixel judge on grey "
                                 "digits; on natural images the dataset's CNN judge (perceptreg train-judge)]")


@main.command()
@run_argument
@attack_options
@target_option
@click.option("--n", default=10, show_default=True, type=click.IntRange(min=1),
              help="Images shown (spread over the classes); with --from-noise, noise images attacked per class "
                   "(the grid shows the first 2 of each class).")
@click.option("--pool", default=200, show_default=True, type=click.IntRange(min=1),
              help="Test images attacked to find failure cases among.")
@click.option("--from-noise", is_flag=True, help="Start from uniform noise, targeted toward each class.")
@click.option("--out", type=OutPath(dir_okay=False),
              help=f"PNG to write. [default: RUN/{runs.ATTACK} or RUN/{runs.ATTACK_FROM_NOISE}; of an attach run "
                   f"named after the layer, e.g. {runs.for_layer(runs.ATTACK, 'fc1')}]")
@judge_option
@layer_option
def attack(run, settings, device, target, n, pool, from_noise, out, judge_run, layer):
    """Attack H = C(F(x)) with PGD and show what the model perceives: rows x, x_adv, P(x),
    P(x_adv), then the failure cases (attacks that fooled H while the judge still reads
    P(x_adv) as the true class).

    Example: perceptreg attack runs/demo --eps 0.2 --steps 100
    """
    import torch

    from perceptreg import figures
    from perceptreg.adversarial.attacks import FromNoise
    from perceptreg.adversarial.evaluation import noise_to_target
    from perceptreg.adversarial.judges import main_judge
    from perceptreg.adversarial.run_attacks import evaluate_run
    from perceptreg.core.devices import check_memory
    from perceptreg.storage.schema import write_sealed
    from perceptreg.data.dataset import spread_over_classes
    from perceptreg.measures import format_rate

    named = run.output_layer(layer)  # of an attach run: the files and titles name the layer
    at_layer = f" at layer {named}" if named else ""
    settings = settings.for_images(run.config.dataset, run.input_shape)  # no --eps: the images' radius
    if from_noise:
        if target is not None:
            raise click.UsageError("--from-noise attacks toward every class in turn; leave out --target")
        model, (train_data, test_data) = run.model(device, layer), run.data()
        # the noise, the attacked images, their gradients and perceptions: four float copies
        check_memory("n", n, 4 * 4 * n * model.num_classes * math.prod(model.input_shape),
                     f"{n * model.num_classes} noise images ({n} per class)")
        classes = torch.arange(model.num_classes).repeat_interleave(n).to(device)
        noise, adversarial = settings.build(model, FromNoise).generate(classes, model.input_shape, device)
        # the grid shows the first NOISE_SHOWN per class, in one row of classes; the rates count every image
        shown = (torch.arange(model.num_classes)[:, None] * n + torch.arange(min(n, NOISE_SHOWN))).flatten()
        picture = figures.noise_grid(model, noise[shown], adversarial[shown], test_data.classes, columns=len(shown))
        judge = main_judge(run.config.dataset, train_data, runs.open_run(judge_run) if judge_run else None, device)
        clean = test_data.subset(spread_over_classes(test_data.labels, JUDGE_CHECK_IMAGES))
        reached = noise_to_target(model, adversarial, classes, judge, clean)
        click.echo(f"noise -> target on {len(classes)} noise images (eps {settings.eps:g}): H reads the target on "
                   f"{format_rate(reached['H'])}, "
                   f"the {judge.name} judge reads P(x_adv) as the target on {format_rate(reached[judge.name])} "
                   f"(chance {100 / model.num_classes:.0f} %; the judge reads {len(clean)} test images x right "
                   f"{format_rate(reached['judge on x'])})")
        write_sealed(run.path / runs.for_layer(runs.NOISE_METRICS, named),
                     {"settings": {**dataclasses.asdict(settings), "images_per_class": n},
                      "noise_images": len(classes), "judge": judge.name, "reached": reached})
        click.echo(f"noise attacked toward each class, with the perceptions{at_layer} ({len(shown)} of "
                   f"{len(classes)} shown): "
                   f"{figures.save_png(picture, out or run.path / runs.for_layer(runs.ATTACK_FROM_NOISE, named))}")
        return
    evaluation = evaluate_run(run, settings, target=target, images=pool, device=device, layer=layer,
                              judge_runs=[runs.open_run(judge_run)] if judge_run else ())
    classes = run.data()[1].classes
    failures = evaluation.failures()
    shown = torch.arange(min(n, len(evaluation.labels)))
    panels = [figures.attack_grid(evaluation, shown, classes, f"PGD {settings.norm} eps={settings.eps}, "
                                  f"{settings.steps} steps: x, x_adv, P(x), P(x_adv){at_layer} of {len(shown)} "
                                  f"test images")]
    if len(failures):
        panels.append(figures.attack_grid(
            evaluation, failures[:n], classes, f"Failure cases: H fooled, but the {next(iter(evaluation.judge_readings))} judge reads P(x_adv) as the "
            f"true class ({len(failures)} of {int(evaluation.success.sum())} successful attacks on "
            f"{len(evaluation.labels)} images)", min_width=panels[0].picture.size[0]))
    path = figures.save_png(figures.stack_panels(panels), out or run.path / runs.for_layer(runs.ATTACK, named))
    click.echo(f"attack success {format_rate(evaluation.summary['attack_success_rate'])} on {len(evaluation.labels)} test "
               f"images (eps {settings.eps:g}), {min(n, len(failures))} failure cases shown: {path}")


def parse_attack_args(pairs: tuple[str, ...]) -> dict:
    """("c=1", "steps=50", "name=x") -> {"c": 1, "steps": 50, "name": "x"}: Python literals, else text."""
    import ast

    options = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key.isidentifier():
            raise click.UsageError(f"--attack-arg {pair!r}: give KEY=VALUE, e.g. c=1.0")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return options


@main.command("evaluate-attack")
@run_argument
@attack_options
@target_option
@click.option("--attack", "attack_spec", default=OURS, show_default=True,
              help="pgd (the options above), or any torchattacks-style attack as package.module:Class, e.g. "
                   "torchattacks:CW, built on the model; its images must stay in the --eps ball of --norm.")
@click.option("--attack-arg", "attack_args", multiple=True,
              help="KEY=VALUE for the --attack class (repeatable), e.g. --attack-arg c=1.0.")
@click.option("--images", "n_images", type=click.IntRange(min=1),
              help="Attack this many test images (spread over classes). [default: half the test set]")
@click.option("--held-out", type=click.IntRange(min=0),
              help="Clean test images, apart from the attacked ones, that set the detector's thresholds. "
                   "[default: as many as are attacked, at most the rest]")
@click.option("--fpr", "fprs", default=",".join(f"{f:g}" for f in DEFAULT_FPRS), show_default=True,
              help="False-positive rates at which to report 'succeeded and undetected', each in (0, 1).")
@click.option("--judge", "judge_runs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A run folder whose model judges the images (repeatable). [default: a 3-NN pixel judge on grey "
                   "digits; on natural images the dataset's CNN judge (perceptreg train-judge)]")
@click.option("--compare", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A second run (e.g. --mode post-hoc) attacked on the same images, reported beside RUN, "
                   "with McNemar's paired test of the two.")
@click.option("--adaptive",
              help="Also run the adaptive PGD, which keeps beta * ||x_adv - P(x_adv)||^2 low, for these "
                   "comma-separated betas (e.g. 0,0.1,1,10): the detector against an attacker who knows it.")
@click.option("--adaptive-search",
              help="Also run the strong adaptive attack: the C&W margin minus beta * ||x_adv - P(x_adv)||^2 for "
                   f"each of these betas, the best per image (e.g. {','.join(f'{b:g}' for b in DEFAULT_BETAS)}).")
@click.option("--curve-eps", help="Run the strongest attack again at these eps (comma-separated): a PNG of its rates.")
@click.option("--curve-steps", help="Run the strongest attack again with these steps (comma-separated): has it converged?")
@layer_option
def evaluate_attack(run, settings, device, target, attack_spec, attack_args, n_images, held_out, fprs, judge_runs,
                    compare, adaptive, adaptive_search, curve_eps, curve_steps, layer):
    """Measure an attack: success, what independent judges read in x_adv and P(x_adv), and
    how well ||x - P(x)||^2 detects adversarial inputs (ROC AUC, and the share of attacks that
    succeed undetected at fixed false-positive rates, thresholds set on held-out clean test
    images), beside a model-free pixel statistic and the same perturbations shuffled.
    Writes RUN/attack_metrics.json and RUN/attack_roc.png (of an attach run, named after the
    layer: attack_metrics_LAYER.json, attack_roc_LAYER.png).

    Example: perceptreg evaluate-attack runs/demo --adaptive-search 0,0.01,0.1,1,10 --restarts 2 --compare runs/post-hoc
    """
    from perceptreg.adversarial.detection import roc_curve
    from perceptreg.adversarial.evaluation import compare_paired
    from perceptreg.adversarial.run_attacks import evaluate_run
    from perceptreg.adversarial.tables import adaptive_table, attack_table, paired_table
    from perceptreg.adversarial.thresholds import check_fprs
    from perceptreg.storage.schema import write_sealed
    from perceptreg.figures import plots
    from perceptreg.sweeps.sweep import parse_list

    betas = parse_list(adaptive, float, "adaptive", "0,0.1,1,10") if adaptive else ()
    search = parse_list(adaptive_search, float, "adaptive_search", "0,0.1,1") if adaptive_search else ()
    fprs = check_fprs(parse_list(fprs, float, "fpr", "0.01,0.05"))
    curves = {"curve_eps": parse_list(curve_eps, float, "curve_eps", "0.1,0.2,0.3") if curve_eps else (),
              "curve_steps": parse_list(curve_steps, int, "curve_steps", "10,30,100") if curve_steps else ()}
    summaries, evaluations, written_rocs = {}, [], []
    judges = [runs.open_run(path) for path in judge_runs]
    # no --eps: the radius of RUN's images; --compare's run is attacked in the same ball
    settings = settings.for_images(run.config.dataset, run.input_shape)
    for current in [run] + ([runs.open_run(compare)] if compare else []):
        evaluation = evaluate_run(current, settings, target=target, images=n_images, held_out=held_out,
                                  judge_runs=judges, device=device, layer=layer, adaptive=betas,
                                  adaptive_search=search, fprs=fprs, attack=attack_spec,
                                  attack_options=parse_attack_args(attack_args), **curves)
        summaries[str(current.path)] = evaluation.summary
        evaluations.append(evaluation)
        named = current.output_layer(layer)  # of an attach run: the files and titles name the layer
        fpr, tpr = roc_curve(*(scores.cpu() for scores in evaluation.detector_scores()))
        written_rocs.append(current.path / runs.for_layer(runs.ATTACK_ROC, named))
        plots.roc_figure(fpr, tpr, evaluation.summary["detector"]["auroc"],
                         f"||x - P(x)||^2 detector, {current.path.name}{f', layer {named}' if named else ''}",
                         written_rocs[-1])
        for name, curve in evaluation.summary.get("convergence", {}).items():
            plots.line_plot(curve["values"], {f"{'search' if search else attack_spec} against {name}": {
                "success": [r["rate"] for r in curve["success"]],
                **{f"undetected, {k}": [r["rate"] for r in v] for k, v in curve["undetected"].items()}}},
                current.path / runs.for_layer(runs.ATTACK_CONVERGENCE.format(name), named), xlabel=name,
                ylabel="share of eligible images",
                ylim=(-0.02, 1.02))
    written = {"attack": "PGD" if attack_spec == OURS else attack_spec, **dataclasses.asdict(settings),
               "alpha": settings.step_size, "target": target, "images": len(evaluations[0].labels),
               "held_out": evaluation.summary["detector"].get("held_out_images", 0), "fprs": list(fprs),
               "layer": run.output_layer(layer)}
    if attack_spec != OURS:
        written["attack_options"] = parse_attack_args(attack_args)
    comparison = compare_paired(*evaluations, fprs) if compare else None
    metrics = run.path / runs.for_layer(runs.ATTACK_METRICS, run.output_layer(layer))
    write_sealed(metrics, {"settings": written, "runs": summaries, **({"paired": comparison} if comparison else {})})
    click.echo(f"{written['attack']}, {settings.norm} eps {settings.eps:g}, on {written['images']} images:\n"
               + attack_table(summaries))
    for name, summary in summaries.items():
        rows = summary.get("adaptive", []) + ([summary["adaptive_search"]] if "adaptive_search" in summary else [])
        if rows:
            click.echo(f"\nadaptive attacks on {name} (each ascends its loss - beta * ||x_adv - P(x_adv)||^2; "
                       f"search: the C&W margin, best of the betas per image):\n" + adaptive_table(rows))
    if comparison:
        click.echo("\n" + paired_table(comparison, tuple(summaries)))
    click.echo(f"written: {metrics}, ROC curve: " + ", ".join(map(str, written_rocs)))


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
@click.option("--save-direction", type=OutPath(dir_okay=False),
              help="Save the mean direction here. [default: direction-<source>-to-<target>.safetensors in the --out folder]")
@click.option("--compare", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A second run (e.g. post-hoc) edited on the same images, its curves dashed.")
@attack_options
@judge_option
@click.option("--out", type=OutPath(file_okay=False), help="Folder for the outputs. [default: RUN]")
def interpolate(run, target, source, alphas, n_images, from_file, fit_images, apply_direction,
                save_direction, compare, settings, device, judge_run, out):
    """Edit images toward a class along latent directions found by a targeted attack:
    D(F(x) + a * dz), dz = F(x_adv) - F(x), per image and averaged over training images.
    Writes the grids, the flip curves (how often H, C and the judge read the target, by
    alpha), the change maps and interpolation_metrics.json.

    Example: perceptreg interpolate runs/demo --target 8 --alphas 0:2:0.25
    """
    from perceptreg import figures
    from perceptreg.storage.schema import write_sealed
    from perceptreg.edits import latent
    from perceptreg.figures import plots
    from perceptreg.measures import format_rate

    edit = latent.EditSettings(target, source, latent.parse_alphas(alphas), n_images, fit_images,
                               from_file, apply_direction)
    if save_direction:
        latent.direction_path(save_direction)  # before any work
    out = out or run.path
    settings = settings.for_images(run.config.dataset, run.input_shape)  # no --eps: the images' radius
    results, curves = {}, {}
    for current in [run] + ([runs.open_run(compare)] if compare else []):
        study, region = latent.study_run(current, edit, settings, device, runs.open_run(judge_run) if judge_run else None)
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
                                              save_direction or out / name, run.model())
                click.echo(f"mean direction saved: {saved}")
    plots.line_plot(edit.alphas, curves, out / runs.INTERPOLATION_FLIP, xlabel="alpha",
                    ylabel=f"fraction read as class {target}", ylim=(-0.02, 1.02))
    write_sealed(out / runs.INTERPOLATION_METRICS, {"attack": dataclasses.asdict(settings), "runs": results})
    for name, summary in results.items():
        mean = summary["directions"]["mean"]
        judge = next(k for k in mean["flip_curve"] if k not in ("H(image)", "C(latent)"))

        def flipped(reader: str, at: int) -> str:  # the fraction with its 95 % interval
            low, high = mean["flip_interval"][reader][at]
            return format_rate({"rate": mean["flip_curve"][reader][at], "low": low, "high": high})
        click.echo(f"{Path(name).name}: mean direction (targeted PGD eps {settings.eps:g}), flip to {target} at a={edit.alphas[-1]:g}: "
                   f"H {flipped('H(image)', -1)}, {judge} {flipped(judge, -1)} (at a={edit.alphas[0]:g}: "
                   f"{flipped('H(image)', 0)}, {flipped(judge, 0)}; {summary['images']} images)")
    click.echo(f"written to {out}: interpolation_per-image.png, interpolation_mean.png, "
               f"{runs.INTERPOLATION_FLIP}, {runs.INTERPOLATION_CHANGE}, {runs.INTERPOLATION_METRICS}")


