import pytest
import torch
from helpers import linear_perception_net, pixels, reference_set
from torch import nn

from perceptreg import attacks
from perceptreg.attack_evaluation import evaluate_attack, roc_auc, roc_curve
from perceptreg.judges import KNNJudge

# --- ROC ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("negative, positive, auc", [
    ([0, 1, 2], [3, 4], 1.0),  # perfectly separated
    ([3, 4], [0, 1, 2], 0.0),  # perfectly inverted
    ([1, 3], [2, 4], 0.75),  # 3 of the 4 (positive, negative) pairs ordered right
    ([1, 2], [2, 3], 0.875),  # the tie 2 = 2 counts half: (1 + 1 + 0.5 + 1) ... / 4
    ([5, 5], [5], 0.5),  # all tied
])
def test_roc_auc_by_hand(negative, positive, auc):
    assert roc_auc(torch.tensor(negative, dtype=torch.float), torch.tensor(positive, dtype=torch.float)) == pytest.approx(auc)


def test_roc_curve_by_hand():
    fpr, tpr = roc_curve(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0]))
    # thresholds 4, 3, 2, 1: flagged {4}, {4, 3}, {4, 3, 2}, all
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    area = torch.trapezoid(tpr, fpr).item()
    assert area == pytest.approx(roc_auc(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0])))


# --- an attack, measured -----------------------------------------------------------------------

def test_evaluate_attack_counts_by_hand():
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))  # P(x) = x: a useless detector
    tiny = pixels([[0.6, 0.4], [0.4, 0.6], [0.2, 0.8]], [0, 0, 1])
    pgd = attacks.PGD(net, eps=0.15, alpha=0.05, steps=4, random_start=False)
    result = evaluate_attack(net, pgd, tiny, judges=[KNNJudge(reference_set(), k=1)])
    s = result.summary
    # image 0: right, pushed to [0.45, 0.55]: fooled. image 1: wrong to begin with.
    # image 2: right, pushed to [0.35, 0.65]: still right.
    assert result.success.tolist() == [True, False, False]
    assert s["clean_accuracy"] == pytest.approx(2 / 3) and s["robust_accuracy"] == pytest.approx(1 / 3)
    assert s["attack_success_rate"] == pytest.approx(0.5) and s["successful_attacks"] == 1
    assert s["detector"]["roc_auc"] == pytest.approx(0.5)  # every score is 0
    judge = s["judges"]["1-NN pixels"]
    # x_adv of image 0, [0.45, 0.55], is nearest the reference [128, 128]: class 0, the true one
    assert judge["on_x_adv"] == pytest.approx({"adversarial_label": 0.0, "true_label": 1.0, "other": 0.0, "count": 1})
    assert judge["accuracy_on_x"] == 1.0


def test_evaluate_attack_targeted_success_needs_the_target():
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))
    tiny = pixels([[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]], [0, 0, 1])
    pgd = attacks.PGD(net, eps=0.15, alpha=0.05, steps=4, random_start=False)
    result = evaluate_attack(net, pgd, tiny, targets=torch.tensor([1, 1, 1]))
    # image 2 is already of the target class: not eligible; image 1 is too far
    assert result.success.tolist() == [True, False, False]
    assert result.summary["attack_success_rate"] == pytest.approx(0.5)




def test_failures_and_detector_scores_come_from_the_evaluation():
    # P(x) = 1 - x: the perception flips the pixels, so a judge reads P(x_adv) as the other class
    net = linear_perception_net(nn.Sequential(nn.Unflatten(1, (1, 1, 2)), Flip()))
    tiny = pixels([[0.6, 0.4], [0.4, 0.6], [0.2, 0.8]], [0, 1, 1])
    pgd = attacks.PGD(net, eps=0.15, alpha=0.05, steps=4, random_start=False)
    result = evaluate_attack(net, pgd, tiny, judges=[KNNJudge(reference_set(), k=1)])
    # image 0 -> [0.45, 0.55] (fooled, H says 1); image 1 -> [0.55, 0.45] (fooled, H says 0); image 2 holds
    assert result.success.tolist() == [True, True, False]
    # P(x_adv) of image 0 = [0.55, 0.45]: 1-NN [128, 128], class 0 = its true label: a failure case.
    # P(x_adv) of image 1 = [0.45, 0.55]: 1-NN [128, 128], class 0, not its true label 1.
    assert result.failures().tolist() == [0]
    clean, adversarial = result.detector_scores()
    # ||x - (1 - x)||^2 = sum (2x - 1)^2
    assert clean.tolist() == pytest.approx([0.08, 0.08, 0.72])
    assert adversarial.tolist() == pytest.approx([0.02, 0.02])  # the two successful ones only


class Flip(nn.Module):
    def forward(self, x):
        return 1 - x
