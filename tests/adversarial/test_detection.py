import pytest
import torch

from perceptreg.adversarial.detection import (
    pixel_statistic_scores,
    reconstruction_scores,
    roc_auc,
    roc_curve,
    shuffle_perturbations,
)

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


def test_scores_by_hand():
    x = torch.tensor([[[[0.0, 1.0, 0.25]]], [[[0.5, 0.9, 0.1]]]])  # (2, 1, 1, 3)
    assert pixel_statistic_scores(x).tolist() == pytest.approx([0.0625, 0.25 + 0.01 + 0.01])
    assert reconstruction_scores(x, torch.zeros_like(x)).tolist() == pytest.approx([1.0625, 0.25 + 0.81 + 0.01])


def test_shuffled_perturbations_permute_each_images_own_values():
    images = torch.full((3, 2, 4, 4), 0.5)
    delta = torch.linspace(-0.2, 0.2, 3 * 32).view(3, 2, 4, 4)
    shuffled = shuffle_perturbations(images, images + delta)
    moved = (shuffled - images).flatten(1)
    for i in range(3):  # the same values per image, in another order
        torch.testing.assert_close(moved[i].sort().values, delta[i].flatten().sort().values)
    assert not torch.equal(moved, delta.flatten(1))
    assert torch.equal(shuffled, shuffle_perturbations(images, images + delta))  # seeded
    assert not torch.equal(shuffled, shuffle_perturbations(images, images + delta, seed=1))
