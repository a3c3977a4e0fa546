"""An attack, measured: what it did to H and to the perception, and how well the
reconstruction error ||x - P(x)||^2 detects it, beside its baselines (``detection``).

    evaluation = evaluate_attack(model, PGD(model, eps=0.2), test_data, [KNNJudge(train_data)])
    evaluation.summary["detector"]["auroc"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from perceptreg import display
from perceptreg.adversarial import tables
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
from perceptreg.adversarial.thresholds import at_fixed_rates, band, flagged
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.data import as_image_dataset, to_float
from perceptreg.display import tqdm
from perceptreg.measures import mcnemar, rate, rate_of

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
    summary: dict = field(default_factory=dict)
    held_out_scores: torch.Tensor | None = None  # ||x - P(x)||^2 of clean images kept apart, for thresholds

    def __repr__(self) -> str:
        s = self.summary
        if not s:
            return f"AttackEvaluation({len(self.images)} images)"
        return (f"AttackEvaluation({s['images']} images, clean accuracy {s['clean_accuracy']['rate']:.1%}, "
                f"attack success {s['attack_success_rate']['rate']:.1%}, "
                f"detector ROC AUC {s['detector']['auroc']:.3f})")

    def _repr_html_(self) -> str | None:
        """Jupyter shows an evaluation as the table `perceptreg attack` prints, and the
        adaptive attacks' rows where ``evaluate_run`` measured them."""
        if not self.summary:
            return None  # not measured yet: the text repr
        page = display.html_table(["measure", "value"], tables.attack_rows({"": self.summary}), tables.RATES_NOTE)
        adaptive = self.summary.get("adaptive", []) + (
            [self.summary["adaptive_search"]] if "adaptive_search" in self.summary else [])
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
            raise PerceptregError("failures need a judge's readings: pass judges to evaluate_attack")
        readings = self.judge_readings[judge or next(iter(self.judge_readings))]
        return (self.success & (readings["P(x_adv)"] == self.labels)).nonzero().squeeze(1)


@torch.no_grad()
def _predict(model: PerceptionNet, images: torch.Tensor, batch_size: int):
    logits, recon = [], []
    for chunk in images.split(batch_size):
        out = model(chunk)
        logits.append(out.logits.float())
        recon.append(out.recon.float())
    confidence, prediction = torch.cat(logits).softmax(1).max(1)
    return prediction, confidence, torch.cat(recon)


def evaluate_attack(model: PerceptionNet, attack, data, judges: Sequence = (),
                    targets: torch.Tensor | None = None, batch_size: int = 500,
                    device: torch.device | str = "cpu", adversarial: torch.Tensor | None = None,
                    held_out_scores: torch.Tensor | None = None, fprs: Sequence[float] = DEFAULT_FPRS,
                    eps: float | None = None, norm: str | None = None, baselines: bool = True,
                    readings: dict[str, dict[str, torch.Tensor]] | None = None) -> AttackEvaluation:
    """Attack every image of ``data`` and measure what it did to H and to the perception.
    ``data``: an ``ImageDataset``, or any torch ``Dataset``/``DataLoader`` of (image, label),
    held in memory as uint8 (``data.as_image_dataset``).

    ``attack``: ours (``PGD``, ``AdaptiveAttack``, ...) or any callable ``attack(images, labels)``
    that returns adversarial images (torchattacks'); targeted, ``attack(images, labels, targets)``.
    What it returns is checked (``callables.check_adversarial``): the images' shape and dtype,
    in [0, 1], and within the eps-ball of ``eps`` and ``norm``, by default the attack's own
    ``eps`` and ``norm`` (L-inf where it names none; no ball check where it names no eps).

    - success: of the images H classifies right, the share the attack turns to another
      label (to the target, for a targeted attack);
    - each judge's reading of x_adv and of P(x_adv) for the successful attacks: does the
      perception show the adversarial class, the true class, or something else? Reading
      x_adv too shows how far the attack itself transfers to the judge;
    - the reconstruction-error detector: ROC AUC (with its DeLong interval) of ||x - P(x)||^2
      separating clean test images from successful adversarial ones; beside it the same AUC
      of each of ``BASELINES``: the model-free pixel statistic and blur residual, feature
      squeezing (bit depth, median filter), and ||x - P(x)||^2 on the successful attacks'
      perturbations shuffled and matched in L2 (with how often H still classifies those right);
    - with ``held_out_scores`` (||x - P(x)||^2 of clean images that are not in ``data``):
      thresholds at each false-positive rate of ``fprs``, one- and two-sided, and the share
      of attacks that succeed undetected (``thresholds.at_fixed_rates``), in
      ``summary["detector"]["at_fpr"]``.

    The attack runs once on all images (it works in chunks itself), so its random start is
    drawn for the whole set and does not depend on ``batch_size``.

    ``adversarial``: the images already attacked, to measure the same attack through another
    perception of the same H (the layers of an attached model), and ``readings`` the judges'
    readings of those images, by judge name (``judge_readings`` of that evaluation): their
    readings of x and x_adv, which no perception changes, are taken from it, not made again.
    ``baselines`` False: the detector's AUC without its baselines (9 forwards of H, and P on
    the shuffled perturbations), where nothing reads them.
    """
    data = as_image_dataset(data, "data")
    with evaluating(model):
        images = to_float(data.images).to(device)
        labels = data.labels.to(device)
        if adversarial is None:
            adversarial = attack(images, labels) if targets is None else attack(images, labels, targets.to(device))
            check_adversarial(attack_name(attack), images, adversarial, getattr(attack, "eps", None) if eps is None else eps,
                              norm or getattr(attack, "norm", "linf"))
        clean_pred, clean_conf, perceptions = _predict(model, images, batch_size)
        adv_pred, adv_conf, adv_perceptions = _predict(model, adversarial, batch_size)
    correct = clean_pred == labels
    if targets is None:
        success = correct & (adv_pred != labels)
        eligible = correct
    else:
        targets = targets.to(device)
        eligible = correct & (targets != labels)
        success = eligible & (adv_pred == targets)
    result = AttackEvaluation(images, adversarial, perceptions, adv_perceptions, labels, targets,
                              clean_pred, clean_conf, adv_pred, adv_conf, success, held_out_scores=held_out_scores)
    n_success = int(success.sum())
    with evaluating(model):  # the baselines run H and P again
        detector = _detector_summary(model, result, batch_size, baselines)
    result.summary = {
        "images": len(images),
        "clean_accuracy": rate_of(correct),
        "robust_accuracy": rate_of(adv_pred == labels),
        "attack_success_rate": rate(n_success, int(eligible.sum())),
        "successful_attacks": n_success,
        "judges": {},
        "detector": detector,
    }
    if held_out_scores is not None:
        result.summary["detector"]["held_out_images"] = len(held_out_scores)
        result.summary["detector"]["at_fpr"] = at_fixed_rates(
            held_out_scores.cpu(), result.detector_scores()[0].cpu(), result.adversarial_scores().cpu(),
            success.cpu(), eligible.cpu(), fprs)
    for judge in judges:
        known = (readings or {}).get(judge.name) or {"x": judge(images), "x_adv": judge(adversarial)}
        read = {"x": known["x"], "P(x)": judge(perceptions), "x_adv": known["x_adv"], "P(x_adv)": judge(adv_perceptions)}
        result.judge_readings[judge.name] = read
        result.summary["judges"][judge.name] = {
            "accuracy_on_x": rate_of(read["x"] == labels),
            "accuracy_on_P(x)": rate_of(read["P(x)"] == labels),
            "on_x_adv": judge_agreement(read["x_adv"][success], adv_pred[success], labels[success]),
            "on_P(x_adv)": judge_agreement(read["P(x_adv)"][success], adv_pred[success], labels[success]),
        }
    return result


def _auroc(negative: torch.Tensor, positive: torch.Tensor) -> dict:
    negative, positive = negative.cpu(), positive.cpu()
    return {"auroc": roc_auc(negative, positive), "auroc_interval": roc_auc_interval(negative, positive)}


def _detector_summary(model: PerceptionNet, result: AttackEvaluation, batch_size: int, baselines: bool) -> dict:
    """The detector's ROC AUC, and with ``baselines`` the AUCs of ``BASELINES`` on the same
    clean and successfully attacked images."""
    scores_clean, scores_adv = result.detector_scores()
    n_success = len(scores_adv)
    summary = {
        "score": "||x - P(x)||^2", **_auroc(scores_clean, scores_adv),
        "clean_images": len(scores_clean), "adversarial_images": n_success,
        "mean_score_clean": scores_clean.mean().item(),
        "mean_score_adversarial": scores_adv.mean().item() if n_success else float("nan"),
    }
    return {**summary, "baselines": _baselines(model, result, batch_size, scores_clean)} if baselines else summary


def _baselines(model: PerceptionNet, result: AttackEvaluation, batch_size: int, scores_clean: torch.Tensor) -> dict:
    """The AUCs of ``BASELINES`` on the detector's clean images (``scores_clean``, the
    detector's scores of them) and successfully attacked images."""
    success = result.success
    n_success = int(success.sum())
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
    baselines = {key: {"score": BASELINES[key][2], **aurocs[key]} for key in BASELINES}
    l2 = (result.adversarial[success] - result.images[success]).flatten(1).norm(dim=1)
    l2_shuffled = (shuffled - result.images[success]).flatten(1).norm(dim=1)
    baselines["shuffled_perturbation"].update(
        H_correct=rate_of(shuffled_pred == result.labels[success]),
        mean_l2=l2_shuffled.mean().item() if n_success else float("nan"),
        mean_l2_attack=l2.mean().item() if n_success else float("nan"))
    return baselines


def compare_paired(first: AttackEvaluation, second: AttackEvaluation, fprs: Sequence[float] = DEFAULT_FPRS) -> dict:
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
        tests[f"{judge}: P(x_adv) read as adversarial"] = mcnemar(*said)
    if first.held_out_scores is not None and second.held_out_scores is not None:
        for fpr in fprs:
            caught = [flagged(e.adversarial_scores()[both].cpu(), band(e.held_out_scores.cpu(), fpr)) for e in (first, second)]
            tests[f"detector flags x_adv at {100 * fpr:g} % false positives"] = mcnemar(*caught)
    return {"paired_images": int(both.sum()), "tests": tests}


def clean_scores(model: PerceptionNet, data, device: torch.device | str = "cpu",
                 batch_size: int = 500) -> torch.Tensor:
    """||x - P(x)||^2 of each clean image of ``data``: held out, they set the detector's thresholds."""
    images = to_float(as_image_dataset(data, "data").images).to(device)
    with evaluating(model):
        return reconstruction_scores(images, _predict(model, images, batch_size)[2])


@torch.no_grad()
def noise_to_target(model: PerceptionNet, adversarial: torch.Tensor, targets: torch.Tensor, judge,
                    clean=None) -> dict:
    """Of ``FromNoise``'s images, how often H reads the target and how often ``judge`` reads
    the perception P(x_adv) as the target: {"H": rate, judge.name: rate}; with ``clean``
    test images (a dataset), also the judge's own accuracy on them, under "judge on x":
    what its reading of the perceptions is worth."""
    with evaluating(model):
        on_h = model.classify(adversarial).argmax(1) == targets
        on_perception = judge(model.perceive(adversarial)) == targets
    reached = {"H": rate_of(on_h), judge.name: rate_of(on_perception)}
    if clean is not None:
        clean = as_image_dataset(clean, "clean")
        device = adversarial.device
        reached["judge on x"] = rate_of(judge(to_float(clean.images).to(device)) == clean.labels.to(device))
    return reached


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
    rows, adversarial, readings, data = [], None, None, as_image_dataset(data, "data")
    for layer in tqdm(seen.layers, desc="measuring layers under attack", unit="layer", disable=not progress,
                      leave=False):
        # The rows hold no baseline: each layer runs the model twice, for P(x) and P(x_adv);
        # the judge reads x and x_adv once, with the first layer.
        evaluation = evaluate_attack(seen.at(layer), attack, data, [judge], targets, device=device,
                                     adversarial=adversarial, baselines=False, readings=readings)
        adversarial, readings = evaluation.adversarial, evaluation.judge_readings
        s = evaluation.summary
        judged = s["judges"][judge.name]
        success = s["attack_success_rate"]  # over no image when H is right on none: undefined, None
        rows.append({"name": layer, "attack_success_rate": success["rate"] if success["n"] else None,
                     "successful_attacks": s["successful_attacks"], "judge": judge.name,
                     "accuracy_on_p": judged["accuracy_on_P(x)"], **_attacked_readings(s, judged)})
    return rows, adversarial


def _attacked_readings(summary: dict, judged: dict) -> dict:
    """A layer's readings of the successful attacks: None where there is none (a robust
    model, or too weak an attack), as they are undefined then, not a number."""
    succeeded = summary["successful_attacks"] > 0
    readings = {"p_adv_read_as_adversarial": judged["on_P(x_adv)"]["adversarial_label"]["rate"],
                "p_adv_read_as_true": judged["on_P(x_adv)"]["true_label"]["rate"],
                "detector_roc_auc": summary["detector"]["auroc"],
                # the same readings as rates with their intervals, and the line to read them against
                "p_adv_read": judged["on_P(x_adv)"], "x_adv_read": judged["on_x_adv"],
                "detector_roc_auc_interval": summary["detector"]["auroc_interval"]}
    return {key: value if succeeded else None for key, value in readings.items()}
