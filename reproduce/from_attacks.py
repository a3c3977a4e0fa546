"""The claims' measures read from what the attacks, the edits and the noise study wrote
(attack_metrics.json, interpolation_metrics.json, noise_metrics.json): our number with its
interval over images, and a verdict (``verdicts``). Each reading by a judge names the judge
and its own accuracy on the clean images x, which says what the reading is worth.

    files = RunFiles(Path("runs/reproduce"))
    ours, verdict = attack(fooled)(files)
"""

from __future__ import annotations

from typing import Callable

from perceptreg import runs
from perceptreg.adversarial.detection import BASELINES
from perceptreg.adversarial.summary import Agreement, AttackSummary, Auroc, NoiseMetricsFile, Rate
from reproduce.reading import Measure, RunFiles, own_results, read_results
from reproduce.steps import DEMO
from reproduce.verdicts import MOST, Interval, Verdict, above, below, combine, every, exceeds, of_rate

def attack(pick: Callable[[AttackSummary], tuple[str, Verdict]], run: str = DEMO) -> Measure:
    """``pick`` applied to the results of ``run`` in its attack_metrics.json."""
    return lambda files: read_results(files, f"{run}/{runs.ATTACK_METRICS}",
                                      lambda results: pick(own_results(results, files, run)))


def fooled(summary: AttackSummary) -> tuple[str, Verdict]:
    success = of_rate(summary.attack_success_rate)
    return f"success {success.text()}", above(success, MOST, "success")


def judge_named(judge: str, accuracy: Rate | None) -> str:
    """A judge's name and its own accuracy on the clean images x (what its readings are worth)."""
    right = of_rate(accuracy).text() if accuracy else "not measured: the attack step measures it"
    return f"{judge} (right on x {right})"


def _perceived(readings: dict[str, Agreement], summary: AttackSummary) -> tuple[str, Verdict]:
    """Per judge, P(x_adv) read as the adversarial class against as the true class."""
    cells, verdicts = [], {}
    for judge, reading in readings.items():
        adversarial, true = of_rate(reading.adversarial_label), of_rate(reading.true_label)
        named = judge_named(judge, summary.judges[judge].accuracy_on_x)
        cells.append(f"{named}: adversarial {adversarial.text()}, true {true.text()}")
        verdicts[judge] = exceeds(adversarial, true, ("read as adversarial", "as true"))
    return "; ".join(cells), combine(verdicts)


def perceived_under_pgd(summary: AttackSummary) -> tuple[str, Verdict]:
    return _perceived({judge: j.on_perception_adv for judge, j in summary.judges.items()}, summary)


def perceived_under_search(summary: AttackSummary) -> tuple[str, Verdict]:
    return _perceived(summary.adaptive_search.judges_on_perception_adv, summary)


def _auroc(part: Auroc) -> Interval:
    return Interval(part.auroc, *part.auroc_interval, scale=1, unit="", digits=3)


def beats_baselines(compared: tuple[str, ...]) -> Callable[[AttackSummary], tuple[str, Verdict]]:
    """The detector's AUC against that of each baseline in ``compared`` (keys of
    ``detection.BASELINES``), the shuffled-perturbation control shown beside them."""
    def pick(summary):
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


def detects_pgd(summary: AttackSummary) -> tuple[str, Verdict]:
    return _missed(summary.detector.undetected(), summary.successful_attacks)


def detects_search(summary: AttackSummary) -> tuple[str, Verdict]:
    search = summary.adaptive_search
    return _missed(search.undetected, search.successful_attacks)


# --- edits and noise ---------------------------------------------------------------------------

def judge_of(files: RunFiles, run: str, judge: str) -> str:
    """``judge_named`` with its accuracy on x as the attack on ``run`` measured it (the same
    test images; edits and noise measure none)."""
    def pick(results):
        reading = own_results(results, files, run).judges.get(judge)
        return None if reading is None else reading.accuracy_on_x
    try:
        accuracy = read_results(files, f"{run}/{runs.ATTACK_METRICS}", pick)
    except FileNotFoundError:  # the attack step makes it
        accuracy = None
    return judge_named(judge, accuracy)


def edits(run: str = DEMO) -> Measure:
    """The judge's reading of the mean-direction edit of ``run`` at the largest alpha, as the target."""
    def measure(files: RunFiles) -> tuple[str, Verdict]:
        def pick(results):
            own = own_results(results, files, run)
            mean, judge = own.directions.mean, own.judge()
            read = Interval(mean.flip_curve.judges[judge][-1], *mean.flip_interval.judges[judge][-1])
            return (f"{judge_of(files, run, judge)} reads the edit at a = {own.alphas[-1]:g} as the target, "
                    f"class {own.target}: {read.text()} (H: {100 * mean.flip_curve.H[-1]:.0f} %)",
                    above(read, MOST, "read as the target"))
        return read_results(files, f"{run}/{runs.INTERPOLATION_METRICS}", pick)
    return measure


def noise(run: str = DEMO) -> Measure:
    """The judge's reading of P(x_adv) of noise attacked toward each class, as that class."""
    def measure(files: RunFiles) -> tuple[str, Verdict]:
        def pick(noise: NoiseMetricsFile):
            reached = of_rate(noise.reached[noise.judge])
            return (f"{judge_of(files, run, noise.judge)} reads P(x_adv) as the target: {reached.text()} of "
                    f"{noise.noise_images} noise images", above(reached, MOST, "read as the target"))
        return read_results(files, f"{run}/{runs.NOISE_METRICS}", pick)
    return measure
