"""Robust models (issue 36): the adversarial-training options `train` and `sweep` share, and
`perceptreg robust-accuracy`, one call of ``attacking.robust``."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from perceptreg.cli.app import device_option, layer_option, main, run_argument
from perceptreg.core.config import ADVERSARIAL_METHODS, DECODER_INPUTS, NORMS


def adversarial_options(command):
    """--adversarial and its threat model; they reach ``command`` as one ``adversarial``
    setting (an ``AdversarialConfig``, or None: not given, so a resumed run keeps its own)."""
    options = [
        click.option("--adversarial", "method", type=click.Choice(ADVERSARIAL_METHODS),
                     help="Adversarial training: C learns on PGD examples (Madry et al. 2018) or on FGSM from a "
                          "random start (fgsm-rs, Wong et al. 2020: one step, affordable on CPU). [default: none]"),
        click.option("--adv-eps", type=float, help="--adversarial: radius (MNIST 0.3, CIFAR-10 0.0314 = 8/255)."),
        click.option("--adv-norm", type=click.Choice(NORMS), help="--adversarial: threat model. [default: linf]"),
        click.option("--adv-steps", type=int, help="--adversarial pgd: steps per batch. [default: 10]"),
        click.option("--adv-step-size", type=float,
                     help="--adversarial: step size. [default: pgd 2.5 * eps / steps, fgsm-rs 1.25 * eps]"),
        click.option("--decoder-input", type=click.Choice(DECODER_INPUTS),
                     help="--adversarial: what D learns to reconstruct. [default: x]"),
        click.option("--adv-warmup-epochs", type=int,
                     help="--adversarial: eps grows linearly from 0 over this many epochs (PGD at MNIST's 0.3 "
                          "from the first batch can stay at chance). [default: 0]"),
    ]

    @functools.wraps(command)
    def wrapped(method, adv_eps, adv_norm, adv_steps, adv_step_size, decoder_input, adv_warmup_epochs, **kwargs):
        given = {k: v for k, v in dict(eps=adv_eps, norm=adv_norm, steps=adv_steps, step_size=adv_step_size,
                                       decoder_input=decoder_input, warmup_epochs=adv_warmup_epochs).items()
                 if v is not None}
        if method is None and given:
            raise click.UsageError("--adv-* and --decoder-input set up adversarial training: add --adversarial pgd "
                                   "(or fgsm-rs)")
        if method is not None and adv_eps is None:
            raise click.UsageError("--adversarial needs --adv-eps, its radius (MNIST 0.3, CIFAR-10 0.0314)")
        adversarial = None
        if method is not None:
            from perceptreg.core.config import AdversarialConfig

            adversarial = AdversarialConfig(method=method, **given)
        return command(adversarial=adversarial, **kwargs)
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


@main.command("robust-accuracy")
@run_argument
@click.option("--norm", default="linf", show_default=True, type=click.Choice(NORMS), help="Threat model.")
@click.option("--eps", type=float, help="Radius. [default: the standard one: L-inf 0.3 on MNIST digits, 8/255 on "
                                        "colour images; L2 2.0 on digits, 0.5 on colour images]")
@click.option("--n", "images", default=1000, show_default=True, type=click.IntRange(min=1),
              help="The first N test images are attacked (RobustBench's protocol).")
@click.option("--steps", default=100, show_default=True, type=click.IntRange(1, 100_000),
              help="Iterations of APGD-CE, APGD-T and FAB-T (the standard AutoAttack's 100).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1), help="AutoAttack's seed.")
@layer_option
@device_option
def robust_accuracy(run, norm, eps, images, steps, seed, layer, device):
    """Clean and robust accuracy under AutoAttack's standard ensemble (APGD-CE, APGD-T, FAB-T,
    Square; torchattacks), with 95 % Wilson intervals, the attack budget, and warnings where
    the model may mask its gradients. Writes RUN/robust_accuracy.json.

    Example: perceptreg robust-accuracy runs/robust --norm linf --eps 0.3 --n 1000
    """
    from perceptreg.attacking.robust import robust_accuracy_of_run

    result = robust_accuracy_of_run(run, norm=norm, eps=eps, images=images, seed=seed, steps=steps, layer=layer,
                                    device=device)
    click.echo("\n".join(result.lines() + [f"written: {Path(run.path) / 'robust_accuracy.json'}"]))
