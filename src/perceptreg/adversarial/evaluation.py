"""An attack, measured: what it did to H and to the perception, and how well the
reconstruction error ||x - P(x)||^2 detects it, beside its baselines (``detection``).

    evaluation = measure_attack(model, PGD(model, eps=0.2), test_data, Measuring(judges=[KNNJudge(train_data)]))
    evaluation.summary.detector.auroc

``measure_attack`` attacks, then measures; ``measure_adversarial`` measures images attacked
already (the same attack read through another perception of the same H). On a run folder,
with the judges, thresholds and adaptive attacks of `perceptreg evaluate-attack`:
``run_attacks.evaluate_run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from perceptreg import display
from perceptreg.display import tqdm
from perceptreg.adversarial import tables
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.callables import attack_name, check_adversarial
from perceptreg.adversarial.defaults import DEFAULT_FPRS
from perceptreg.adversarial.detection import (
    BASELINES,
    blur_residual_scores,
    median_filter,
    pixel_statistic_scores,
    reconstruction_scores,
    roc_auc,
    roc_auc_interval,
    shuffle_perturbations,
    squeeze_bits,
    squeezing_scores,
)
from perceptreg.adversarial.judges import judge_agreement
from perceptreg.adversarial.summary import (
    AtRate,
    AttackSummary,
    Baseline,
    Detector,
    JudgeReading,
    PairedComparison,
    PairedTest,
    Rate,
)
from perceptreg.adversarial.thresholds import at_fixed_rates, band, flagged
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.data import as_image_dataset, to_float
from perceptreg.measures import mcnemar

# --- an attack, measured -------------------------------------------------------------------

@dataclass
class AttackEvaluation:
    """Everything an attack did to a set of images, and the numbers that summarise it.

    Tensors are per image, in the order of the data: images x, adversarial images, their
    perceptions P(x) and P(x_adv), H's predictions and confidences before and after,
    whether the attack succeeded, and each judge's readings of x_adv and P(x_adv).
    """

    images: torch.Tensor
    adversarial: torch.Tensor
    perceptions: torch.Tensor
    adversarial_perceptions: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor | None
    clean_predictions: torch.Tensor
    clean_confidence: torch.Tensor
    adversarial_predictions: torch.Tensor
    adversarial_confidence: torch.Tensor
    success: torch.Tensor
    judge_readings: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    summary: AttackSummary | None = None
    held_out_scores: torch.Tensor | None = None  # ||x - P(x)||^2 of clean images kept apart, for thresholds
    settings: AttackSettings | None = None  # the attack's settings as it ran, where ours (``evaluate_run``)

    def __repr__(self) -> str:
        s = self.summary
        if s is None:
            return f"AttackEvaluation({len(self.images)} images)"
        return (f"AttackEvaluation({s.images} images, clean accuracy {s.clean_accuracy.rate:.1%}, "
                f"attack success {s.attack_success_rate.rate:.1%}, detector ROC AUC {s.detector.auroc:.3f})")

    def _repr_html_(self) -> str | None:
        """Jupyter shows an evaluation as the table `perceptreg evaluate-attack` prints, and the
        adaptive attacks' rows where ``evaluate_run`` measured them."""
        if self.summary is None:
            return None  # not measured yet: the text repr
        page = display.html_table(["measure", "value"], tables.attack_rows({"": self.summary}), tables.RATES_NOTE)
        adaptive = self.summary.adaptive_rows()
        if adaptive:
            page += "\n" + display.html_table(*tables.adaptive_cells(adaptive), caption="adaptive attacks")
        return page

    def detector_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """||x - P(x)||^2 of the clean images, and of the successful adversarial images."""
        return (reconstruction_scores(self.images, self.perceptions),
                reconstruction_scores(self.adversarial, self.adversarial_perceptions)[self.success])

    def adversarial_scores(self) -> torch.Tensor:
        """||x_adv - P(x_adv)||^2 of every adversarial image, successful or not."""
        return reconstruction_scores(self.adversarial, self.adversarial_perceptions)

    def failures(self, judge: str | None = None) -> torch.Tensor:
        """Indices of the attacks that fooled H while ``judge`` (default: the first) still
        reads P(x_adv) as the true class: where the perception did not follow the attack."""
        if not self.judge_readings:
            raise PerceptregError("failures need a judge's readings: pass judges to Measuring")
        readings = self.judge_readings[judge or next(iter(self.judge_readings))]
        return (self.success & (readings["P(x_adv)"] == self.labels)).nonzero().squeeze(1)


@dataclass(frozen=True)
class Measuring:
    """How an attack's outcome is measured.

    - ``judges``: each reads x, x_adv, P(x) and P(x_adv) (``judges``), the main one first;
    - ``held_out_scores``: ||x - P(x)||^2 of clean images that are not among those attacked
      (``clean_scores``): thresholds at each false-positive rate of ``fprs``, one- and
      two-sided, and the share of attacks that succeed undetected (``thresholds.at_fixed_rates``);
    - ``baselines`` False: the detector's AUC without its baselines (9 forwards of H, and P
      on the shuffled perturbations), where nothing reads them;
    - ``batch_size``: images per forward pass; ``device``: where the images are measured.
    """

    judges: Sequence = ()
    held_out_scores: torch.Tensor | None = None
    fprs: Sequence[float] = DEFAULT_FPRS
    baselines: bool = True
    batch_size: int = 500
    device: torch.device | str = "cpu"


@torch.no_grad()
def _predict(model: PerceptionNet, images: torch.Tensor, batch_size: int):
    logits, recon = [], []
    for chunk in images.split(batch_size):
        out = model(chunk)
        logits.append(out.logits.float())
        recon.append(out.recon.float())
    confidence, prediction = torch.cat(logits).softmax(1).max(1)
    return prediction, confidence, torch.cat(recon)


def measure_attack(model: PerceptionNet, attack, data, measuring: Measuring = Measuring(), *,
                   targets: torch.Tensor | None = None, eps: float | None = None,
                   norm: str | None = None) -> AttackEvaluation:
    """Attack every image of ``data`` and measure what it did to H and to the perception
    (``measure_adversarial``). ``data``: an ``ImageDataset``, or any torch ``Dataset``/``DataLoader``
    of (image, label), held in memory as uint8 (``data.as_image_dataset``).

    ``attack``: ours (``PGD``, ``AdaptiveAttack``, ...) or any callable ``attack(images, labels)``
    that returns adversarial images (torchattacks'); targeted, ``attack(images, labels, targets)``.
    What it returns is checked (``callables.check_adversarial``): the images' shape and dtype,
    in [0, 1], and within the eps-ball of ``eps`` and ``norm``, by default the attack's own
    ``eps`` and ``norm`` (L-inf where it names none; no ball check where it names no eps).

    The attack runs once on all images (it works in chunks itself), so its random start is
    drawn for the whole set and does not depend on ``measuring.batch_size``."""
    data = as_image_dataset(data, "data")
    images, labels = to_float(data.images).to(measuring.device), data.labels.to(measuring.device)
    with evaluating(model):
        if targets is None:
            adversarial = attack(images, labels)
        else:
            adversarial = attack(images, labels, targets.to(measuring.device))
    check_adversarial(attack_name(attack), images, adversarial, getattr(attack, "eps", None) if eps is None else eps,
                      norm or getattr(attack, "norm", "linf"))
    return measure_adversarial(model, data, adversarial, measuring, targets=targets)


def measure_adversarial(model: PerceptionNet, data, adversarial: torch.Tensor, measuring: Measuring = Measuring(), *,
                        targets: torch.Tensor | None = None,
                        readings: dict[str, dict[str, torch.Tensor]] | None = None) -> AttackEvaluation:
    """What the images ``adversarial`` (attacked already, one per image of ``data``) do to H
    and to the perception, as ``AttackEvaluation.summary``:

    - success: of the images H classifies right, the share the attack turns to another
      label (to the target, for a targeted attack: of those right and not already of it);
    - each judge's reading of x_adv and of P(x_adv) for the successful attacks: does the
      perception show the adversarial class, the true class, or something else? Reading
      x_adv too shows how far the attack itself transfers to the judge;
    - the reconstruction-error detector: ROC AUC (with its DeLong interval) of ||x - P(x)||^2
      separating clean test images from successful adversarial ones; beside it the same AUC
      of each of ``BASELINES``: the model-free pixel statistic and blur residual, feature
      squeezing (bit depth, median filter), and ||x - P(x)||^2 on the successful attacks'
      perturbations shuffled and matched in L2 (with how often H still classifies those right);
    - with ``measuring.held_out_scores``: the rates at fixed false positives (``Measuring``).

    ``readings``: the judges' readings of x and x_adv by judge name (``judge_readings`` of an
    evaluation of the same images and adversarial images), which no perception changes:
    taken from it, not made again."""
    data = as_image_dataset(data, "data")
    device, batch_size = measuring.device, measuring.batch_size
    images, labels = to_float(data.images).to(device), data.labels.to(device)
    adversarial = adversarial.to(device)
    with evaluating(model):
        clean_pred, clean_conf, perceptions = _predict(model, images, batch_size)
        adv_pred, adv_conf, adv_perceptions = _predict(model, adversarial, batch_size)
    correct = clean_pred == labels
    if targets is None:
        eligible = correct
        success = correct & (adv_pred != labels)
    else:
        targets = targets.to(device)
        eligible = correct & (targets != labels)
        success = eligible & (adv_pred == targets)
    result = AttackEvaluation(images, adversarial, perceptions, adv_perceptions, labels, targets, clean_pred,
                              clean_conf, adv_pred, adv_conf, success, held_out_scores=measuring.held_out_scores)
    for judge in measuring.judges:
        known = (readings or {}).get(judge.name) or {"x": judge(images), "x_adv": judge(adversarial)}
        result.judge_readings[judge.name] = {"x": known["x"], "P(x)": judge(perceptions), "x_adv": known["x_adv"],
                                             "P(x_adv)": judge(adv_perceptions)}
    with evaluating(model):  # the baselines run H and P again
        detector = _detector(model, result, eligible, measuring)
    result.summary = AttackSummary(
        images=len(images), clean_accuracy=Rate.of(correct), robust_accuracy=Rate.of(adv_pred == labels),
        attack_success_rate=Rate.count(int(success.sum()), int(eligible.sum())),
        successful_attacks=int(success.sum()), judges=_judged(result), detector=detector)
    return result


def _judged(result: AttackEvaluation) -> dict[str, JudgeReading]:
    """Each judge's accuracy on x and P(x), and its readings of the successful attacks."""
    success, labels, adversarial = result.success, result.labels, result.adversarial_predictions
    return {name: JudgeReading(
        accuracy_on_x=Rate.of(read["x"] == labels), accuracy_on_perception=Rate.of(read["P(x)"] == labels),
        on_x_adv=judge_agreement(read["x_adv"][success], adversarial[success], labels[success]),
        on_perception_adv=judge_agreement(read["P(x_adv)"][success], adversarial[success], labels[success]))
        for name, read in result.judge_readings.items()}


def _auroc(negative: torch.Tensor, positive: torch.Tensor) -> dict:
    negative, positive = negative.cpu(), positive.cpu()
    return {"auroc": roc_auc(negative, positive), "auroc_interval": roc_auc_interval(negative, positive)}


def _detector(model: PerceptionNet, result: AttackEvaluation, eligible: torch.Tensor,
              measuring: Measuring) -> Detector:
    """The detector's ROC AUC, with ``measuring.baselines`` the AUCs of ``BASELINES`` on the
    same clean and successfully attacked images, with held-out scores its rates at fixed
    false positives."""
    scores_clean, scores_adv = result.detector_scores()
    held_out = measuring.held_out_scores
    at_fpr = None if held_out is None else {
        sided: [AtRate(**entry) for entry in entries] for sided, entries in at_fixed_rates(
            held_out.cpu(), scores_clean.cpu(), result.adversarial_scores().cpu(), result.success.cpu(),
            eligible.cpu(), measuring.fprs).items()}
    return Detector(
        score="||x - P(x)||^2", **_auroc(scores_clean, scores_adv), clean_images=len(scores_clean),
        adversarial_images=len(scores_adv), mean_score_clean=scores_clean.mean().item(),
        mean_score_adversarial=scores_adv.mean().item() if len(scores_adv) else float("nan"),
        baselines=_baselines(model, result, measuring.batch_size, scores_clean) if measuring.baselines else None,
        held_out_images=None if held_out is None else len(held_out), at_fpr=at_fpr)


def _baselines(model: PerceptionNet, result: AttackEvaluation, batch_size: int,
               scores_clean: torch.Tensor) -> dict[str, Baseline]:
    """The AUCs of ``BASELINES`` on the detector's clean images (``scores_clean``, the
    detector's scores of them) and successfully attacked images."""
    success = result.success
    clean, attacked = result.images, result.adversarial[success]
    shuffled = shuffle_perturbations(clean[success], attacked)
    shuffled_pred, _, shuffled_perceptions = _predict(model, shuffled, batch_size)

    def auroc(score) -> dict:  # the same score on clean and on attacked images
        return _auroc(score(clean), score(attacked))

    def squeezing(squeeze):
        return lambda images: squeezing_scores(model.classify, images, squeeze, batch_size)

    aurocs = {"pixel_statistic": auroc(pixel_statistic_scores), "blur_residual": auroc(blur_residual_scores),
              "bit_depth": auroc(squeezing(squeeze_bits)), "median_filter": auroc(squeezing(median_filter)),
              "shuffled_perturbation": _auroc(scores_clean, reconstruction_scores(shuffled, shuffled_perceptions))}
    l2 = (attacked - clean[success]).flatten(1).norm(dim=1)
    l2_shuffled = (shuffled - clean[success]).flatten(1).norm(dim=1)
    shuffled_only = dict(h_correct=Rate.of(shuffled_pred == result.labels[success]),
                         mean_l2=l2_shuffled.mean().item() if len(l2) else float("nan"),
                         mean_l2_attack=l2.mean().item() if len(l2) else float("nan"))
    return {key: Baseline(score=BASELINES[key][2], **aurocs[key], **(shuffled_only if key == "shuffled_perturbation" else {}))
            for key in BASELINES}


def compare_paired(first: AttackEvaluation, second: AttackEvaluation,
                   fprs: Sequence[float] = DEFAULT_FPRS) -> PairedComparison:
    """Two models attacked on the same images (joint against post-hoc): McNemar's test
    (``measures.mcnemar``) of each yes/no reading, paired image by image over the images
    both attacks fooled: each judge reading P(x_adv) as the adversarial class, and the
    one-sided detector flagging x_adv at each rate of ``fprs`` (thresholds of each model
    on its own held-out clean scores)."""
    if not torch.equal(first.images, second.images):
        raise PerceptregError("a paired comparison needs the same images; these evaluations attacked different ones")
    both = first.success & second.success
    tests = {}
    for judge in first.judge_readings.keys() & second.judge_readings.keys():
        said = [e.judge_readings[judge]["P(x_adv)"][both] == e.adversarial_predictions[both] for e in (first, second)]
        tests[f"{judge}: P(x_adv) read as adversarial"] = PairedTest(**mcnemar(*said))
    if first.held_out_scores is not None and second.held_out_scores is not None:
        for fpr in fprs:
            caught = [flagged(e.adversarial_scores()[both].cpu(), band(e.held_out_scores.cpu(), fpr)) for e in (first, second)]
            tests[f"detector flags x_adv at {100 * fpr:g} % false positives"] = PairedTest(**mcnemar(*caught))
    return PairedComparison(paired_images=int(both.sum()), tests=tests)


def clean_scores(model: PerceptionNet, data, device: torch.device | str = "cpu",
                 batch_size: int = 500) -> torch.Tensor:
    """||x - P(x)||^2 of each clean image of ``data``: held out, they set the detector's thresholds."""
    images = to_float(as_image_dataset(data, "data").images).to(device)
    with evaluating(model):
        return reconstruction_scores(images, _predict(model, images, batch_size)[2])


def evaluate_layers_under_attack(seen, attack, data, judge, targets: torch.Tensor | None = None,
                                 device: str = "cpu", progress: bool = False) -> tuple[list[dict], torch.Tensor]:
    """One attack on an attached model's H, read through every layer's perception: per
    layer, how often the judge reads P_layer(x_adv) of a successful attack as the
    adversarial class or as the true class (the depth at which the attack takes over what
    the model perceives), and the ROC AUC of ||x - P_layer(x)||^2 as a detector. Beside
    them, with their 95 % intervals: the judge's reading of x_adv itself (how far the attack
    transfers to the judge without any decoder: the line a layer's reading is read against)
    and its accuracy on P_layer(x) of clean images (does the judge recognise this layer's
    perceptions at all). Returns the rows, shallow to deep, and the adversarial images (the
    same for every layer).
    ``progress``: a bar over the layers (the attack, run with the first, shows its own)."""
    data = as_image_dataset(data, "data")
    # The rows hold no baseline: each layer runs the model twice, for P(x) and P(x_adv)
    measuring = Measuring(judges=[judge] if judge else [], baselines=False, device=device)  # None: no judge reads
    first = measure_attack(seen.at(seen.layers[0]), attack, data, measuring, targets=targets)
    rows = []
    for layer in tqdm(seen.layers, desc="measuring layers under attack", unit="layer", disable=not progress,
                      leave=False):
        # the attack ran once, with the first layer; the judge read x and x_adv then
        evaluation = first if layer == seen.layers[0] else measure_adversarial(
            seen.at(layer), data, first.adversarial, measuring, targets=targets, readings=first.judge_readings)
        rows.append(_layer_row(layer, evaluation.summary, judge.name if judge else None))
    return rows, first.adversarial


def _layer_row(layer: str, summary: AttackSummary, judge: str | None) -> dict:
    """A layer's row: the judge's readings of the successful attacks, None where there is
    none (a robust model, or too weak an attack), as they are undefined then, not a number;
    without a judge (None), no readings at all."""
    judged = summary.judges[judge] if judge else None
    success = summary.attack_success_rate  # over no image when H is right on none: undefined, None
    succeeded = summary.successful_attacks > 0
    readings = {"p_adv_read_as_adversarial": judged and judged.on_perception_adv.adversarial_label.rate,
                "p_adv_read_as_true": judged and judged.on_perception_adv.true_label.rate,
                "detector_roc_auc": summary.detector.auroc,
                # the same readings as rates with their intervals, and the line to read them against
                "p_adv_read": judged and judged.on_perception_adv.model_dump(),
                "x_adv_read": judged and judged.on_x_adv.model_dump(),
                "detector_roc_auc_interval": summary.detector.auroc_interval}
    return {"name": layer, "attack_success_rate": success.rate if success.n else None,
            "successful_attacks": summary.successful_attacks, "judge": judge,
            "accuracy_on_x": judged and judged.accuracy_on_x.model_dump(),
            "accuracy_on_p": judged and judged.accuracy_on_perception.model_dump(),
            **{key: value if succeeded else None for key, value in readings.items()}}
