"""The claims REPRODUCING.md checks: each the paper's (with its section and figure) or ours,
and how it is measured from the run folders: our number with its interval, and a verdict
(``verdicts``) computed from them. ``RunFiles`` hashes each file it reads, for the page's
provenance.

    files = RunFiles(Path("runs/reproduce"))
    ours, verdict = CLAIMS[0].measure(files)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from perceptreg import runs
from perceptreg.adversarial.detection import BASELINES
from perceptreg.adversarial.run_attacks import undetected_rates
from perceptreg.adversarial.tables import AttackMetricsFile, NoiseMetricsFile
from perceptreg.core.errors import PerceptregError
from perceptreg.data.registry import lookup
from perceptreg.edits.latent import InterpolationMetricsFile
from perceptreg.measures import rate
from perceptreg.storage import fileio
from perceptreg.storage.schema import load_sealed_file
from perceptreg.sweeps.sweep import SweepFile
from perceptreg.sweeps.verdicts import (
    NOT_COMPARABLE,
    Interval,
    Verdict,
    above,
    below,
    combine,
    every,
    exceeds,
    of_rate,
    over_seeds,
    paired_difference,
)

STRIPS_IMAGES = 4000  # MNIST-strips' training images: the MNIST-5k split's 4000 centre digits
SVHN_IMAGES = 73_257  # SVHN's training set, which mnist-strips:73257 matches in number
BATCH = 64  # the sweep's batch size
LARGE_EPOCHS = 10
# The 4000-image sweep again, for as many optimizer steps as the 73,257-image one (182 epochs:
# 11,466 steps against 11,450): does the larger set win by its images or by its steps?
MATCHED_EPOCHS = round(LARGE_EPOCHS * math.ceil(SVHN_IMAGES / BATCH) / math.ceil(STRIPS_IMAGES / BATCH))
SEEDS = "0,1,2,3,4"  # verdicts.MIN_SEEDS: fewer make an interval over seeds that decides nothing
LARGEST = "100"  # the paper's large lambda, where the 4000-image sweep's accuracy drops
PAPER_SWEEP = {"0.0001": 88.5, "0.001": 87.9, "0.01": 87.8, "100": 81.3}  # Fig. 3, SVHN test accuracy (%)
DELICATE = "0.001"  # Sec. 3.2: "in this regime we are able to see the restricted attention"
TASK_PROBE = "label (the task)"  # the probes on z other than this one read what the task did not ask
MOST = 0.5  # "most images": the line a rate is tested against where the paper shows examples, not rates
DEMO = "demo"  # the MNIST run that is attacked and edited
T = TypeVar("T")


# The results files the page reads, and the schema each is checked against.
RESULTS_SCHEMAS = {runs.ATTACK_METRICS: AttackMetricsFile, runs.NOISE_METRICS: NoiseMetricsFile,
                   runs.INTERPOLATION_METRICS: InterpolationMetricsFile, runs.SWEEP_JSON: SweepFile}


class RunFiles:
    """The run files under ``root`` that the page reads, each hashed (SHA-256) when read."""

    def __init__(self, root: Path):
        self.root, self.hashes = Path(root), {}

    def json(self, relative: str) -> dict:
        """A results file, through the guarded reader, checked against its schema and its
        checksum (``schema.load_sealed_file``), then hashed for the provenance."""
        path = self.root / relative
        if not path.exists():  # the table shows the command that makes it
            raise FileNotFoundError(path)
        data = load_sealed_file(path, RESULTS_SCHEMAS[path.name],
                                "make it again: delete it and run the page with --run (its row names the command)")
        self.hashes[relative] = hashlib.sha256(fileio.guarded(path).read_bytes()).hexdigest()
        return data


@dataclass(frozen=True)
class Claim:
    claim: str  # the paper's words, shortened, or ours
    where: str  # the paper's section and figure, or "ours"
    paper: str  # the paper's number, or "-" where it gives none
    step: str  # a key of STEPS
    measure: Callable[[RunFiles], tuple[str, Verdict]]  # our number and the verdict, from the runs


def read_results(files: RunFiles, relative: str, pick: Callable[[dict], T]) -> T:
    """``pick`` applied to a results file; a file not in our format is named."""
    data = files.json(relative)
    try:
        return pick(data)
    except (KeyError, TypeError, IndexError, ValueError, StopIteration, AttributeError) as err:
        raise PerceptregError(f"{files.root / relative}: not in the format perceptreg writes ({type(err).__name__}: "
                              f"{err}); make it again with the command in the table") from None


def own_results(results: dict, files: RunFiles, run: str) -> dict:
    """The results of ``run`` in a file that holds those of several (the command's RUN and its
    --compare): keyed by each run's path as the command was given it, inside the root; by the
    folder's name when the root has been moved or copied since (absolute keys)."""
    for same in (lambda key: (files.root / key).resolve() == (files.root / run).resolve(),
                 lambda key: Path(key).name == Path(run).name):
        found = [value for key, value in results["runs"].items() if same(key)]
        if len(found) == 1:
            return found[0]
    raise KeyError(f"no results of {run!r}")


# --- the sweeps ------------------------------------------------------------------------------

def seed_values(summary: dict, variant: str, key: str) -> list[float]:
    return [member[key] for member in summary["per_seed"][variant]]


def _collapsed(summary: dict, variant: str) -> int:
    return sum(member["decoder_collapsed"] for member in summary["per_seed"][variant])


def _collapse_flag(summary: dict, variant: str) -> str:
    return f"decoder collapsed in {_collapsed(summary, variant)} of {len(summary['per_seed'][variant])} seeds"


def _other_probes(member: dict) -> float:
    """The mean accuracy of a member's linear probes on z for what the task did not ask."""
    others = [value for name, value in member["probes"].items() if name != TASK_PROBE]
    return sum(others) / len(others)


def lambda_ends(summary: dict) -> tuple[str, str]:
    """The smallest and the largest lambda of a sweep (its variants' names)."""
    lams = sorted((v for v in summary["per_seed"] if v != "post-hoc"), key=float)
    return lams[0], lams[-1]


def _accuracies(summary: dict) -> str:
    return "; ".join(f"{v}: {over_seeds(seed_values(summary, v, 'test_accuracy')).text()}, "
                     f"{_collapse_flag(summary, v)}" for v in summary["per_seed"] if v != "post-hoc")


def attention(files: RunFiles) -> tuple[str, Verdict]:
    def pick(summary):
        ratio = over_seeds(seed_values(summary, DELICATE, "centre_to_edge"), scale=1, unit="", digits=2)
        ours = (f"lambda {DELICATE} (the delicate regime): centre-to-edge error ratio of P(x) "
                f"{ratio.text()}; {_collapse_flag(summary, DELICATE)}")
        if _collapsed(summary, DELICATE):
            return ours, Verdict(NOT_COMPARABLE, "a collapsed decoder shows nothing of its inputs, centre or edge")
        return ours, below(ratio, 1, "centre error / edge error")
    return read_results(files, "sweep-4000/sweep.json", pick)


def accuracy_falls(sweep: str, data: str = "MNIST-strips'") -> Callable[[RunFiles], tuple[str, Verdict]]:
    """Accuracy at the sweep's smallest lambda against its largest, paired by seed (``data``:
    whose numbers ours are, beside the paper's SVHN)."""
    def pick(summary):
        smallest, largest = lambda_ends(summary)
        drop = paired_difference(*(seed_values(summary, v, "test_accuracy") for v in (smallest, largest)))
        verdict = above(drop, 0, f"accuracy at lambda {smallest} minus at {largest}, paired by seed,")
        return (_accuracies(summary) + f"; drop {drop.text()}",
                Verdict(verdict.outcome, verdict.why + "; its size is not compared with the paper's 7.2 points: "
                        f"those are SVHN's, with the paper's training, ours {data}"))
    return lambda files: read_results(files, f"{sweep}/sweep.json", pick)


def information_grows(files: RunFiles) -> tuple[str, Verdict]:
    def pick(summary):
        smallest, largest = lambda_ends(summary)
        kept = {v: [_other_probes(m) for m in summary["per_seed"][v]] for v in (smallest, largest)}
        gain = paired_difference(kept[largest], kept[smallest])
        probes = ", ".join(name for name in summary["per_seed"][smallest][0]["probes"] if name != TASK_PROBE)
        ours = ("mean linear-probe accuracy on z for " + probes + ": "
                + "; ".join(f"{v}: {over_seeds(kept[v]).text()}" for v in kept) + f"; gain {gain.text()}")
        return ours, above(gain, 0, f"probe accuracy at lambda {largest} minus at {smallest}, paired by seed,")
    return read_results(files, "sweep-4000/sweep.json", pick)


def optimizer_steps(summary: dict) -> int:
    """Steps of one member of a sweep of MNIST-strips: batches per epoch times epochs."""
    config = summary["config"]
    _, argument = lookup(config["dataset"])
    images = config["train_size"] or (int(argument) if argument else STRIPS_IMAGES)
    return math.ceil(images / config["batch_size"]) * config["epochs"]


def images_or_steps(files: RunFiles) -> tuple[str, Verdict]:
    """Accuracy at the largest lambda: 73,257 images against 4000 at the same number of steps."""
    def read(sweep: str) -> tuple[int, Interval]:
        summary = files.json(f"{sweep}/sweep.json")
        return optimizer_steps(summary), over_seeds(seed_values(summary, LARGEST, "test_accuracy"))

    try:
        (large_steps, large), (matched_steps, matched), (steps, small) = (
            read(name) for name in ("sweep-73257", "sweep-4000-steps", "sweep-4000"))
    except (KeyError, TypeError, IndexError, ValueError) as err:
        raise PerceptregError(f"a sweep.json under {files.root} is not in the format perceptreg writes "
                              f"({type(err).__name__}: {err}); make it again with the command in the table") from None
    ours = (f"lambda {LARGEST}: {SVHN_IMAGES:,} images, {large_steps:,} steps: {large.text()}; {STRIPS_IMAGES} images, "
            f"{matched_steps:,} steps: {matched.text()}; {STRIPS_IMAGES} images, {steps:,} steps: {small.text()}")
    if abs(large_steps - matched_steps) > 0.01 * large_steps:
        return ours, Verdict(NOT_COMPARABLE, f"the steps differ by more than 1 %: {large_steps:,} and {matched_steps:,}")
    return ours, exceeds(large, matched, (f"{SVHN_IMAGES:,} images", f"{STRIPS_IMAGES} images at the same steps"))


# --- the attacks -----------------------------------------------------------------------------

def attack(pick: Callable[[dict], tuple[str, Verdict]], run: str = DEMO) -> Callable[[RunFiles], tuple[str, Verdict]]:
    """``pick`` applied to the results of ``run`` in its attack_metrics.json."""
    return lambda files: read_results(files, f"{run}/{runs.ATTACK_METRICS}",
                                      lambda results: pick(own_results(results, files, run)))


def fooled(summary: dict) -> tuple[str, Verdict]:
    success = of_rate(summary["attack_success_rate"])
    return f"success {success.text()}", above(success, MOST, "success")


def judge_named(judge: str, accuracy: dict | None) -> str:
    """A judge's name and its own accuracy on the clean images x (what its readings are worth)."""
    right = of_rate(accuracy).text() if accuracy else "not measured: the attack step measures it"
    return f"{judge} (right on x {right})"


def _perceived(readings: dict[str, dict], summary: dict) -> tuple[str, Verdict]:
    """Per judge, P(x_adv) read as the adversarial class against as the true class."""
    cells, verdicts = [], {}
    for judge, reading in readings.items():
        adversarial, true = of_rate(reading["adversarial_label"]), of_rate(reading["true_label"])
        named = judge_named(judge, summary["judges"][judge]["accuracy_on_x"])
        cells.append(f"{named}: adversarial {adversarial.text()}, true {true.text()}")
        verdicts[judge] = exceeds(adversarial, true, ("read as adversarial", "as true"))
    return "; ".join(cells), combine(verdicts)


def perceived_under_pgd(summary: dict) -> tuple[str, Verdict]:
    return _perceived({judge: j["on_P(x_adv)"] for judge, j in summary["judges"].items()}, summary)


def perceived_under_search(summary: dict) -> tuple[str, Verdict]:
    return _perceived(summary["adaptive_search"]["judges_on_P(x_adv)"], summary)


def _auroc(part: dict) -> Interval:
    return Interval(part["auroc"], *part["auroc_interval"], scale=1, unit="", digits=3)


def beats_baselines(compared: tuple[str, ...]) -> Callable[[dict], tuple[str, Verdict]]:
    """The detector's AUC against that of each baseline in ``compared`` (keys of
    ``detection.BASELINES``), the shuffled-perturbation control shown beside them."""
    def pick(summary):
        detector, baselines = summary["detector"], summary["detector"]["baselines"]
        shown = {"||x - P(x)||^2": detector, **{BASELINES[key][0]: baselines[key] for key in compared},
                 "control: " + BASELINES["shuffled_perturbation"][0]: baselines["shuffled_perturbation"]}
        ours = "ROC AUC " + "; ".join(f"{name} {_auroc(part).text()}" for name, part in shown.items())
        return ours, every({BASELINES[key][0]: exceeds(_auroc(detector), _auroc(baselines[key]),
                                                       ("detector AUC", f"{BASELINES[key][0]} AUC"))
                            for key in compared})
    return pick


def _missed(undetected: dict, successes: int) -> tuple[str, Verdict]:
    """Of the successful attacks, the share the detector misses, per side and false-positive
    rate (``undetected``: "succeeded and undetected" over the eligible images, by side and rate)."""
    cells, verdicts = [], {}
    for sided, by_fpr in undetected.items():
        for fpr, hidden in by_fpr.items():
            missed = of_rate(rate(round(hidden["rate"] * hidden["n"]), successes))
            name = f"{100 * float(fpr):g} % FPR, {sided}"
            cells.append(f"{name}: {missed.text()}")
            verdicts[name] = below(missed, MOST, "missed")
    return f"of {successes} successful attacks, missed at " + "; ".join(cells), every(verdicts)


def detects_pgd(summary: dict) -> tuple[str, Verdict]:
    return _missed(undetected_rates(summary), summary["successful_attacks"])


def detects_search(summary: dict) -> tuple[str, Verdict]:
    search = summary["adaptive_search"]
    return _missed(search["undetected"], search["successful_attacks"])


# --- edits and noise --------------------------------------------------------------------------

def judge_of(files: RunFiles, run: str, judge: str) -> str:
    """``judge_named`` with its accuracy on x as the attack on ``run`` measured it (the same
    test images; edits and noise measure none)."""
    def pick(results):
        return own_results(results, files, run)["judges"].get(judge, {}).get("accuracy_on_x")
    try:
        accuracy = read_results(files, f"{run}/{runs.ATTACK_METRICS}", pick)
    except FileNotFoundError:  # the attack step makes it
        accuracy = None
    return judge_named(judge, accuracy)


def edits(run: str = DEMO) -> Callable[[RunFiles], tuple[str, Verdict]]:
    """The judge's reading of the mean-direction edit of ``run`` at the largest alpha, as the target."""
    def measure(files: RunFiles) -> tuple[str, Verdict]:
        def pick(results):
            own = own_results(results, files, run)
            mean = own["directions"]["mean"]
            judge = next(k for k in mean["flip_curve"] if k not in ("H(image)", "C(latent)"))
            low, high = mean["flip_interval"][judge][-1]
            read = Interval(mean["flip_curve"][judge][-1], low, high)
            return (f"{judge_of(files, run, judge)} reads the edit at a = {own['alphas'][-1]:g} as the target, "
                    f"class {own['target']}: {read.text()} (H: {100 * mean['flip_curve']['H(image)'][-1]:.0f} %)",
                    above(read, MOST, "read as the target"))
        return read_results(files, f"{run}/{runs.INTERPOLATION_METRICS}", pick)
    return measure


def noise(run: str = DEMO) -> Callable[[RunFiles], tuple[str, Verdict]]:
    """The judge's reading of P(x_adv) of noise attacked toward each class, as that class."""
    def measure(files: RunFiles) -> tuple[str, Verdict]:
        def pick(d):
            reached = of_rate(d["reached"][d["judge"]])
            return (f"{judge_of(files, run, d['judge'])} reads P(x_adv) as the target: {reached.text()} of "
                    f"{d['noise_images']} noise images", above(reached, MOST, "read as the target"))
        return read_results(files, f"{run}/{runs.NOISE_METRICS}", pick)
    return measure


ON_MNIST = "on MNIST; Figs. 4, 5, 8-13 show CelebA"
MODEL_FREE = ("pixel_statistic", "blur_residual")  # on grey digits; natural images compare others (claims_natural)
CLAIMS = [
    Claim("the classifier's P(x) keeps the centre digit and forgets the edges (we read it on MNIST-strips)",
          "paper, Sec. 3.1, Fig. 2 (SVHN)", "-", "sweep-4000", attention),
    Claim("test accuracy decreases as lambda increases, slowly (we test the direction on MNIST-strips, 4000 images)",
          "paper, Sec. 3.2, Fig. 3 (SVHN)", ", ".join(f"{k}: {v} %" for k, v in PAPER_SWEEP.items()), "sweep-4000",
          accuracy_falls("sweep-4000")),
    Claim("the larger lambda, the more information the features keep (the side digits, the colours)",
          "paper, Sec. 3.2, Fig. 3 (SVHN)", "-", "sweep-4000", information_grows),
    Claim("accuracy still decreases with lambda at SVHN's training size (MNIST-strips, 73,257 images)", "ours", "-",
          "sweep-73257", accuracy_falls("sweep-73257")),
    Claim(f"at lambda {LARGEST}, 73,257 images beat 4000 at the same number of optimizer steps (control)", "ours", "-",
          "sweep-4000-steps", images_or_steps),
    Claim("PGD (L-inf, eps 0.2, 100 steps) changes H's prediction on most images", f"paper, Sec. 4, Fig. 14 ({ON_MNIST})",
          "-", "attack", attack(fooled)),
    Claim("P(x_adv) looks like the adversarial class (read by judges: P(x_adv) as adversarial more often than as true)",
          f"paper, Sec. 4, Fig. 14 ({ON_MNIST})", "-", "attack", attack(perceived_under_pgd)),
    Claim("... still, against the strong adaptive attack (C&W margin - beta ||x_adv - P(x_adv)||^2, best of the betas)",
          "ours", "-", "attack", attack(perceived_under_search)),
    Claim("||x - P(x)||^2 separates PGD's images from clean ones better than model-free statistics",
          "ours (the paper makes no detection claim)", "-", "attack", attack(beats_baselines(MODEL_FREE))),
    Claim("||x - P(x)||^2 flags most of PGD's successful attacks at 1 % and 5 % false positives (one- and two-sided)",
          "ours", "-", "attack", attack(detects_pgd)),
    Claim("... and most of the strong adaptive attack's, which aims inside the detector's thresholds", "ours", "-",
          "attack", attack(detects_search)),
    Claim("a latent direction dz = F(x_adv) - F(x) from a targeted attack edits images toward the class",
          "paper, Sec. 5, Fig. 6 (CelebA; we edit MNIST digits)", "-", "interpolate", edits()),
    Claim("noise attacked toward a class is perceived as that class", "paper, Sec. 6, Fig. 7 (MNIST)", "-", "noise",
          noise()),
]
