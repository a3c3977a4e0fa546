"""Commands that attack a run's model: attack (and attack --from-noise) and evaluate-attack,
each one call of ``perceptreg.attacking``."""

from __future__ import annotations

from pathlib import Path

import click

from perceptreg import runs
from perceptreg.adversarial.defaults import DEFAULT_BETAS, DEFAULT_FPRS, OURS
from perceptreg.cli.app import OutPath, attack_options, judge_option, layer_option, main, run_argument, target_option

# --- attacks -----------------------------------------------------------------------------------

@main.command()
@run_argument
@attack_options
@target_option
@click.option("--n", default=10, show_default=True, type=click.IntRange(min=1),
              help="Images shown: the first N attacked, then up to N failure cases. With --from-noise, noise "
                   "images attacked per class: the work (the grid shows the first 2 of each class).")
@click.option("--pool", default=200, show_default=True, type=click.IntRange(min=1),
              help="Test images attacked (spread over the classes): the attack's work, and where failure cases "
                   "are looked for; the test set's size at most.")
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
    from perceptreg.attacking.figure import attack_run
    from perceptreg.attacking.noise import attack_from_noise

    judge = runs.open_run(judge_run) if judge_run else None
    if from_noise:
        if target is not None:
            raise click.UsageError("--from-noise attacks toward every class in turn; leave out --target")
        click.echo(attack_from_noise(run, settings, images_per_class=n, judge_run=judge, layer=layer,
                                     device=device, out=out).text())
        return
    click.echo(attack_run(run, settings, target=target, n=n, pool=pool, judge_run=judge, layer=layer,
                          device=device, out=out).line())


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
              help="pgd (the options above); autoattack (the standard ensemble, Croce & Hein 2020, at --eps, "
                   "--norm and --steps); or any torchattacks-style attack as package.module:Class, e.g. "
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
    from perceptreg.adversarial.run_attacks import Strength
    from perceptreg.attacking.evaluate import evaluate_attack as evaluate
    from perceptreg.sweeps.sweep import parse_list

    def listed(text, kind, name, example):  # a comma-separated option, or none (given empty: refused)
        return parse_list(text, kind, name, example) if text is not None else ()
    strength = Strength(adaptive=listed(adaptive, float, "adaptive", "0,0.1,1,10"),
                        adaptive_search=listed(adaptive_search, float, "adaptive_search", "0,0.1,1"),
                        curve_eps=listed(curve_eps, float, "curve_eps", "0.1,0.2,0.3"),
                        curve_steps=listed(curve_steps, int, "curve_steps", "10,30,100"),
                        fprs=parse_list(fprs, float, "fpr", "0.01,0.05"))
    report = evaluate(run, settings, compare=compare, images=n_images, held_out=held_out, judge_runs=judge_runs,
                      strength=strength, target=target, attack=attack_spec,
                      attack_options=parse_attack_args(attack_args) or None, layer=layer, device=device)
    click.echo(report.text())

