"""An attack on a run folder: what `perceptreg attack` and `evaluate-attack` do.

    evaluation = evaluate_run(open_run("runs/demo"), AttackSettings(), images=300,
                              adaptive_search=DEFAULT_BETAS)
    evaluation.summary["adaptive_search"]["undetected"]

The test set is split in two disjoint parts: the images attacked, and clean images held
out to set the detector's thresholds at fixed false-positive rates (``split_test``).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Sequence

import torch

from perceptreg.adversarial.adaptive import NO_BAND, AdaptiveAttack, AdaptivePGD
from perceptreg.adversarial.attacks import AttackSettings, check_target
from perceptreg.adversarial.callables import load_attack
from perceptreg.adversarial.defaults import DEFAULT_FPRS, OURS
from perceptreg.adversarial.evaluation import AttackEvaluation, clean_scores, evaluate_attack
from perceptreg.adversarial.judges import default_judges
from perceptreg.adversarial.thresholds import SIDES, strictest_band
from perceptreg.core.errors import PerceptregError
from perceptreg.data import ImageDataset, spread_over_classes
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
    """``attack`` "pgd" (ours, from ``settings``) or "package.module:Class" (``callables.load_attack``)."""
    if attack == OURS:
        if options:
            raise PerceptregError(f"`attack_options` {options} are for an attack of your own (--attack module:Class); "
                                  f"PGD takes the attack options (--eps, --steps, --loss, ...)")
        return settings.build(model)
    return load_attack(attack, model, options, eps=settings.eps, steps=settings.steps, norm=settings.norm,
                       seed=settings.seed)


def evaluate_run(run: Run, settings: AttackSettings, *, target: int | None = None,
                 images: int | None = None, held_out: int | None = None, judge_runs: Sequence[Run] = (),
                 device: str = "cpu", layer: str | None = None, adaptive: Sequence[float] = (),
                 adaptive_search: Sequence[float] = (), fprs: Sequence[float] = DEFAULT_FPRS,
                 attack: str = OURS, attack_options: dict | None = None,
                 curve_eps: Sequence[float] = (), curve_steps: Sequence[int] = ()) -> AttackEvaluation:
    """``evaluate_attack`` on ``images`` of a run's test set, thresholds set on ``held_out``
    others (``split_test``), judged by ``default_judges``: the models of ``judge_runs``, a 3-NN
    pixel judge on grey digits, the dataset's standing CNN judge on natural images. Of a run of `attach`, the perception is that of ``layer``
    (default the deepest).

    - ``attack``: "pgd" (``settings``) or a callable's "package.module:Class" with ``attack_options``;
    - ``adaptive``: betas of the weak ``AdaptivePGD`` (``settings``' loss, CE by default), rows
      (``adaptive_row``) in ``summary["adaptive"]``;
    - ``adaptive_search``: the betas of the strong ``AdaptiveAttack`` (margin, best iterate,
      aiming inside every detector's band at ``fprs``), its row in ``summary["adaptive_search"]``;
    - ``curve_eps``, ``curve_steps``: the strongest attack run (the search if given, else
      ``attack``) again at these eps and at these steps, the rest as ``settings``:
      ``summary["convergence"]`` (``convergence``), to show whether it has converged."""
    for steps in curve_steps:  # refused before the first attack runs, not after it
        dataclasses.replace(settings, steps=steps)
    model = run.model(device, layer)
    settings = settings.for_images(run.config.dataset, model.input_shape)
    if run.decoder_collapsed:
        warnings.warn(f"{run.path} has a collapsed decoder: its perceptions P(x) show nothing about the "
                      f"inputs; the figures render, but read them as such", RuntimeWarning, stacklevel=2)
    train_data, test_data = run.data()
    attacked, kept = split_test(test_data, images, held_out)
    held_scores = None if kept is None else clean_scores(model, kept, device).cpu()
    judges = default_judges(run.config.dataset, train_data, judge_runs, device)
    targets = None
    if target is not None:
        check_target(target, model.num_classes)
        targets = torch.full((len(attacked),), target, dtype=torch.long)

    def measure(attacker) -> AttackEvaluation:
        return evaluate_attack(model, attacker, attacked, judges, targets=targets, device=device,
                               held_out_scores=held_scores, fprs=fprs)

    def strongest(current: AttackSettings):
        if adaptive_search:
            aim = NO_BAND if held_scores is None else strictest_band(held_scores, fprs)
            return current.build(model, AdaptiveAttack, betas=tuple(adaptive_search), band=aim)
        return build_attack(attack, model, current, attack_options)

    evaluation = measure(build_attack(attack, model, settings, attack_options))
    if adaptive:
        evaluation.summary["adaptive"] = [adaptive_row(beta, measure(settings.build(model, AdaptivePGD, beta=beta)).summary)
                                          for beta in adaptive]
    if adaptive_search:
        evaluation.summary["adaptive_search"] = {**adaptive_row(None, measure(strongest(settings)).summary),
                                                 "betas": list(adaptive_search)}
    if curve_eps or curve_steps:
        evaluation.summary["convergence"] = convergence(lambda s: measure(strongest(s)).summary, settings,
                                                        curve_eps, curve_steps)
    return evaluation


def adaptive_row(beta: float | None, summary: dict) -> dict:
    """One row of the adaptive-attack table: of an adaptive attack's ``evaluate_attack``
    summary, the success, the detector's and baselines' AUCs, the share that succeeded
    undetected at each false-positive rate, and the judges' readings of P(x_adv)."""
    detector = summary["detector"]
    return {"beta": beta, "attack_success": summary["attack_success_rate"],
            "successful_attacks": summary["successful_attacks"], "auroc": detector["auroc"],
            "auroc_interval": detector["auroc_interval"],
            "mean_score_adversarial": detector["mean_score_adversarial"],
            "undetected": undetected_rates(summary),
            "baselines": {name: b["auroc"] for name, b in detector["baselines"].items()},
            "judges_on_P(x_adv)": {name: j["on_P(x_adv)"] for name, j in summary["judges"].items()}}


def undetected_rates(summary: dict) -> dict:
    """{side: {"0.05": rate}} of "succeeded and undetected", from an ``evaluate_attack`` summary
    ({} without held-out images); the rates as text keys, as JSON keeps them."""
    at_fpr = summary["detector"].get("at_fpr", {})
    return {sided: {f"{entry['fpr']:g}": entry["succeeded_and_undetected"] for entry in at_fpr[sided]}
            for sided in at_fpr}


def convergence(measure: Callable[[AttackSettings], dict], settings: AttackSettings,
                eps_values: Sequence[float] = (), steps_values: Sequence[int] = ()) -> dict:
    """The attack's success and its succeeded-and-undetected rates as eps grows (steps as
    ``settings``) and as steps grow (eps as ``settings``): an attack that has converged
    stops gaining with more steps. ``measure``: settings -> an ``evaluate_attack`` summary.
    An explicit alpha stays as given at every point; the default scales with eps / steps."""
    curves = {}
    for name, values in (("eps", eps_values), ("steps", steps_values)):
        if not values:
            continue
        summaries = [measure(dataclasses.replace(settings, **{name: value})) for value in values]
        rates = [undetected_rates(s) for s in summaries]
        curves[name] = {"values": list(values), "success": [s["attack_success_rate"] for s in summaries],
                        "undetected": {f"{sided}, {fpr}": [r[sided][fpr] for r in rates]
                                       for sided in SIDES for fpr in rates[0].get(sided, {})}}
    return curves
