"""From the settings a user gave to the config a run trains with: the rules of `train`'s
options, one home for the CLI and Python (``views.train_run`` runs what this resolves).

    config, out, resume = launch({"lam": 1e-2, "epochs": 5}, out=None)

- Settings left out take the dataset's defaults (its architecture and schedule, from the
  data registry), then ``TrainConfig``'s.
- ``resume``: the run in ``out`` continues with its own config, the settings given replacing
  its own (``runs.check_writable`` refuses the ones a run cannot change). A folder killed before its
  config.json was written holds no run: it starts over, with a warning.
- ``classifier_from``: the decoder learns on the data and architecture of its classifier's run.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from perceptreg import runs
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.data.registry import training_defaults


class Launch(NamedTuple):
    config: TrainConfig
    out: Path  # the run folder
    resume: bool  # False where a resume found no run to continue


def launch(options: dict[str, Any], out: str | Path | None = None, resume: bool = False) -> Launch:
    """The config, run folder and resume flag of a `train` with ``options`` (TrainConfig's
    field names; None or absent: not given). ``out`` None: a fresh runs/<dataset>-lam<lam>-<mode>."""
    given = {k: v for k, v in options.items() if v is not None}
    out = None if out is None else Path(out)
    if resume and out is not None and runs.kind_of(out) is None:  # killed before its config.json was written
        runs.check_writable(out, "trained")  # a folder of other files is refused, not started over
        warnings.warn(f"{out} holds no run yet (stopped before its config.json was written): it starts over with "
                      f"the options given", RuntimeWarning, stacklevel=2)
        resume = False
    if resume:
        if out is None:
            raise PerceptregError("`resume` needs `out`, the run folder to continue")
        runs.check_writable(out, "trained", resume=True)  # another kind of run is refused before its config is read
        return Launch(dataclasses.replace(runs.read_config(out), **given), out, True)  # errors name the settings given
    if out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PerceptregError("under torchrun, give `out`: every process must write to the same run folder")
    if "classifier_from" in given:  # the decoder learns on the data its classifier learnt
        source = runs.read_config(given["classifier_from"])
        if not isinstance(source, TrainConfig):
            raise PerceptregError(f"`classifier_from` {given['classifier_from']} is a run of `attach`; give a run of "
                                  f"`train`, whose F and C the new decoder reads")
        given = {"dataset": source.dataset, "arch": source.arch, "data_root": source.data_root,
                 "z_dim": source.z_dim, "mode": "post-hoc", **given}
    arch = "custom" if "model" in given else given.get("arch")
    defaults = training_defaults(given.get("dataset", TrainConfig.dataset), arch)  # arch, schedule
    config = TrainConfig(**{**defaults, **given, "arch": defaults["arch"]})
    return Launch(config, out or fresh_run_dir(Path("runs") / f"{config.dataset}-lam{config.lam:g}-{config.mode}"),
                  False)


def fresh_run_dir(base: str | Path) -> Path:
    """``base`` if it holds no run yet, else base-2, base-3, ... (as ultralytics' runs/ do)."""
    base = Path(base)
    candidate, k = base, 1
    while (candidate / runs.CONFIG).exists():
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    return candidate
