"""Measures: accuracy, reconstruction error and decoder collapse; judges; what an attack did."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from perceptreg.data import ImageDataset, batches, to_float
from perceptreg.models import PerceptionNet, evaluating

# Reconstructions whose spread across images is below this fraction of the images' own
# spread are "nearly constant": the decoder collapsed (PAPER-NOTES, training pitfall).
# A working MNIST decoder sits around 0.8; the all-black collapse gives 0.0.
COLLAPSE_RATIO = 0.1


@torch.no_grad()
def evaluate(model: PerceptionNet, data: ImageDataset, batch_size: int = 500,
             device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
             cluster=None) -> dict:
    """Accuracy, reconstruction MSE per pixel, and the decoder's spread ratio on ``data``.

    ``recon_spread`` is the mean over pixels of the reconstructions' standard deviation
    across images, divided by the same for the images: about 1 for a faithful decoder,
    about 0 for one that outputs the same picture whatever the input. With a
    ``distributed.Cluster`` of several processes, each evaluates every world-th image and
    the sums are added up across them.
    """
    n = len(data)
    if cluster is not None and cluster.world > 1:
        data = data.subset(torch.arange(cluster.rank, n, cluster.world))
    correct = torch.zeros((), dtype=torch.int64, device=device)
    squared_error = torch.zeros((), dtype=torch.float64, device=device)
    moments = torch.zeros(4, *data.image_shape, dtype=torch.float64, device=device)
    with evaluating(model):
        for images, labels in batches(data, batch_size, device=device):
            with torch.autocast(torch.device(device).type, autocast_dtype or torch.bfloat16,
                                enabled=autocast_dtype is not None):
                logits, _, recon = model(images)
            recon = recon.double()
            correct += (logits.argmax(1) == labels).sum()
            squared_error += (recon - images).square().sum()
            moments += torch.stack([images.sum(0), images.square().sum(0),
                                    recon.sum(0), recon.square().sum(0)])
    if cluster is not None:
        correct, squared_error, moments = (cluster.sum(t) for t in (correct, squared_error, moments))
    mean = moments / n
    std_images = (mean[1] - mean[0].square()).clamp_min(0).sqrt().mean()
    std_recon = (mean[3] - mean[2].square()).clamp_min(0).sqrt().mean()
    accuracy, mse, spread = torch.stack([
        correct / n, squared_error / (n * mean[0].numel()), std_recon / std_images.clamp_min(1e-12)
    ]).tolist()  # one device sync for all three
    return {"accuracy": accuracy, "recon_mse": mse, "recon_spread": spread,
            "decoder_collapsed": spread < COLLAPSE_RATIO}


# --- ROC of a detector score ----------------------------------------------------------------

def roc_auc(negative: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve of "higher score = positive": the probability that a random
    positive outscores a random negative, ties counting half (the Mann-Whitney U statistic)."""
    if len(negative) == 0 or len(positive) == 0:
        return float("nan")
    scores = torch.cat([negative, positive]).double()
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # average the ranks of tied scores
    unique, inverse = scores.unique(return_inverse=True)
    mean_rank = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks)
    mean_rank /= torch.bincount(inverse, minlength=len(unique)).double()
    positive_ranks = mean_rank[inverse[len(negative):]].sum()
    n_pos, n_neg = len(positive), len(negative)
    return float((positive_ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(negative: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(false positive rate, true positive rate) at every threshold, from (0, 0) to (1, 1)."""
    scores = torch.cat([negative, positive]).double()
    is_positive = torch.cat([torch.zeros(len(negative)), torch.ones(len(positive))]).double()
    order = scores.argsort(descending=True, stable=True)
    scores, is_positive = scores[order], is_positive[order]
    last_of_tie = torch.cat([scores[1:] != scores[:-1], torch.tensor([True])])
    tp = is_positive.cumsum(0)[last_of_tie]
    fp = (1 - is_positive).cumsum(0)[last_of_tie]
    zero = torch.zeros(1, dtype=torch.float64)
    return (torch.cat([zero, fp / max(len(negative), 1)]),
            torch.cat([zero, tp / max(len(positive), 1)]))


# --- judges: an independent reading of an image's class -------------------------------------

class KNNJudge:
    """k-nearest neighbours in pixel space over a labelled reference set (the training set).

    A judge of another family than the network: PGD examples made for a CNN rarely move an
    image closer, in pixels, to another class's training digits, so its reading of x_adv
    stays mostly right, and its reading of P(x_adv) says what the perception looks like.
    """

    def __init__(self, reference: ImageDataset, k: int = 3, device: torch.device | str = "cpu"):
        if k < 1 or k > len(reference):
            raise ValueError(f"k must lie in 1..{len(reference)}, got {k}")
        self.k, self.num_classes = k, len(reference.classes)
        self.name = f"{k}-NN pixels"
        self.points = to_float(reference.images).flatten(1).to(device)  # (N, D)
        self.labels = reference.labels.to(device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        votes = []
        for chunk in images.flatten(1).float().split(batch_size):
            distances = torch.cdist(chunk.to(self.points.device), self.points)  # (b, N)
            nearest = self.labels[distances.topk(self.k, largest=False).indices]  # (b, k), nearest first
            # One vote each, plus a bonus below 1 in total that favours nearer neighbours:
            # the majority wins, a tie goes to the class with the nearer neighbour.
            weights = 1 + (self.k - torch.arange(self.k, device=nearest.device)) / (self.k * (self.k + 1))
            counts = torch.zeros(len(chunk), self.num_classes, device=nearest.device).scatter_add_(
                1, nearest, weights.expand_as(nearest))
            votes.append(counts.argmax(1))
        return torch.cat(votes).to(images.device)


class ModelJudge:
    """A trained classifier as judge (e.g. another run's model): argmax of its logits."""

    def __init__(self, model: torch.nn.Module, name: str = "model"):
        self.model, self.name = model, name
        self.logits_of = model.classify if isinstance(model, PerceptionNet) else model

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        with evaluating(self.model):
            return torch.cat([self.logits_of(chunk).argmax(1) for chunk in images.split(batch_size)])


def judge_agreement(readings: torch.Tensor, adversarial: torch.Tensor, true: torch.Tensor) -> dict:
    """How often a judge's readings name H's adversarial label, the true label, or neither."""
    n = max(len(readings), 1)
    says_adversarial = (readings == adversarial).sum().item() / n
    says_true = (readings == true).sum().item() / n
    return {"adversarial_label": says_adversarial, "true_label": says_true,
            "other": 1 - says_adversarial - says_true, "count": len(readings)}


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


def reconstruction_scores(images: torch.Tensor, perceptions: torch.Tensor) -> torch.Tensor:
    """||x - P(x)||^2 per image: the detector's "this input is adversarial" score."""
    return (images - perceptions).square().flatten(1).sum(1)


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
                    device: torch.device | str = "cpu") -> AttackEvaluation:
    """Attack every image of ``data`` and measure what it did to H and to the perception.

    - success: of the images H classifies right, the share the attack turns to another
      label (to the target, for a targeted attack);
    - each judge's reading of x_adv and of P(x_adv) for the successful attacks: does the
      perception show the adversarial class, the true class, or something else? Reading
      x_adv too shows how far the attack itself transfers to the judge;
    - the reconstruction-error detector: ROC AUC of ||x - P(x)||^2 separating clean test
      images from successful adversarial ones.
    """
    with evaluating(model):
        images = to_float(data.images).to(device)
        labels = data.labels.to(device)
        adversarial = torch.cat([
            attack(x, y, None if targets is None else t)
            for x, y, t in zip(images.split(batch_size), labels.split(batch_size),
                               (targets if targets is not None else labels).to(device).split(batch_size))])
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
    scores_clean = reconstruction_scores(images, perceptions)
    scores_adv = reconstruction_scores(adversarial, adv_perceptions)[success]
    n_success = int(success.sum())
    result.summary = {
        "images": len(images),
        "clean_accuracy": correct.float().mean().item(),
        "robust_accuracy": (adv_pred == labels).float().mean().item(),
        "attack_success_rate": n_success / max(int(eligible.sum()), 1),
        "successful_attacks": n_success,
        "judges": {},
        "detector": {"score": "||x - P(x)||^2", "roc_auc": roc_auc(scores_clean.cpu(), scores_adv.cpu()),
                     "clean_images": len(scores_clean), "adversarial_images": n_success,
                     "mean_score_clean": scores_clean.mean().item(),
                     "mean_score_adversarial": scores_adv.mean().item() if n_success else float("nan")},
    }
    for judge in judges:
        readings = {"x": judge(images), "P(x)": judge(perceptions),
                    "x_adv": judge(adversarial), "P(x_adv)": judge(adv_perceptions)}
        result.judge_readings[judge.name] = readings
        result.summary["judges"][judge.name] = {
            "accuracy_on_x": (readings["x"] == labels).float().mean().item(),
            "accuracy_on_P(x)": (readings["P(x)"] == labels).float().mean().item(),
            "on_x_adv": judge_agreement(readings["x_adv"][success], adv_pred[success], labels[success]),
            "on_P(x_adv)": judge_agreement(readings["P(x_adv)"][success], adv_pred[success], labels[success]),
        }
    return result


def attack_table(summaries: dict[str, dict]) -> str:
    """The summaries of evaluate_attack as a plain-text table, one column per run."""
    names = list(summaries)
    rows = [("clean accuracy", lambda s: s["clean_accuracy"]),
            ("robust accuracy", lambda s: s["robust_accuracy"]),
            ("attack success rate", lambda s: s["attack_success_rate"]),
            ("detector ROC AUC, ||x - P(x)||^2", lambda s: s["detector"]["roc_auc"])]
    for judge in summaries[names[0]]["judges"]:
        for what, key in (("x", "accuracy_on_x"), ("P(x)", "accuracy_on_P(x)")):
            rows.append((f"{judge}: accuracy on {what}", lambda s, j=judge, k=key: s["judges"][j][k]))
        for what in ("x_adv", "P(x_adv)"):
            for label in ("adversarial_label", "true_label"):
                rows.append((f"{judge}: {what} read as {label.split('_')[0]} label",
                             lambda s, j=judge, w=what, l=label: s["judges"][j][f"on_{w}"][l]))
    width = max(len(r[0]) for r in rows) + 2
    header = " " * width + "".join(f"{Path(n).name[:24]:>26}" for n in names)
    lines = [header] + [f"{label:<{width}}" + "".join(f"{value(summaries[n]):>26.1%}" if "AUC" not in label
                                                      else f"{value(summaries[n]):>26.3f}" for n in names)
                        for label, value in rows]
    return "\n".join(lines)


# --- what a representation keeps -------------------------------------------------------------

@torch.no_grad()
def latents(model: PerceptionNet, data: ImageDataset, batch_size: int = 500,
            device: torch.device | str = "cpu") -> torch.Tensor:
    """z = F(x) for every image, flattened: (N, latent size)."""
    with evaluating(model):
        return torch.cat([model.encoder(x).flatten(1).float() for x, _ in batches(data, batch_size, device=device)])


def linear_probe(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
                 weight_decay: float = 1e-3, max_iter: int = 200) -> float:
    """Test accuracy of a multinomial logistic regression fitted on frozen features.

    Features are standardised with the training statistics; the fit is full-batch L-BFGS
    (deterministic), with a small L2 penalty so separable data still has an optimum.
    """
    mean, std = train_z.mean(0), train_z.std(0).clamp_min(1e-6)
    x_train, x_test = (train_z - mean) / std, (test_z - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    probe = torch.nn.Linear(x_train.shape[1], classes)
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x_train), train_y) + weight_decay * probe.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return (probe(x_test).argmax(1) == test_y).float().mean().item()


@torch.no_grad()
def error_map(model: PerceptionNet, data: ImageDataset, batch_size: int = 500,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Where the perception misses: squared reconstruction error per pixel, averaged over
    the images and channels of ``data``: (H, W). The model's "attention", measured."""
    total = torch.zeros(data.image_shape[1:], dtype=torch.float64, device=device)
    with evaluating(model):
        for x, _ in batches(data, batch_size, device=device):
            total += (model.perceive(x).float() - x).square().mean(1).sum(0).double()
    return (total / len(data)).float().cpu()


def centre_to_edge_ratio(errors: torch.Tensor) -> float:
    """Mean error in the middle half of the columns divided by that in the outer quarters.

    Well below 1: the perception keeps the centre and loses the edges (the restricted
    attention the paper shows for small lambda); it rises as the edges are kept too."""
    width = errors.shape[1]
    centre = errors[:, width // 4: width - width // 4]
    edges = torch.cat([errors[:, : width // 4], errors[:, width - width // 4:]], 1)
    return (centre.mean() / edges.mean().clamp_min(1e-12)).item()


def mean_and_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (0 for one value)."""
    from scipy.stats import t

    tensor = torch.tensor(list(values), dtype=torch.float64)
    if len(tensor) < 2:
        return tensor.mean().item(), 0.0
    half = t.ppf(0.5 + confidence / 2, len(tensor) - 1) * tensor.std().item() / len(tensor) ** 0.5
    return tensor.mean().item(), float(half)
