"""An attack, measured: what it did to H and to the perception, and how well the
reconstruction error ||x - P(x)||^2 detects it, beside two baselines (``detection``).

    evaluation = evaluate_attack(model, PGD(model, eps=0.2), test_data, [KNNJudge(train_data)])
    evaluation.summary["detector"]["auroc"]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from perceptreg.adversarial.adaptive import AdaptivePGD
from perceptreg.adversarial.attacks import AttackSettings, check_target
from perceptreg.adversarial.detection import (
    pixel_statistic_scores,
    reconstruction_scores,
    roc_auc,
    shuffle_perturbations,
)
from perceptreg.adversarial.judges import KNNJudge, ModelJudge, judge_agreement
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.data import ImageDataset, spread_over_classes, to_float
from perceptreg.measures import format_rate, rate, rate_of
from perceptreg.runs import Run

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

    def detector_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """||x - P(x)||^2 of the clean images, and of the successful adversarial images."""
        return (reconstruction_scores(self.images, self.perceptions),
                reconstruction_scores(self.adversarial, self.adversarial_perceptions)[self.success])

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


def evaluate_attack(model: PerceptionNet, attack, data: ImageDataset, judges: Sequence = (),
                    targets: torch.Tensor | None = None, batch_size: int = 500,
                    device: torch.device | str = "cpu", adversarial: torch.Tensor | None = None) -> AttackEvaluation:
    """Attack every image of ``data`` and measure what it did to H and to the perception.

    - success: of the images H classifies right, the share the attack turns to another
      label (to the target, for a targeted attack);
    - each judge's reading of x_adv and of P(x_adv) for the successful attacks: does the
      perception show the adversarial class, the true class, or something else? Reading
      x_adv too shows how far the attack itself transfers to the judge;
    - the reconstruction-error detector: ROC AUC of ||x - P(x)||^2 separating clean test
      images from successful adversarial ones; beside it the same AUC of the model-free
      pixel statistic, and of ||x - P(x)||^2 on the successful attacks' perturbations with
      their pixels shuffled (with how often H still classifies those right).

    The attack runs once on all images (it works in chunks itself), so its random start is
    drawn for the whole set and does not depend on ``batch_size``.

    ``adversarial``: the images already attacked, to measure the same attack through another
    perception of the same H (the layers of an attached model).
    """
    with evaluating(model):
        images = to_float(data.images).to(device)
        labels = data.labels.to(device)
        if adversarial is None:
            adversarial = attack(images, labels, None if targets is None else targets.to(device))
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
                              clean_pred, clean_conf, adv_pred, adv_conf, success)
    n_success = int(success.sum())
    result.summary = {
        "images": len(images),
        "clean_accuracy": rate_of(correct),
        "robust_accuracy": rate_of(adv_pred == labels),
        "attack_success_rate": rate(n_success, int(eligible.sum())),
        "successful_attacks": n_success,
        "judges": {},
        "detector": _detector_summary(model, result, batch_size),
    }
    for judge in judges:
        readings = {"x": judge(images), "P(x)": judge(perceptions),
                    "x_adv": judge(adversarial), "P(x_adv)": judge(adv_perceptions)}
        result.judge_readings[judge.name] = readings
        result.summary["judges"][judge.name] = {
            "accuracy_on_x": rate_of(readings["x"] == labels),
            "accuracy_on_P(x)": rate_of(readings["P(x)"] == labels),
            "on_x_adv": judge_agreement(readings["x_adv"][success], adv_pred[success], labels[success]),
            "on_P(x_adv)": judge_agreement(readings["P(x_adv)"][success], adv_pred[success], labels[success]),
        }
    return result


def _detector_summary(model: PerceptionNet, result: AttackEvaluation, batch_size: int) -> dict:
    """The detector's ROC AUC, and the AUCs of the two baselines on the same images."""
    scores_clean, scores_adv = result.detector_scores()
    success = result.success
    shuffled = shuffle_perturbations(result.images[success], result.adversarial[success])
    shuffled_pred, _, shuffled_perceptions = _predict(model, shuffled, batch_size)
    pixel_clean, pixel_adv = (pixel_statistic_scores(x).cpu() for x in (result.images, result.adversarial[success]))
    n_success = len(scores_adv)
    return {
        "score": "||x - P(x)||^2", "auroc": roc_auc(scores_clean.cpu(), scores_adv.cpu()),
        "clean_images": len(scores_clean), "adversarial_images": n_success,
        "mean_score_clean": scores_clean.mean().item(),
        "mean_score_adversarial": scores_adv.mean().item() if n_success else float("nan"),
        "baselines": {
            "pixel_statistic": {"score": "sum of min(x, 1 - x)^2 over pixels (no model)",
                                "auroc": roc_auc(pixel_clean, pixel_adv)},
            "shuffled_perturbation": {
                "score": "||x - P(x)||^2 of x + (x_adv - x) with its pixels shuffled",
                "auroc": roc_auc(scores_clean.cpu(), reconstruction_scores(shuffled, shuffled_perceptions).cpu()),
                "H_correct": rate_of(shuffled_pred == result.labels[success])},
        },
    }


@torch.no_grad()
def noise_to_target(model: PerceptionNet, adversarial: torch.Tensor, targets: torch.Tensor, judge) -> dict:
    """Of ``FromNoise``'s images, how often H reads the target and how often ``judge`` reads
    the perception P(x_adv) as the target: {"H": rate, judge.name: rate}."""
    with evaluating(model):
        on_h = model.classify(adversarial).argmax(1) == targets
        on_perception = judge(model.perceive(adversarial)) == targets
    return {"H": rate_of(on_h), judge.name: rate_of(on_perception)}


def attack_rows(summaries: dict[str, dict]) -> list[list[str]]:
    """The summaries of evaluate_attack as rows of text, a measure and one value per run (the
    CLI prints them aligned, the report as an HTML table)."""
    names = list(summaries)
    rows = [("clean accuracy", lambda s: s["clean_accuracy"]),
            ("robust accuracy", lambda s: s["robust_accuracy"]),
            ("attack success rate", lambda s: s["attack_success_rate"]),
            ("detector ROC AUC, ||x - P(x)||^2", lambda s: s["detector"]["auroc"]),
            ("  baseline AUC: pixel statistic (no model)",
             lambda s: s["detector"]["baselines"]["pixel_statistic"]["auroc"]),
            ("  baseline AUC: shuffled perturbation",
             lambda s: s["detector"]["baselines"]["shuffled_perturbation"]["auroc"]),
            ("  H right on the shuffled perturbation",
             lambda s: s["detector"]["baselines"]["shuffled_perturbation"]["H_correct"])]
    for judge in summaries[names[0]]["judges"]:
        for what, key in (("x", "accuracy_on_x"), ("P(x)", "accuracy_on_P(x)")):
            rows.append((f"{judge}: accuracy on {what}", lambda s, j=judge, k=key: s["judges"][j][k]))
        for what in ("x_adv", "P(x_adv)"):
            for label in ("adversarial_label", "true_label"):
                rows.append((f"{judge}: {what} read as {label.split('_')[0]} label",
                             lambda s, j=judge, w=what, l=label: s["judges"][j][f"on_{w}"][l]))
    return [[label] + [f"{value(summaries[n]):.3f}" if "AUC" in label else format_rate(value(summaries[n]))
                       for n in names] for label, value in rows]


RATES_NOTE = "(rates: 95 % Wilson intervals in brackets)"


def attack_table(summaries: dict[str, dict]) -> str:
    """The summaries of evaluate_attack as a plain-text table, one column per run."""
    rows = attack_rows(summaries)
    width = max(len(r[0]) for r in rows) + 2
    header = " " * width + "".join(f"{Path(n).name[:24]:>26}" for n in summaries)
    lines = [header] + [f"{label:<{width}}" + "".join(f"{value:>26}" for value in values) for label, *values in rows]
    return "\n".join(lines + [RATES_NOTE])


# --- an attack on a run folder (what `perceptreg attack` and `evaluate-attack` do) -----------

def evaluate_run(run: Run, settings: AttackSettings, *, target: int | None = None,
                 images: int | None = None, judge_runs: Sequence[Run] = (),
                 device: str = "cpu", layer: str | None = None,
                 adaptive: Sequence[float] = ()) -> AttackEvaluation:
    """``evaluate_attack`` on a run's test set (``images`` of it, spread over the classes),
    judged by a 3-NN pixel judge on its training set and by the models of ``judge_runs``.
    Of a run of `attach`, the perception is that of ``layer`` (default the deepest).
    ``adaptive``: betas of ``AdaptivePGD`` also run on the same images; their rows
    (``adaptive_row``) go into ``summary["adaptive"]``."""
    model = run.model(device, layer)
    if run.decoder_collapsed:
        warnings.warn(f"{run.path} has a collapsed decoder: its perceptions P(x) show nothing about the "
                      f"inputs; the figures render, but read them as such", RuntimeWarning, stacklevel=2)
    train_data, test_data = run.data()
    if images:
        test_data = test_data.subset(spread_over_classes(test_data.labels, min(images, len(test_data))))
    judges = [KNNJudge(train_data, device=device)] + [run_judge(j, run, device) for j in judge_runs]
    targets = None
    if target is not None:
        check_target(target, model.num_classes)
        targets = torch.full((len(test_data),), target, dtype=torch.long)
    evaluation = evaluate_attack(model, settings.build(model), test_data, judges, targets=targets, device=device)
    if adaptive:
        evaluation.summary["adaptive"] = [
            adaptive_row(beta, evaluate_attack(model, settings.build(model, AdaptivePGD, beta=beta), test_data,
                                               judges, targets=targets, device=device).summary)
            for beta in adaptive]
    return evaluation


def adaptive_row(beta: float, summary: dict) -> dict:
    """One row of the adaptive-attack table: of ``AdaptivePGD(beta)``'s ``evaluate_attack``
    summary, the success, the detector's and baselines' AUCs, and the judges' readings of P(x_adv)."""
    detector = summary["detector"]
    return {"beta": beta, "attack_success": summary["attack_success_rate"],
            "successful_attacks": summary["successful_attacks"], "auroc": detector["auroc"],
            "mean_score_adversarial": detector["mean_score_adversarial"],
            "baselines": {name: b["auroc"] for name, b in detector["baselines"].items()},
            "judges_on_P(x_adv)": {name: j["on_P(x_adv)"] for name, j in summary["judges"].items()}}


def adaptive_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The rows of ``adaptive_row`` as a header and rows of text, one row per beta."""
    judges = list(rows[0]["judges_on_P(x_adv)"]) if rows else []
    header = (["beta", "success", "detector AUC", "pixel AUC", "shuffled AUC"]
              + [h for judge in judges for h in (f"{judge}: P(x_adv) read as adversarial", f"{judge}: P(x_adv) read as true")])
    return header, [[f"{row['beta']:g}", format_rate(row["attack_success"]), f"{row['auroc']:.3f}",
                     f"{row['baselines']['pixel_statistic']:.3f}", f"{row['baselines']['shuffled_perturbation']:.3f}"]
                    + [format_rate(row["judges_on_P(x_adv)"][judge][label]) for judge in judges
                       for label in ("adversarial_label", "true_label")] for row in rows]


def adaptive_table(rows: list[dict]) -> str:
    """The rows of ``adaptive_row`` as a plain-text table, one line per beta."""
    header, cells = adaptive_cells(rows)
    widths = [6, 22, 14, 11, 14] + [42, 36] * ((len(header) - 5) // 2)
    return "\n".join("".join(f"{text:>{w}}" for text, w in zip(line, widths)) for line in [header, *cells])


def run_judge(judge: Run, attacked: Run, device: str = "cpu") -> ModelJudge:
    """Another run's model as a judge of ``attacked``'s images: same image shape and classes."""
    for key in ("input_shape", "num_classes"):
        if getattr(judge, key) != getattr(attacked, key):
            raise PerceptregError(f"{judge.path} cannot judge {attacked.path}: its model has {key} "
                                  f"{getattr(judge, key)}, the attacked one {getattr(attacked, key)}")
    trained_on, judged_on = judge.config.dataset, attacked.config.dataset
    if judged_on != trained_on:
        warnings.warn(f"the judge {judge.path} was trained on {trained_on!r}, the images come from the "
                      f"test set of {judged_on!r}: its training data may hold some of them", UserWarning, stacklevel=2)
    return ModelJudge(judge.model(device), f"model {judge.path.name}")


def evaluate_layers_under_attack(seen, attack, data: ImageDataset, judge, targets: torch.Tensor | None = None,
                                 device: str = "cpu") -> tuple[list[dict], torch.Tensor]:
    """One attack on an attached model's H, read through every layer's perception: per
    layer, how often the judge reads P_layer(x_adv) of a successful attack as the
    adversarial class or as the true class (the depth at which the attack takes over what
    the model perceives), and the ROC AUC of ||x - P_layer(x)||^2 as a detector. Returns the
    rows, shallow to deep, and the adversarial images (the same for every layer)."""
    rows, adversarial = [], None
    for layer in seen.layers:
        evaluation = evaluate_attack(seen.at(layer), attack, data, [judge], targets, device=device,
                                     adversarial=adversarial)
        adversarial = evaluation.adversarial
        s = evaluation.summary
        reading = s["judges"][judge.name]["on_P(x_adv)"]
        rows.append({"name": layer, "attack_success_rate": s["attack_success_rate"]["rate"],
                     "successful_attacks": s["successful_attacks"],
                     "p_adv_read_as_adversarial": reading["adversarial_label"]["rate"],
                     "p_adv_read_as_true": reading["true_label"]["rate"],
                     "detector_roc_auc": s["detector"]["auroc"], "judge": judge.name})
    return rows, adversarial
