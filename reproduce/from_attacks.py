"""The claims' measures read from what the attacks, the edits and the noise study wrote
(attack_metrics.json, interpolation_metrics.json, noise_metrics.json): our number with its
interval over images, and a verdict (``verdicts``). Each reading by a judge names the judge
and its own accuracy on the clean images x, which says what the reading is worth.

    files = RunFiles(Path("reproduce/runs"))
    ours, verdict = attack(fooled)(files)
"""

from __future__ import annotations

from typing import Callable

from perceptreg import runs as runs_files
from perceptreg.adversarial.judges import architecture
from perceptreg.adversarial.detection import BASELINES
from perceptreg.adversarial.summary import Agreement, AttackSummary, Auroc, NoiseMetricsFile, Rate
from reproduce.reading import Measure, RunFiles, own_results, read_results
from reproduce.steps import DEMO, MODEL_SEEDS, seed_run
from reproduce.verdicts import (
    MOST,
    NOT_COMPARABLE,
    Interval,
    Verdict,
    above,
    below,
    combine,
    every,
    exceeds,
    of_rate,
    over_models,
)

DEMOS = tuple(seed_run(DEMO, seed) for seed in MODEL_SEEDS)  # the MNIST models attacked, edited, given noise


def per_model(read: Callable[[RunFiles, str], tuple[str, Verdict]], runs: tuple[str, ...]) -> Measure:
    """``read`` of each trained model of ``runs`` (one per seed) that has been measured, one
    verdict over them (``verdicts.over_models``: labelled "one model" below 3). The first run
    must be measured; a later one not yet made is left out, and the label says how many decided."""
    def measure(files: RunFiles) -> tuple[str, Verdict]:
        cells, verdicts = [], {}
        for run in runs:
            try:
                cell, verdict = read(files, run)
            except FileNotFoundError:
                if run == runs[0]:
                    raise
                continue
            named = f"{run}: " if len(runs) > 1 else ""
            cells.append(named + cell)
            verdicts[run] = verdict
        return " / ".join(cells), over_models(verdicts)
    return measure


def attack(pick: Callable[[AttackSummary, RunFiles, str], tuple[str, Verdict]],
           runs: tuple[str, ...] = DEMOS) -> Measure:
    """``pick`` (results, files, run) applied to the results of each of ``runs`` in its attack_metrics.json."""
    return per_model(lambda files, run: read_results(
        files, f"{run}/{runs_files.ATTACK_METRICS}", lambda results: pick(own_results(results, files, run), files, run)),
        runs)


def fooled(summary: AttackSummary, files: RunFiles, run: str) -> tuple[str, Verdict]:
    success = of_rate(summary.attack_success_rate)
    return f"success {success.text()}", above(success, MOST, "success")


def judge_named(judge: str, accuracy: Rate | None) -> str:
    """A judge's name and its own accuracy on the clean images x (what its readings are worth)."""
    right = of_rate(accuracy).text() if accuracy else "not measured: the attack step measures it"
    return f"{judge} (right on x {right})"


def _twin(files: RunFiles, run: str, judge: str) -> str | None:
    """The architecture a model judge shares with the model it judges, or None: a twin reads
    x_adv as the attack transfers to it (``judges.run_judge`` refuses one; files made before did not)."""
    folders = files.root / judge.removeprefix("model "), files.root / run
    if not judge.startswith("model ") or not all((f / runs_files.CONFIG).exists() for f in folders):
        return None
    judged, judging = (architecture(runs_files.read_config(folder)) for folder in folders)
    return judged if judged == judging else None


def _perceived(on_x_adv: dict[str, Agreement] | None, on_perception: dict[str, Agreement], summary: AttackSummary,
               files: RunFiles, run: str) -> tuple[str, Verdict]:
    """Per judge, x_adv and P(x_adv) read as the adversarial class (and P(x_adv) as the true
    one): the claim is decided on the difference, P(x_adv) read as adversarial more often than
    x_adv itself (what the perception adds to the attack's transfer) and more than as true."""
    cells, verdicts = [], {}
    for judge, reading in on_perception.items():
        adversarial, true = of_rate(reading.adversarial_label), of_rate(reading.true_label)
        named = judge_named(judge, summary.judges[judge].accuracy_on_x)
        if on_x_adv is None:
            cells.append(f"{named}: x_adv not recorded; P(x_adv) adversarial {adversarial.text()}, true {true.text()}")
            verdicts[judge] = Verdict(NOT_COMPARABLE, "the file holds no reading of x_adv to set P(x_adv)'s against: "
                                                      "make it again (its row names the command)")
            continue
        transferred = of_rate(on_x_adv[judge].adversarial_label)
        cells.append(f"{named}: x_adv read as adversarial {transferred.text()}; P(x_adv) read as adversarial "
                     f"{adversarial.text()}, as true {true.text()}")
        if (twin := _twin(files, run, judge)) is not None:
            verdicts[judge] = Verdict(NOT_COMPARABLE, f"the judge has the judged model's architecture ({twin}): "
                                                      "it reads the attack transferring, not the image")
            continue
        verdicts[judge] = every({
            "beyond the transfer": exceeds(adversarial, transferred, ("P(x_adv) read as adversarial", "x_adv")),
            "adversarial over true": exceeds(adversarial, true, ("P(x_adv) read as adversarial", "as true"))})
    return "; ".join(cells), combine(verdicts)


def perceived_under_pgd(summary: AttackSummary, files: RunFiles, run: str) -> tuple[str, Verdict]:
    judges = summary.judges
    return _perceived({judge: j.on_x_adv for judge, j in judges.items()},
                      {judge: j.on_perception_adv for judge, j in judges.items()}, summary, files, run)


def perceived_under_search(summary: AttackSummary, files: RunFiles, run: str) -> tuple[str, Verdict]:
    search = summary.adaptive_search
    return _perceived(search.judges_on_adversarial, search.judges_on_perception_adv, summary, files, run)


def _auroc(part: Auroc) -> Interval:
    return Interval(part.auroc, *part.auroc_interval, scale=1, unit="", digits=3)


def beats_baselines(compared: tuple[str, ...]) -> Callable[[AttackSummary], tuple[str, Verdict]]:
    """The detector's AUC against that of each baseline in ``compared`` (keys of
    ``detection.BASELINES``), the shuffled-perturbation control shown beside them."""
    def pick(summary, files, run):
        detector, baselines = summary.detector, summary.detector.baselines
        shown = {"||x - P(x)||^2": detector, **{BASELINES[key][0]: baselines[key] for key in compared},
                 "control: " + BASELINES["shuffled_perturbation"][0]: baselines["shuffled_perturbation"]}
        ours = "ROC AUC " + "; ".join(f"{name} {_auroc(part).text()}" for name, part in shown.items())
        return ours, every({BASELINES[key][0]: exceeds(_auroc(detector), _auroc(baselines[key]),
                                                       ("detector AUC", f"{BASELINES[key][0]} AUC"))
                            for key in compared})
    return pick


def _missed(undetected: dict[str, dict[str, Rate]], successes: int) -> tuple[str, Verdict]:
    """Of the successful attacks, the share the detector misses, per side and false-positive
    rate (``undetected``: "succeeded and undetected" over the eligible images, by side and rate)."""
    cells, verdicts = [], {}
    for sided, by_fpr in undetected.items():
        for fpr, hidden in by_fpr.items():
            missed = of_rate(Rate.count(round(hidden.rate * hidden.n), successes))
            name = f"{100 * float(fpr):g} % FPR, {sided}"
            cells.append(f"{name}: {missed.text()}")
            verdicts[name] = below(missed, MOST, "missed")
    return f"of {successes} successful attacks, missed at " + "; ".join(cells), every(verdicts)


def detects_pgd(summary: AttackSummary, files: RunFiles, run: str) -> tuple[str, Verdict]:
    return _missed(summary.detector.undetected(), summary.successful_attacks)


def detects_search(summary: AttackSummary, files: RunFiles, run: str) -> tuple[str, Verdict]:
    search = summary.adaptive_search
    ours, verdict = _missed(search.undetected, search.successful_attacks)
    return ours + _converged(summary), verdict


def _converged(summary: AttackSummary) -> str:
    """The search's success and its 5 % one-sided undetected rate at each number of steps, where
    measured (``--curve-steps``): a search that has converged gains nothing from more steps."""
    curve = (summary.convergence or {}).get("steps")
    if not curve or "one-sided, 0.05" not in curve.undetected:
        return ""
    points = zip(curve.values, curve.success, curve.undetected["one-sided, 0.05"])
    return ("; convergence (steps: success, undetected at 5 % FPR one-sided): "
            + ", ".join(f"{steps}: {100 * s.rate:.1f} %, {100 * u.rate:.1f} %" for steps, s, u in points))


# --- edits and noise ---------------------------------------------------------------------------

def judge_of(files: RunFiles, run: str, judge: str) -> str:
    """``judge_named`` with its accuracy on x as the attack on ``run`` measured it (the same
    test images; edits and noise measure none)."""
    def pick(results):
        reading = own_results(results, files, run).judges.get(judge)
        return None if reading is None else reading.accuracy_on_x
    try:
        accuracy = read_results(files, f"{run}/{runs_files.ATTACK_METRICS}", pick)
    except FileNotFoundError:  # the attack step makes it
        accuracy = None
    return judge_named(judge, accuracy)


def edits(models: tuple[str, ...] = DEMOS) -> Measure:
    """The judge's reading of the mean-direction edit of each run at the largest alpha, as the target."""
    def measure(files: RunFiles, run: str) -> tuple[str, Verdict]:
        def pick(results):
            own = own_results(results, files, run)
            mean, judge = own.directions.mean, own.judge()
            read = Interval(mean.flip_curve.judges[judge][-1], *mean.flip_interval.judges[judge][-1])
            return (f"{judge_of(files, run, judge)} reads the edit at a = {own.alphas[-1]:g} as the target, "
                    f"class {own.target}: {read.text()} (H: {100 * mean.flip_curve.H[-1]:.0f} %)",
                    above(read, MOST, "read as the target"))
        return read_results(files, f"{run}/{runs_files.INTERPOLATION_METRICS}", pick)
    return per_model(measure, models)


def noise(models: tuple[str, ...] = DEMOS) -> Measure:
    """The judge's reading of P(x_adv) of noise attacked toward each class, as that class, per run."""
    def measure(files: RunFiles, run: str) -> tuple[str, Verdict]:
        def pick(noise: NoiseMetricsFile):
            reached = of_rate(noise.reached[noise.judge])
            return (f"{judge_of(files, run, noise.judge)} reads P(x_adv) as the target: {reached.text()} of "
                    f"{noise.noise_images} noise images", above(reached, MOST, "read as the target"))
        return read_results(files, f"{run}/{runs_files.NOISE_METRICS}", pick)
    return per_model(measure, models)
