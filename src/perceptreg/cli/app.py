"""The `perceptreg` group and what its commands share: errors as one line, warnings as
lines, the run argument and device option, numbered run folders, the attack options."""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import click

from perceptreg import runs  # imports its modules on first use: --help stays free of torch
from perceptreg.adversarial.defaults import DEFAULT_STEPS, LOSSES, MAX_RESTARTS, MAX_STEPS, NORMS, SCHEDULES
from perceptreg.core.errors import PerceptregError, warnings_as_lines
from perceptreg.data.registry import COLOUR_EPS, COLOUR_L2_EPS, GREY_EPS, GREY_L2_EPS

# library arguments whose option has another name (--adaptive lists betas, --attack names the attack)
OPTION_FOR = {"beta": "adaptive", "betas": "adaptive_search", "attack": "attack_spec", "attack_options": "attack_args",
              "images_per_class": "n"}


def as_flags(message: str, command: click.Command | None) -> str:
    """The library names its arguments in backquotes (`train_size`); on the command line
    they are the command's flags (--train-size). A list option answers for its items
    (`lam` -> --lams)."""
    flags = {p.name: p.opts[0] for p in (command.params if command else []) if isinstance(p, click.Option)}

    def flag(match: re.Match) -> str:
        name = OPTION_FOR.get(match.group(1), match.group(1))
        return flags.get(name) or flags.get(name + "s") or name
    return re.sub(r"`(\w+)`", flag, message)


class UsageProblem(click.ClickException):
    """Click's usage errors (unknown option, a value of the wrong type) as one line, with
    the help command to read: exit code 2 as click and argparse give them."""

    exit_code = 2

    def __init__(self, error: click.UsageError):
        where = error.ctx.command_path if error.ctx else "perceptreg"
        super().__init__(f"{error.format_message()} (see '{where} --help')")


class _Group(click.Group):
    """Turns library errors about bad input into one line and exit code 1, and click's usage
    errors into one line and exit code 2: never a traceback, never a usage block."""

    def parse_args(self, ctx, args):
        if not args:  # bare `perceptreg`: the help, and success, as git and pip answer it
            click.echo(ctx.get_help())
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **kwargs)
        except KeyboardInterrupt:  # outside a command (parsing, ending): click would say "Aborted!", exit 1
            Interrupted(None).show()
            sys.exit(Interrupted.exit_code)

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as err:
            raise UsageProblem(err) from err

    def invoke(self, ctx):
        try:
            with plain_warnings():  # every command's warnings as "Warning: ..." lines
                return super().invoke(ctx)
        except click.UsageError as err:
            raise UsageProblem(err) from err
        except PerceptregError as err:
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            raise click.ClickException(as_flags(str(err), command)) from err
        except KeyboardInterrupt:
            raise Interrupted(ctx.invoked_subcommand) from None


# what a command interrupted leaves, said in its one line
LEFT_BY = {"train": "the run folder keeps its last completed epoch (continue it with --resume)",
           "train-judge": "the judge keeps its last completed epoch (run the same command again: it resumes)",
           "sweep": "the sweep keeps every finished epoch (run the same command again: it resumes)",
           "attach": "the run in --out did not finish (run the same command again: it starts over)"}


class Interrupted(click.ClickException):
    """Ctrl-C: exit code 130 as shells give it, and what became of the run folder."""

    exit_code = 130

    def __init__(self, command: str | None):
        super().__init__("interrupted" + (f"; {LEFT_BY[command]}" if command in LEFT_BY else ""))


@click.group(cls=_Group)
@click.version_option(package_name="perceptreg")
def main():
    """See what a network sees: train classifiers with a decoder on their latent and look
    at their perception P(x) = D(F(x)).

    Start with `perceptreg demo`.
    """


class OutPath(click.Path):
    """An output path, as click.Path, that is never empty (`--out ''` is the current folder to
    click) and is checked before any work (``runs.check_output_path``)."""

    def __init__(self, **kwargs):
        super().__init__(path_type=Path, **kwargs)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("is empty; give a folder or file name", param, ctx)
        return runs.check_output_path(super().convert(value, param, ctx))  # a bad one: exit 1, one line


def defaults_of(config_class) -> SimpleNamespace:
    """The defaults of a config dataclass's fields, for options to show: read from the class,
    not an instance, whose checks would import torch before --help."""
    return SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(config_class)
                              if f.default is not dataclasses.MISSING})


def plain_warnings(command: click.Command | None = None):
    """Every command's warnings as "Warning: ..." lines on stderr (``warnings_as_lines``);
    the names of ``command``'s settings as its flags (``as_flags``)."""
    return warnings_as_lines(lambda line: click.echo(as_flags(line, command), err=True))


layer_option = click.option("--layer", help="Of a run of `attach`: the layer whose perception to use. [default: the deepest]")


def run_argument(command):
    """The RUN argument, opened once (``runs.open_run``) before the command sees it."""
    @functools.wraps(command)
    def opened(run: Path, **options):
        return command(run=runs.open_run(run), **options)
    return click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))(opened)


device_option = click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")


# --- what the commands that attack share -------------------------------------------------------

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
