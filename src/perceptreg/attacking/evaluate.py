"""`perceptreg evaluate-attack` as one call: the attack measured on a run (and on a second
run, on the same images, with McNemar's paired test), the detector's ROC curve and the
convergence curves as PNGs, and attack_metrics.json, returned as an ``AttackReport``.

    report = evaluate_attack(open_run("runs/demo"), strength=Strength(adaptive_search=(0, 0.1, 1)))
    print(report.text())                       # what the command prints
    report.summaries["runs/demo"].detector.auroc
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from perceptreg import display, runs
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.defaults import OURS
from perceptreg.adversarial.detection import roc_curve
from perceptreg.adversarial.evaluation import AttackEvaluation, compare_paired
from perceptreg.core.errors import PerceptregError
from perceptreg.adversarial.run_attacks import Strength, evaluate_run
from perceptreg.adversarial.summary import AttackMetricsFile, AttackRecord, AttackSummary, Curve, PairedComparison
from perceptreg.adversarial.tables import RATES_NOTE, adaptive_cells, adaptive_table, attack_rows, attack_table, paired_table
from perceptreg.attacking import kept
from perceptreg.figures import plots
from perceptreg.runs import Run, checkpoint
from perceptreg.storage import fileio
from perceptreg.storage.schema import write_sealed


@dataclass(frozen=True)
class AttackReport:
    """What `perceptreg evaluate-attack` measured and wrote: the attack's settings as
    written, each run's ``AttackSummary`` by its path (RUN first, then --compare's), the
    paired comparison of the two, and the files written. ``evaluations``: the images,
    adversarial images and readings behind the numbers."""

    settings: AttackRecord
    summaries: dict[str, AttackSummary]
    paired: PairedComparison | None
    metrics: Path
    rocs: tuple[Path, ...]
    convergence_plots: tuple[Path, ...]
    evaluations: tuple[AttackEvaluation, ...] = field(repr=False)

    def text(self) -> str:
        """What the command prints: the table of every run, each run's adaptive attacks, the
        paired comparison, and the files written."""
        s = self.settings
        parts = [f"{s.attack}, {s.norm} eps {s.eps:g}, on {s.images} images:\n" + attack_table(self.summaries)]
        for name, summary in self.summaries.items():
            if summary.adaptive_rows():
                parts.append(f"\nadaptive attacks on {name} (each ascends its loss - beta * ||x_adv - P(x_adv)||^2; "
                             f"search: the C&W margin, best of the betas per image):\n"
                             + adaptive_table(summary.adaptive_rows()))
        if self.paired:
            parts.append("\n" + paired_table(self.paired, tuple(self.summaries)))
        parts.append(f"written: {self.metrics}, ROC curve: " + ", ".join(map(str, self.rocs)))
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        names = [Path(name).name for name in self.summaries]
        page = display.html_table(["measure", *names], attack_rows(self.summaries), RATES_NOTE)
        for name, summary in self.summaries.items():
            if summary.adaptive_rows():
                page += "\n" + display.html_table(*adaptive_cells(summary.adaptive_rows()),
                                                  caption=f"adaptive attacks on {Path(name).name}")
        return page


def evaluate_attack(run: Run, settings: AttackSettings | None = None, *,
                    compare: Run | str | Path | None = None, images: int | None = None,
                    held_out: int | None = None, judge_runs: Sequence[Run | str | Path] = (),
                    strength: Strength = Strength(), target: int | None = None, attack: str = OURS,
                    attack_options: dict | None = None, layer: str | None = None,
                    device: str = "cpu", progress: bool = True) -> AttackReport:
    """`perceptreg evaluate-attack`: ``evaluate_run`` on ``run`` (``open_run``'s) and on ``compare`` (attacked
    in the same ball, on the same images), each run's ROC curve (RUN/attack_roc.png) and
    convergence curves (``strength``'s curve_eps / curve_steps), McNemar's paired test of
    the two, and RUN/attack_metrics.json (of an attach run, each file named after the layer).

    ``settings`` without eps: the radius of ``run``'s images. ``images``, ``held_out``:
    test images attacked, and clean ones that set the thresholds (``split_test``);
    ``judge_runs``: run folders whose models judge the images; ``attack``: "pgd" or
    "package.module:Class" with ``attack_options``; ``progress``: a bar over each run's attacks.
    Resumes: each run's evaluation is kept as it is measured (``kept``), until the results are written."""
    attacked = [run] + ([runs.open_run(compare)] if compare is not None else [])
    if len(attacked) == 2 and attacked[1].path.resolve() == run.path.resolve():  # a paired test needs two runs
        raise PerceptregError(f"`compare` {attacked[1].path} is the run attacked itself; compare another run")
    judges = [runs.open_run(judge) for judge in judge_runs]
    metrics = fileio.check_output_file_path(run.path / runs.for_layer(runs.ATTACK_METRICS, run.output_layer(layer)))
    evaluations, layers, rocs, curves = [], [], [], []
    partial = kept.folder(metrics)  # each run's evaluation as it is measured: a rerun resumes (kept.py)
    with checkpoint.writer_lock(partial):  # one evaluation of a run's layer at a time writes its files
        for index, current in enumerate(attacked):
            inputs = dict(settings=settings, target=target, images=images, held_out=held_out, judge_runs=judges,
                          device=device, layer=layer, strength=strength, attack=attack, attack_options=attack_options)
            key = kept.evaluation_key(current.path / runs.MODEL_META, **inputs)  # a file: the run flows on alone
            evaluation = kept.kept(partial, index, key)
            if evaluation is None:
                evaluation = evaluate_run(current, progress=progress, **inputs)
                kept.keep(evaluation, partial, index, key)
            settings = evaluation.settings  # the radius of RUN's images: --compare's run is attacked in the same ball
            named = current.output_layer(layer)  # of an attach run: the files and titles name the layer
            evaluations.append(evaluation)
            layers.append(named)
            rocs.append(_roc_figure(evaluation, f"{current.path.name}{f', layer {named}' if named else ''}",
                                    current.path / runs.for_layer(runs.ATTACK_ROC, named)))
            curves += [_convergence_plot(name, curve, "search" if strength.adaptive_search else attack,
                                         current.path / runs.for_layer(runs.ATTACK_CONVERGENCE.format(name), named))
                       for name, curve in (evaluation.summary.convergence or {}).items()]
        first = evaluations[0]
        record = AttackRecord(attack="PGD" if attack == OURS else attack,
                              **{**dataclasses.asdict(settings), "alpha": settings.step_size}, target=target,
                              images=len(first.labels), held_out=first.summary.detector.held_out_images or 0,
                              fprs=list(strength.fprs), layer=layers[0],
                              attack_options=None if attack == OURS else dict(attack_options or {}))
        summaries = {str(current.path): e.summary for current, e in zip(attacked, evaluations)}
        paired = compare_paired(*evaluations, strength.fprs) if compare is not None else None
        written = AttackMetricsFile(settings=record, runs=summaries, paired=paired)
        write_sealed(metrics, written.model_dump(exclude={"checksum", *(() if paired else ("paired",))}))
        kept.discard(partial)
    return AttackReport(record, summaries, paired, metrics, tuple(rocs), tuple(curves), tuple(evaluations))


def _roc_figure(evaluation: AttackEvaluation, name: str, path: Path) -> Path:
    """The detector's ROC curve of one run's evaluation, at ``path``."""
    fpr, tpr = roc_curve(*(scores.cpu() for scores in evaluation.detector_scores()))
    return plots.roc_figure(fpr, tpr, evaluation.summary.detector.auroc, f"||x - P(x)||^2 detector, {name}", path)


def _convergence_plot(name: str, curve: Curve, attack: str, path: Path) -> Path:
    """The strongest attack's rates along eps or steps (``name``), at ``path``."""
    return plots.line_plot(curve.values, {f"{attack} against {name}": {
        "success": [r.rate for r in curve.success],
        **{f"undetected, {key}": [r.rate for r in rates] for key, rates in curve.undetected.items()}}},
        path, xlabel=name, ylabel="share of eligible images", ylim=(-0.02, 1.02))
