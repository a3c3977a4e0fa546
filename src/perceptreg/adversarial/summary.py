"""What an attack measured, as types: ``AttackSummary`` (made by ``evaluation.measure_adversarial``,
grown by ``run_attacks.evaluate_run``), the paired comparison of two models, and the
results files written from them, attack_metrics.json and noise_metrics.json.

The files keep the key names they have always had ("accuracy_on_P(x)", "on_P(x_adv)"):
each such field has that key as its alias, so a file is read and written by it, and a
dict read from a file (``storage.schema.load_sealed_file``) has the same keys as before.
A file with a key missing or misspelt is refused naming the file and the key.

    summary = evaluation.summary
    summary.attack_success_rate.rate, summary.judges["3-NN pixels"].on_perception_adv.true_label
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from perceptreg.adversarial.detection import BASELINES
from perceptreg.measures.records import CONFIG, Rate, Record  # Record and Rate: here before they moved to measures
from perceptreg.storage.schema import Sealed

NO_INTERVAL = (math.nan, math.nan)  # files written before AUCs had intervals; fewer than two of a kind


def format_auroc(value: float, interval: tuple[float, float]) -> str:
    """"0.986 [0.975, 0.994]"; without an interval (fewer than two of a kind), the value alone."""
    low, high = interval
    if math.isnan(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


class Agreement(Record):
    """How often a judge reads the successful attacks' images as H's adversarial label, the
    true label or neither (``judges.judge_agreement``), of ``count`` images."""
    adversarial_label: Rate
    true_label: Rate
    other: Rate
    count: int


class JudgeReading(Record):
    """One judge's readings: its accuracy on x and on P(x), and of the successful attacks,
    its readings of x_adv (how far the attack transfers) and of P(x_adv)."""
    accuracy_on_x: Rate
    accuracy_on_perception: Rate = Field(alias="accuracy_on_P(x)")
    on_x_adv: Agreement
    on_perception_adv: Agreement = Field(alias="on_P(x_adv)")


class Auroc(Record):
    """A detector score's ROC AUC separating clean from successfully attacked images."""
    score: str
    auroc: float
    auroc_interval: tuple[float, float] = NO_INTERVAL

    def text(self) -> str:
        return format_auroc(self.auroc, self.auroc_interval)


class Baseline(Auroc):
    """A baseline's AUC; the shuffled perturbation's also H's accuracy on it and its L2 beside the attack's."""
    h_correct: Rate | None = Field(default=None, alias="H_correct")
    mean_l2: float | None = None
    mean_l2_attack: float | None = None


class AtRate(Record):
    """The detector at one false-positive rate: its band (low None: one-sided), the false
    positives it gives on the attacked images' clean scores, and of the images H classifies
    right, the share the attack fooled without being flagged."""
    fpr: float
    low: float | None
    high: float
    false_positives: Rate
    succeeded_and_undetected: Rate


class Detector(Auroc):
    """||x - P(x)||^2 as a detector: its AUC, the images it was measured on, their mean
    scores, the baselines' AUCs (by ``BASELINES`` key), and with held-out clean images its
    rates at fixed false positives, one- and two-sided."""
    clean_images: int
    adversarial_images: int
    mean_score_clean: float
    mean_score_adversarial: float
    baselines: dict[str, Baseline] | None = None
    held_out_images: int | None = None
    at_fpr: dict[str, list[AtRate]] | None = None

    def undetected(self) -> dict[str, dict[str, Rate]]:
        """{side: {"0.05": rate}} of "succeeded and undetected" ({} without held-out images);
        the rates as text keys, as JSON keeps them."""
        return {sided: {f"{entry.fpr:g}": entry.succeeded_and_undetected for entry in entries}
                for sided, entries in (self.at_fpr or {}).items()}


class AdaptiveRow(Record):
    """One adaptive attack (``beta``; the search over ``betas``: beta None): its success, the
    detector's and baselines' AUCs, the share that succeeded undetected at each rate and side,
    and the judges' readings of P(x_adv) and of x_adv."""
    beta: float | None
    attack_success: Rate
    successful_attacks: int
    auroc: float
    auroc_interval: tuple[float, float] = NO_INTERVAL
    mean_score_adversarial: float
    undetected: dict[str, dict[str, Rate]]
    baselines: dict[str, float]
    judges_on_perception_adv: dict[str, Agreement] = Field(alias="judges_on_P(x_adv)")
    betas: list[float] | None = None
    judges_on_adversarial: dict[str, Agreement] | None = Field(default=None, alias="judges_on_x_adv")  # older: none

    @classmethod
    def of(cls, beta: float | None, summary: "AttackSummary", betas: list[float] | None = None) -> "AdaptiveRow":
        detector = summary.detector
        return cls(beta=beta, attack_success=summary.attack_success_rate,
                   successful_attacks=summary.successful_attacks, auroc=detector.auroc,
                   auroc_interval=detector.auroc_interval, mean_score_adversarial=detector.mean_score_adversarial,
                   undetected=detector.undetected(),
                   baselines={name: b.auroc for name, b in (detector.baselines or {}).items()},
                   judges_on_perception_adv={name: j.on_perception_adv for name, j in summary.judges.items()},
                   betas=betas, judges_on_adversarial={name: j.on_x_adv for name, j in summary.judges.items()})

    @property
    def name(self) -> str:
        """"0.1", or the search "search 0,0.1,1"."""
        return f"{self.beta:g}" if self.beta is not None else "search " + ",".join(f"{b:g}" for b in self.betas)


class Curve(Record):
    """The strongest attack's rates at each value of eps or steps: has it converged?"""
    values: list[int | float]
    success: list[Rate]
    undetected: dict[str, list[Rate]]  # by "side, rate"


class AttackSummary(Record):
    """An attack measured (``evaluation.measure_adversarial``). ``attack_success_rate``:
    of the images H classifies right (of those not already of the target, targeted), the
    share the attack turned; ``successful_attacks`` counts them. The optional parts are
    ``run_attacks.evaluate_run``'s: adaptive rows, the search, convergence curves."""
    images: int
    clean_accuracy: Rate
    robust_accuracy: Rate
    attack_success_rate: Rate
    successful_attacks: int
    judges: dict[str, JudgeReading]
    detector: Detector
    adaptive: list[AdaptiveRow] | None = None
    adaptive_search: AdaptiveRow | None = None
    convergence: dict[str, Curve] | None = None

    def adaptive_rows(self) -> list[AdaptiveRow]:
        """The adaptive attacks measured, one per beta, then the search."""
        return [*(self.adaptive or ()), *([self.adaptive_search] if self.adaptive_search else [])]

    def line(self, targeted: bool = False) -> str:
        """"attack success 99.3 % [96.1, 99.9] of the 139 images H classifies right (200 attacked)":
        each number with what it counts."""
        eligible = "images H classifies right" + (", not of the target already" if targeted else "")
        return (f"attack success {self.attack_success_rate} of the {self.attack_success_rate.n} {eligible} "
                f"({self.images} attacked)")


class PairedTest(Record):
    """McNemar's exact test of one yes/no reading, paired image by image (``measures.mcnemar``)."""
    both: int
    first_only: int
    second_only: int
    neither: int
    p_value: float


class PairedComparison(Record):
    """Two models attacked on the same images, over the ``paired_images`` both attacks fooled."""
    paired_images: int
    tests: dict[str, PairedTest]


# --- the results files ------------------------------------------------------------------------

class AttackRecord(Record):
    """attack_metrics.json's settings: the attack as it ran (eps resolved, alpha as used), on
    how many images, thresholds on how many held-out ones, at which false-positive rates."""
    attack: str
    eps: float = Field(gt=0)
    steps: int = Field(ge=1)
    norm: str
    alpha: float = Field(gt=0)
    seed: int = Field(ge=0)
    loss: str
    restarts: int = Field(ge=1)
    schedule: str
    best_iterate: bool
    target: int | None = Field(ge=0)
    images: int = Field(ge=1)
    held_out: int = Field(ge=0)
    fprs: list[Annotated[float, Field(gt=0, lt=1)]]
    layer: str | None
    attack_options: dict | None = None


class AttackMetricsFile(Sealed):
    """attack_metrics.json (`perceptreg evaluate-attack`, sealed): its settings, each run's
    summary by the run's path, and the paired comparison with --compare."""
    model_config = CONFIG
    settings: AttackRecord
    runs: dict[str, AttackSummary] = Field(min_length=1)
    paired: PairedComparison | None = None


class NoiseRecord(Record):
    """noise_metrics.json's settings: the attack's (eps resolved) and the images per class."""
    eps: float
    steps: int
    norm: str
    alpha: float | None
    seed: int
    loss: str
    restarts: int
    schedule: str
    best_iterate: bool
    images_per_class: int


class NoiseMetricsFile(Sealed):
    """noise_metrics.json (`perceptreg attack --from-noise`, sealed): its settings, how many
    noise images, the judge's name, and each reader's rate of reaching the target: "H", the
    judge by its name, and "judge on x", the judge's accuracy on clean test images."""
    model_config = CONFIG
    settings: NoiseRecord
    noise_images: int = Field(ge=1)
    judge: str
    reached: dict[str, Rate] = Field(min_length=1)


def baseline_keys(summaries) -> list[str]:
    """The ``BASELINES`` measured in any of ``summaries``, in their order."""
    return [key for key in BASELINES if any(key in (s.detector.baselines or {}) for s in summaries)]
