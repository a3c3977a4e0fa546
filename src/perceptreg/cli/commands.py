"""The `perceptreg` group with every command registered on it: ``app`` holds the group and
what commands share; each ``*_commands`` module registers its commands on it when imported."""

from perceptreg.cli import (
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

# training, data, sweeps, attach, attacks, edits, inversion, robust accuracy, viewing
REGISTERED = (train_commands, data_commands, sweep_commands, attach_commands, attack_commands, edit_commands,
              inversion_commands, robust_commands, view_commands)

__all__ = ["main", "REGISTERED"]
