"""The steps whose command's work is still inside perceptreg's CLI (train --classifier-from,
train-judge, evaluate-attack, attack --from-noise, interpolate): the command itself, run in
this process. Each goes when its command is one library call (issue 34): its step calls that
instead, as the steps of train and sweep do.
"""

from __future__ import annotations

import shlex

import click

from perceptreg.cli import main
from perceptreg.core.errors import PerceptregError


def run_command(command: str) -> None:
    """``command`` ("perceptreg ARGS") in this process, as a shell in the current folder would
    run it: its output printed, its one-line error a PerceptregError."""
    try:
        main.main(shlex.split(command)[1:], prog_name="perceptreg", standalone_mode=False)
    except click.ClickException as err:
        raise PerceptregError(err.format_message()) from None
