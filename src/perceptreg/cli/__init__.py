"""The `perceptreg` command: a thin layer over the library.

``app`` holds the group and what commands share; each ``*_commands`` module registers its
commands on it (training, data, sweeps, attach, attacks and edits, viewing); each command is one
library call that returns a typed result, which the command prints.
"""

from perceptreg.cli import (  # noqa: F401  (they register commands)
    attach_commands,
    attack_commands,
    data_commands,
    edit_commands,
    inversion_commands,
    robust_commands,
    sweep_commands,
    train_commands,
    view_commands,
)
from perceptreg.cli.app import main

__all__ = ["main"]
