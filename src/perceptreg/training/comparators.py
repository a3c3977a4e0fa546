"""The decoder objective of a run (``core.decoder_losses``) with its comparator found: the
model's own layers ("self"), or the encoder of a run perceptreg trained and keeps.

    objective = decoder_objective(config.decoder_loss, (3, 32, 32), own=model.encoder)

A comparator run is any run of `train`, e.g. a plain classifier
(``perceptreg train --dataset cifar10 --lam 0 --seed 1 --out runs/comparator``); its layers are
named as in its encoder's ``named_modules()``. It is never the judge that measures the result
(``judges``): a decoder that learnt to match the judge's features would draw what that judge
reads, and the judge's reading of P(x) would measure the loss, not what the model keeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from perceptreg import runs
from perceptreg.core.config import DecoderLoss
from perceptreg.core.decoder_losses import Comparator, DecoderObjective
from perceptreg.core.errors import PerceptregError
from perceptreg.display import tqdm

SELF = "self"


def decoder_objective(loss: DecoderLoss, image_shape: tuple[int, ...], own: nn.Module | None, *,
                      reduction: str = "sum", prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      judges: Sequence[str | Path] = (), device: torch.device | str = "cpu",
                      announce: bool = False) -> DecoderObjective | None:
    """The objective of ``loss`` on ``device``, None for the paper's pixel error. ``own``: the
    network whose layers "self" names (``prepare`` maps images to its input); ``judges``: the
    run folders that will measure the perception, refused as comparators; ``announce``: print
    its line, the layers compared as resolved (a config that names none records none)."""
    if loss.name == "pixel":
        return None
    if loss.comparator == SELF:
        if own is None:
            raise PerceptregError("`comparator` self: this model has no layers of its own to compare; name a "
                                  "comparator run")
        comparator = Comparator(own, loss.layers, image_shape, prepare, "the model")
    else:
        comparator = Comparator(comparator_network(loss.comparator, judges), loss.layers, image_shape, None,
                                f"the comparator run {loss.comparator}")
    objective = DecoderObjective(loss, comparator, image_shape, reduction).to(device)
    if announce:
        tqdm.write(f"decoder loss: {objective.describe()}")
    return objective


def comparator_network(folder: str | Path, judges: Sequence[str | Path] = ()) -> nn.Module:
    """The frozen encoder of the run in ``folder``; refused when it is one of ``judges``."""
    check_not_judge(folder, judges)
    net = runs.open_run(folder).model().encoder
    return net.requires_grad_(False)


def check_not_judge(comparator: str | Path, judges: Sequence[str | Path]) -> None:
    """One error line when the comparator run is a judge of the perception."""
    if comparator == SELF:
        return
    for judge in judges:
        if Path(judge).resolve() == Path(comparator).resolve():
            raise PerceptregError(f"`comparator` {comparator} is the judge that measures the perception: a decoder "
                                  f"trained on its features draws what it reads. Train another comparator run "
                                  f"(e.g. perceptreg train --lam 0 --seed 1 --out runs/comparator)")
