import math

import pytest
import torch

from perceptreg.core import models
from perceptreg.core.loss import layers_loss, perceptual_loss, reconstruction_error

# Two 1x1x2 images, hand-computed:
# image 0: x = [0, 1], recon = [0.5, 1] -> squared error 0.25
# image 1: x = [1, 1], recon = [0, 0]   -> squared error 2
X = torch.tensor([[[[0.0, 1.0]]], [[[1.0, 1.0]]]])
R = torch.tensor([[[[0.5, 1.0]]], [[[0.0, 0.0]]]])
LOGITS = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p(class 0) = 1/2, 3/4
LABELS = torch.tensor([0, 0])
CE = (math.log(2) - math.log(0.75)) / 2


def test_sum_reduction_is_per_image_sum_averaged_over_batch():
    assert reconstruction_error(X, R, "sum").item() == pytest.approx((0.25 + 2) / 2)


def test_mean_reduction_is_per_pixel():
    assert reconstruction_error(X, R, "mean").item() == pytest.approx(2.25 / 4)


@pytest.mark.parametrize("reduction, recon", [("sum", 1.125), ("mean", 0.5625)])
def test_parts_and_total(reduction, recon):
    parts = perceptual_loss(LOGITS, LABELS, X, R, lam=0.1, reduction=reduction)
    assert parts.ce.item() == pytest.approx(CE)
    assert parts.recon.item() == pytest.approx(recon)
    assert parts.total.item() == pytest.approx(CE + 0.1 * recon)


def test_attach_and_train_take_one_objective_on_the_same_batch():
    """attach's fine-tuning (layers_loss) and `train` (perceptual_loss): bit for bit the
    same loss for one layer, and for the same error at four layers (a mean, not a sum)."""
    one = perceptual_loss(LOGITS, LABELS, X, R, lam=0.1)
    for layers in (1, 4):
        parts, errors = layers_loss(LOGITS, LABELS, X, [R] * layers, lam=0.1)
        assert all(torch.equal(a, b) for a, b in zip(parts, one))
        assert torch.equal(errors, torch.full((layers,), 1.125))


def test_layers_loss_weighs_the_mean_of_the_layers_errors():
    parts, errors = layers_loss(LOGITS, LABELS, X, [R, torch.zeros_like(X)], lam=0.1)
    both = (1.125 + (1 + 2) / 2) / 2  # the second layer reconstructs 0: errors 1 and 2 per image
    assert errors.tolist() == pytest.approx([1.125, 1.5])
    assert parts.total.item() == pytest.approx(CE + 0.1 * both)


def test_unknown_reduction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        reconstruction_error(X, R, "median")


def test_lambda_zero_gives_decoder_no_gradient():
    net = models.mnist()
    x = torch.rand(4, 1, 28, 28)
    logits, _, recon = net(x)
    perceptual_loss(logits, torch.tensor([0, 1, 2, 3]), x, recon, lam=0.0).total.backward()
    assert all(p.grad is None or not p.grad.any() for p in net.decoder.parameters())
    assert any(p.grad.abs().sum() > 0 for p in net.encoder.parameters())


def test_lambda_positive_trains_decoder_and_encoder_through_reconstruction():
    net = models.mnist()
    x = torch.rand(4, 1, 28, 28)
    _, _, recon = net(x)
    reconstruction_error(x, recon).backward()
    assert all(p.grad.abs().sum() > 0 for p in net.decoder.parameters())
    assert all(p.grad.abs().sum() > 0 for p in net.encoder.parameters())
