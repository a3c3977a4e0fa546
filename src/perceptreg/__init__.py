"""perceptreg: see what a network sees, by perceptual regularization.

A classifier C(F(x)) is trained jointly with a decoder D on its latent z = F(x), so the
model's perception P(x) = D(F(x)) can be looked at. The public API, importable from here:

- ``train(TrainConfig(...), run_dir)`` trains a model into a run folder;
- ``open_run(run_dir)`` opens a run folder once: ``run.model()``, ``run.data()``, ``run.metrics``;
- ``save_run(seen_or_result, run_dir, source=...)`` saves a model made in Python as a run
  folder that every command, the report and the explorer open;
- ``attach(net, layers, input_shape)`` puts decoders on layers of a model you have, and
  ``fit_decoders`` / ``fine_tune`` / ``evaluate_layers`` fit and measure them;
- ``PGD``, ``AdaptivePGD``, ``AdaptiveAttack`` and ``evaluate_attack`` attack a model and measure what it perceives;
- ``figures`` draws x beside P(x); ``measures`` holds accuracy, probes and intervals.

The packages, bottom up (each imports only those below it): ``core`` (the method: models,
decoders, loss, config) | ``display``, ``storage`` (files, sealed JSON), ``data``, ``runs`` |
``measures``, ``training`` | ``adversarial``, ``edits``, ``figures``, ``attaching`` | ``sweeps``,
``views`` (report, explorer), ``cli``.
Names are imported on first use, so ``import perceptreg`` (and the CLI's --help) stays fast.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "open_run": "perceptreg.runs", "Run": "perceptreg.runs", "save_run": "perceptreg.runs",
    "train": "perceptreg.training.train", "TrainConfig": "perceptreg.core.config",
    "AttachConfig": "perceptreg.core.config", "PerceptionNet": "perceptreg.core.models",
    "attach": "perceptreg.core.attached", "AttachedModel": "perceptreg.core.attached",
    "fit_decoders": "perceptreg.attaching.fitting", "fine_tune": "perceptreg.attaching.fitting",
    "evaluate_layers": "perceptreg.attaching.fitting",
    "PGD": "perceptreg.adversarial.attacks", "AdaptivePGD": "perceptreg.adversarial.adaptive",
    "AdaptiveAttack": "perceptreg.adversarial.adaptive",
    "AttackSettings": "perceptreg.adversarial.attacks", "evaluate_attack": "perceptreg.adversarial.evaluation",
    "PerceptregError": "perceptreg.core.errors",
}
_PACKAGES = ("figures", "measures", "data")  # `perceptreg.figures.perception_grid(...)`

__all__ = ["__version__", *_EXPORTS, *_PACKAGES]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _PACKAGES:
        value = importlib.import_module(f"perceptreg.{name}")
    else:
        raise AttributeError(f"module 'perceptreg' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
