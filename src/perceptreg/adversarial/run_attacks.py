"""An attack on a run folder: what `perceptreg attack` and `evaluate-attack` do.

    evaluation = evaluate_run(open_run("runs/demo"), AttackSettings(), images=300,
                              strength=Strength(adaptive_search=DEFAULT_BETAS))
    evaluation.summary.adaptive_search.undetected

The test set is split in two disjoint parts: the images attacked, and clean images held
out to set the detector's thresholds at fixed false-positive rates (``split_test``).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from perceptreg.adversarial.adaptive import NO_BAND, AdaptiveAttack, AdaptivePGD
from perceptreg.adversarial.attacks import AttackSettings, check_target
from perceptreg.adversarial.callables import load_attack
from perceptreg.adversarial.defaults import AUTOATTACK, DEFAULT_FPRS, OURS
from perceptreg.adversarial.evaluation import AttackEvaluation, Measuring, clean_scores, measure_attack
from perceptreg.adversarial.judges import architecture, default_judges
from perceptreg.adversarial.robust_accuracy import autoattack
from perceptreg.adversarial.summary import AdaptiveRow, AttackSummary, Curve
from perceptreg.adversarial.thresholds import SIDES, check_fprs, strictest_band
from perceptreg.core.errors import PerceptregError
from perceptreg.data import ImageDataset, spread_over_classes
from perceptreg.display import tqdm
from perceptreg.runs import Run


def split_test(test_data: ImageDataset, images: int | None = None,
               held_out: int | None = None) -> tuple[ImageDataset, ImageDataset | None]:
    """(images to attack, clean images held out for the thresholds), disjoint, each spread over
    the classes. ``images``: default half the test set; ``held_out``: default as many as are
    attacked, at most the images left; 0: none (no rates at fixed false positives)."""
    n = len(test_data)
    attacked = min(images, n) if images else n // 2 or n
    held = min(attacked, n - attacked) if held_out is None else held_out
    if held < 0 or attacked + held > n:
        raise PerceptregError(f"`held_out` {held}: with {attacked} images attacked, the test set of {n} leaves "
                              f"{n - attacked}; give fewer --images or --held-out")
    chosen = spread_over_classes(test_data.labels, attacked)
    rest = torch.ones(n, dtype=torch.bool)
    rest[chosen] = False
    rest = rest.nonzero().squeeze(1)
    kept = rest[spread_over_classes(test_data.labels[rest], held)] if held else None
    return test_data.subset(chosen), None if kept is None else test_data.subset(kept)


def build_attack(attack: str, model, settings: AttackSettings, options: dict | None = None):
    """``attack`` "pgd" (ours, from ``settings``), "autoattack" (the standard ensemble at the
    settings' eps, norm, steps and seed) or "package.module:Class" (``callables.load_attack``)."""
    if attack in (OURS, AUTOATTACK) and options:
        raise PerceptregError(f"`attack_options` {options} are for an attack of your own (--attack module:Class); "
                              f"{attack} takes the attack options (--eps, --steps, ...)")
    if attack == OURS:
        return settings.build(model)
    if attack == AUTOATTACK:
        return autoattack(model, settings.norm, settings.eps, model.num_classes, settings.seed, settings.steps)
    return load_attack(attack, model, options, eps=settings.eps, steps=settings.steps, norm=settings.norm,
                       seed=settings.seed)


@dataclass(frozen=True)
class Strength:
    """What is measured beside the attack, and how strong the attacker is:

    - ``adaptive``: betas of the weak ``AdaptivePGD`` (the settings' loss, CE by default),
      one ``AdaptiveRow`` each;
    - ``adaptive_search``: the betas of the strong ``AdaptiveAttack`` (margin and CE, best
      iterate, aiming inside every detector's band at ``fprs``, the plain attack's images
      kept per image where they rank better), one row;
    - ``curve_eps``, ``curve_steps``: the strongest attack (the search if given, else the
      attack) run again at these eps and at these steps, the rest as the settings
      (``convergence``), to show whether it has converged;
    - ``fprs``: the false-positive rates the detector is read at (``thresholds.check_fprs``)."""

    adaptive: Sequence[float] = ()
    adaptive_search: Sequence[float] = ()
    curve_eps: Sequence[float] = ()
    curve_steps: Sequence[int] = ()
    fprs: Sequence[float] = DEFAULT_FPRS

    def __post_init__(self):
        object.__setattr__(self, "fprs", check_fprs(self.fprs))
        for name in ("adaptive", "adaptive_search", "curve_eps", "curve_steps"):
            values = list(getattr(self, name))
            if len(set(values)) != len(values):  # one point measured twice, shown as two
                raise PerceptregError(f"`{name}` gives a value more than once ({', '.join(map(str, values))}); "
                                      f"give each once")
        if any(steps < 1 for steps in self.curve_steps):  # as `steps`: 0 would be the random start alone
            raise PerceptregError(f"`curve_steps` must each be at least 1, got {', '.join(map(str, self.curve_steps))}")
        # here, before any attack runs, and naming the list (the attacks would name `beta` or `eps`)
        for name, positive in (("adaptive", False), ("adaptive_search", False), ("curve_eps", True)):
            bad = [v for v in getattr(self, name) if not math.isfinite(v) or v < 0 or (positive and v == 0)]
            if bad:
                raise PerceptregError(f"`{name}` must be a finite number {'> 0' if positive else '>= 0'}, "
                                      f"got {', '.join(map(str, bad))}")

    def attacks(self) -> int:
        """The attacks ``evaluate_run`` measures: the attack itself, then those asked for here."""
        return (1 + len(self.adaptive) + bool(self.adaptive_search) + len(self.curve_eps)
                + len(self.curve_steps))

    def strongest(self, model, attack: str, options: dict | None, held_scores: torch.Tensor | None):
        """(settings, candidates) -> the strongest attack measured: the search if asked for,
        aiming inside every detector's band and keeping per image the best of its runs and of
        ``candidates`` (the images other attacks made of the same images), else ``attack``."""
        def build(current: AttackSettings, candidates: Sequence[torch.Tensor] = ()):
            if self.adaptive_search:
                aim = NO_BAND if held_scores is None else strictest_band(held_scores, self.fprs)
                return current.build(model, AdaptiveAttack, betas=tuple(self.adaptive_search), band=aim,
                                     candidates=tuple(candidates))
            return build_attack(attack, model, current, options)
        return build


def evaluate_run(run: Run, settings: AttackSettings | None = None, *, target: int | None = None,
                 images: int | None = None, held_out: int | None = None, judge_runs: Sequence[Run] = (),
                 device: str = "cpu", layer: str | None = None, strength: Strength = Strength(),
                 attack: str = OURS, attack_options: dict | None = None, progress: bool = False) -> AttackEvaluation:
    """``measure_attack`` on ``images`` of a run's test set, thresholds set on ``held_out``
    others (``split_test``), judged by ``default_judges``: the models of ``judge_runs``, a 3-NN
    pixel judge on grey digits, the dataset's standing CNN judge on natural images. Of a run
    of `attach`, the perception is that of ``layer`` (default the deepest). ``settings``
    without eps: the radius of the run's images (``AttackSettings.for_images``), in the
    evaluation's ``settings`` as the attack ran.

    ``attack``: "pgd" (``settings``) or a callable's "package.module:Class" with
    ``attack_options``; ``strength``: the adaptive attacks and convergence curves measured
    beside it, in ``summary.adaptive``, ``summary.adaptive_search`` and ``summary.convergence``;
    ``progress``: a bar over those attacks (the search and its curve can take an hour on a CPU)."""
    for steps in strength.curve_steps:  # refused before the first attack runs, not after it
        dataclasses.replace(settings or AttackSettings(), steps=steps)
    model = run.model(device, layer)
    settings = (settings or AttackSettings()).for_images(run.config.dataset, model.input_shape)
    if run.decoder_collapsed:
        warnings.warn(f"{run.path} has a collapsed decoder: its perceptions P(x) show nothing about the "
                      f"inputs; the figures render, but read them as such", RuntimeWarning, stacklevel=2)
    train_data, test_data = run.data()
    attacked, kept = split_test(test_data, images, held_out)
    held_scores = None if kept is None else clean_scores(model, kept, device).cpu()
    judges = default_judges(run.config.dataset, train_data, judge_runs, device, architecture(run.config))
    measuring = Measuring(judges, held_scores, strength.fprs, device=device)
    targets = None
    if target is not None:
        check_target(target, model.num_classes)
        targets = torch.full((len(attacked),), target, dtype=torch.long)

    attacker = build_attack(attack, model, settings, attack_options)  # a bad --attack refused before any bar
    # few updates, each an attack: every one drawn; closed however the attacks end (an error, Ctrl-C)
    with tqdm(total=strength.attacks(), desc=f"attacks on {run.path.name}", unit="attack", disable=not progress,
              leave=False, mininterval=0) as bar:
        def measure(attacker) -> AttackSummary:
            summary = measure_attack(model, attacker, attacked, measuring, targets=targets).summary
            bar.update()
            return summary

        evaluation = measure_attack(model, attacker, attacked, measuring, targets=targets)
        bar.update()
        evaluation.settings = settings
        strongest = strength.strongest(model, attack, attack_options, held_scores)
        evaluation.summary = evaluation.summary.model_copy(update=dict(
            adaptive=[AdaptiveRow.of(beta, measure(settings.build(model, AdaptivePGD, beta=beta)))
                      for beta in strength.adaptive] or None,
            # the search at the attack's own settings keeps, per image, the plain attack's result where better
            adaptive_search=AdaptiveRow.of(None, measure(strongest(settings, (evaluation.adversarial,))),
                                           list(strength.adaptive_search))
            if strength.adaptive_search else None,
            convergence=convergence(lambda s: measure(strongest(s)), settings, strength.curve_eps,
                                    strength.curve_steps) or None))
    return evaluation


def convergence(measure: Callable[[AttackSettings], AttackSummary], settings: AttackSettings,
                eps_values: Sequence[float] = (), steps_values: Sequence[int] = ()) -> dict[str, Curve]:
    """The attack's success and its succeeded-and-undetected rates as eps grows (steps as
    ``settings``) and as steps grow (eps as ``settings``): an attack that has converged
    stops gaining with more steps. ``measure``: settings -> an ``AttackSummary``.
    An explicit alpha stays as given at every point; the default scales with eps / steps."""
    curves = {}
    for name, values in (("eps", eps_values), ("steps", steps_values)):
        if not values:
            continue
        summaries = [measure(dataclasses.replace(settings, **{name: value})) for value in values]
        rates = [s.detector.undetected() for s in summaries]
        curves[name] = Curve(values=list(values), success=[s.attack_success_rate for s in summaries],
                             undetected={f"{sided}, {fpr}": [r[sided][fpr] for r in rates]
                                         for sided in SIDES for fpr in rates[0].get(sided, {})})
    return curves
