import math

import pytest
import torch
import torch.nn.functional as F
from helpers import identity_classifier, image

from perceptreg.adversarial.losses import attack_loss, check_loss, margins
from perceptreg.core.errors import PerceptregError

LOGITS = torch.tensor([[2.0, 1.0, 0.5]])


@pytest.mark.parametrize("label, target, margin", [
    (0, None, 1.0 - 2.0),  # max of the others (1) - the label's (2): not fooled
    (2, None, 2.0 - 0.5),  # fooled by 1.5
    (0, 1, 1.0 - 2.0),  # the target's (1) - max of the others (2)
    (0, 0, 2.0 - 1.0),  # "targeted" at the class it has: 1 past the boundary
])
def test_margins_by_hand(label, target, margin):
    targets = None if target is None else torch.tensor([target])
    assert margins(LOGITS, torch.tensor([label]), targets).item() == pytest.approx(margin)


def test_margin_loss_is_capped_at_kappa():
    assert attack_loss("margin", LOGITS, torch.tensor([2])).item() == pytest.approx(1.5)
    assert attack_loss("margin", LOGITS, torch.tensor([2]), kappa=0.0).item() == 0.0
    assert attack_loss("margin", LOGITS, torch.tensor([0]), kappa=0.0).item() == pytest.approx(-1.0)  # below the cap


def test_ce_is_the_cross_entropy():
    labels = torch.tensor([1])
    assert attack_loss("ce", LOGITS, labels).item() == pytest.approx(F.cross_entropy(LOGITS, labels).item())
    assert attack_loss("ce", LOGITS, labels, labels).item() == pytest.approx(-F.cross_entropy(LOGITS, labels).item())


def test_dlr_by_hand():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    # untargeted, label 0: (2 - 3) / (z_pi1 - z_pi3) = -1 / (3 - 1)
    assert attack_loss("dlr", logits, torch.tensor([0])).item() == pytest.approx(-0.5)
    # targeted at 3, label 0: (z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2) = (0 - 3) / (3 - 0.5)
    assert attack_loss("dlr", logits, torch.tensor([0]), torch.tensor([3])).item() == pytest.approx(-1.2)
    # scaling the logits leaves it unchanged (what it is for); the margin scales
    assert attack_loss("dlr", 10 * logits, torch.tensor([0])).item() == pytest.approx(-0.5)


def test_margin_gradient_on_a_linear_model():
    # logits = the two pixels; label 0: margin = x1 - x0, gradient [-1, +1]
    x = image(0.6, 0.4).requires_grad_(True)
    (grad,) = torch.autograd.grad(attack_loss("margin", identity_classifier()(x), torch.tensor([0])).sum(), x)
    assert grad.flatten().tolist() == [-1.0, 1.0]


def test_bad_losses():
    with pytest.raises(PerceptregError, match="`loss` must be one of ce, margin, dlr, got 'hinge'"):
        check_loss("hinge")
    with pytest.raises(PerceptregError, match="`kappa` must be >= 0"):
        check_loss("margin", -1.0)
    with pytest.raises(PerceptregError, match="`kappa` must be >= 0"):
        check_loss("margin", math.nan)
    with pytest.raises(PerceptregError, match="'dlr' needs at least 3 classes, the model has 2"):
        attack_loss("dlr", torch.zeros(1, 2), torch.tensor([0]))
    with pytest.raises(PerceptregError, match="'dlr' needs at least 4 classes, the model has 3"):
        attack_loss("dlr", LOGITS, torch.tensor([0]), torch.tensor([1]))
