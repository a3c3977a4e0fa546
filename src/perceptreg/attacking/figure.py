"""`perceptreg attack` as one call: a run's model attacked on a pool of test images, drawn
as x, x_adv, P(x), P(x_adv), then the failure cases (attacks that fooled H while the judge
still reads P(x_adv) as the true class), returned as an ``AttackFigure``.

    shown = attack_run(open_run("runs/demo"), AttackSettings(steps=100), n=10, pool=200)
    print(shown.line())                      # what the command prints
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from perceptreg import figures, runs
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.evaluation import AttackEvaluation
from perceptreg.adversarial.run_attacks import evaluate_run
from perceptreg.adversarial.summary import AttackSummary
from perceptreg.display import figure_html
from perceptreg.runs import Run


@dataclass(frozen=True)
class AttackFigure:
    """What `perceptreg attack` drew: the figure's path, the attack's summary (its success
    is a share of the images H classifies right, of ``summary.images`` attacked), the images
    shown, and the failure cases found among the successful attacks and shown."""

    path: Path
    summary: AttackSummary
    targeted: bool
    eps: float
    judge: str
    shown: int
    failures: int
    failures_shown: int
    evaluation: AttackEvaluation = field(repr=False)

    def line(self) -> str:
        """"attack success 99.3 % [96.1, 99.9] of the 139 images H classifies right (200 attacked), ..."."""
        return (f"{self.summary.line(self.targeted)}, eps {self.eps:g}; {self.failures} failure cases among the "
                f"{self.summary.successful_attacks} successful attacks, {self.failures_shown} shown: {self.path}")

    def _repr_html_(self) -> str:
        return figure_html(self.path, [self.line()])


def attack_run(run: Run, settings: AttackSettings | None = None, *, target: int | None = None, n: int = 10,
               pool: int = 200, judge_run: Run | None = None, layer: str | None = None, device: str = "cpu",
               out: str | Path | None = None) -> AttackFigure:
    """Attack ``pool`` test images of ``run`` (spread over the classes; the attack's work) and
    draw the first ``n`` of them, then up to ``n`` failure cases: RUN/attack.png, or ``out``
    (of an attach run, named after ``layer``, default the deepest). ``settings`` without
    eps: the radius of the run's images; ``judge_run``: a run whose model reads P(x_adv)
    (default: the dataset's main judge)."""
    named = run.output_layer(layer)  # of an attach run: the files and titles name the layer
    out = runs.check_output_file(out or run.path / runs.for_layer(runs.ATTACK, named),
                                 owned=(runs.ATTACK, runs.for_layer(runs.ATTACK, "*")),
                                 run=run.path, reads=[judge_run.path] if judge_run else ())
    at_layer = f" at layer {named}" if named else ""
    # held_out 0: no thresholds to set, so no clean images scored beyond the pool
    evaluation = evaluate_run(run, settings, target=target, images=pool, held_out=0, device=device, layer=layer,
                              judge_runs=[judge_run] if judge_run else ())
    summary, settings, classes = evaluation.summary, evaluation.settings, run.data()[1].classes
    failures, judge = evaluation.failures(), next(iter(evaluation.judge_readings))
    shown = torch.arange(min(n, summary.images))
    panels = [figures.attack_grid(evaluation, shown, classes, f"PGD {settings.norm} eps={settings.eps}, "
                                  f"{settings.steps} steps: x, x_adv, P(x), P(x_adv){at_layer} of {len(shown)} "
                                  f"test images")]
    if len(failures):
        panels.append(figures.attack_grid(
            evaluation, failures[:n], classes, f"Failure cases: H fooled, but the {judge} judge reads P(x_adv) as "
            f"the true class ({len(failures)} of the {summary.successful_attacks} successful attacks on the "
            f"{summary.attack_success_rate.n} of {summary.images} attacked images H classifies right)",
            min_width=panels[0].picture.size[0]))
    path = figures.save_png(figures.stack_panels(panels), out)
    return AttackFigure(path, summary, target is not None, settings.eps, judge, len(shown), len(failures), min(n, len(failures)),
                        evaluation)
