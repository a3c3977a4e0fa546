"""perceptreg: see what a network sees, by perceptual regularization.

A classifier C(F(x)) is trained jointly with a decoder D on its latent z = F(x), so the
model's perception P(x) = D(F(x)) can be looked at. The public API, importable from here:

- ``train(TrainConfig(...), run_dir)`` trains a model into a run folder;
- ``open_run(run_dir)`` opens a run folder once: ``run.model()``, ``run.data()``, ``run.metrics``;
- ``save_run(seen_or_result, run_dir, source=...)`` saves a model made in Python as a run
  folder that every command, the report and the explorer open;
- ``attach(net, layers, input_shape)`` puts decoders on layers of a model you have, and
  ``fit_decoders`` / ``fine_tune`` / ``evaluate_layers`` fit and measure them;
- ``PGD``, ``AdaptivePGD``, ``AdaptiveAttack`` attack a model, ``measure_attack`` measures what
  an attack did to a model and its perception;
- ``evaluate_attack(run)``, ``attack_run(run)`` and ``attack_from_noise(run)`` are the
  commands evaluate-attack, attack and attack --from-noise: they write what the command
  writes and return, typed, every number it prints;
- ``interpolate(run, EditSettings(target=8))`` edits images toward a class along latent
  directions and measures the edit;
- ``train_run``, ``demo``, ``perceive``, ``run_sweep``, ``run_attach``, ``write_report`` and
  ``explorer_app`` (and ``train_judge``) are the commands train, demo, perceive, sweep, attach, report and explore,
  each returning, typed, what the command prints (docs/api/index.md lists them all);
- ``figures`` draws x beside P(x); ``measures`` holds accuracy, probes and intervals.

The packages, bottom up (each imports only those below it): ``core`` (the method: models,
decoders, loss, config) | ``display``, ``storage`` (files, sealed JSON), ``data``, ``runs`` |
``measures``, ``training`` | ``adversarial``, ``figures``, ``edits``, ``attaching`` | ``attacking``
| ``sweeps``, ``views`` (report, explorer), ``cli``.
Names are imported on first use, so ``import perceptreg`` (and the CLI's --help) stays fast.
"""

from perceptreg.core.lazy import lazy_exports

__version__ = "0.1.0"

# imported on first use (core/lazy.py); `perceptreg.figures.perception_grid(...)`: the packages too
__getattr__, __dir__ = lazy_exports(__name__, {
    "perceptreg.runs": ("open_run", "Run", "save_run"),
    "perceptreg.training.train": ("train", "train_to_end"),
    "perceptreg.core.config": ("TrainConfig", "AttachConfig", "AdversarialConfig"),
    "perceptreg.core.models": ("PerceptionNet",),
    "perceptreg.core.attached": ("attach", "AttachedModel"),
    "perceptreg.attaching.fitting": ("fit_decoders", "fine_tune", "evaluate_layers"),
    "perceptreg.adversarial.attacks": ("PGD", "AttackSettings"),
    "perceptreg.adversarial.adaptive": ("AdaptivePGD", "AdaptiveAttack"),
    "perceptreg.adversarial.evaluation": ("measure_attack", "Measuring"),
    "perceptreg.adversarial.run_attacks": ("Strength",),
    "perceptreg.attacking.evaluate": ("evaluate_attack",),
    "perceptreg.attacking.figure": ("attack_run",),
    "perceptreg.attacking.noise": ("attack_from_noise",),
    "perceptreg.attacking.robust": ("robust_accuracy_of_run",),
    "perceptreg.edits.interpolation": ("interpolate",),
    "perceptreg.edits.study": ("EditSettings",),
    "perceptreg.views.train_run": ("train_run", "demo", "train_judge"),
    "perceptreg.figures.perception": ("perceive",),
    "perceptreg.sweeps.sweep": ("run_sweep",),
    "perceptreg.sweeps.config": ("SweepConfig",),
    "perceptreg.attaching.attach_run": ("run_attach",),
    "perceptreg.views.report": ("write_report",),
    "perceptreg.views.explore": ("explorer_app",),
    "perceptreg.core.errors": ("PerceptregError",),
}, submodules=("figures", "measures", "data"))

__all__ = ["__version__", "open_run", "Run", "save_run", "train", "train_to_end", "TrainConfig", "AttachConfig", "PerceptionNet",
           "attach", "AttachedModel", "fit_decoders", "fine_tune", "evaluate_layers", "PGD", "AdaptivePGD",
           "AdaptiveAttack", "AttackSettings", "measure_attack", "Measuring", "Strength", "evaluate_attack",
           "attack_run", "attack_from_noise", "interpolate", "EditSettings", "train_run", "demo", "train_judge", "perceive",
           "run_sweep", "SweepConfig", "run_attach", "write_report", "explorer_app", "PerceptregError",
           "AdversarialConfig", "robust_accuracy_of_run", "figures", "measures", "data"]
