import pytest
import torch
from torch import nn

from perceptreg import data, models
from perceptreg.metrics import COLLAPSE_RATIO, evaluate


def tiny_dataset():
    # 4 images of 1x1x2: pixel values 0 or 255, labels 0/1
    images = torch.tensor([[0, 255], [255, 0], [255, 255], [0, 0]], dtype=torch.uint8).reshape(4, 1, 1, 2)
    return data.ImageDataset(images, torch.tensor([0, 1, 0, 0]), ("a", "b"), "tiny")


def net_with_decoder(decoder):
    # z = the two pixels; C says "b" when the first pixel is bright
    classifier = nn.Linear(2, 2)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        classifier.bias.copy_(torch.tensor([0.5, -0.5]))
    return models.PerceptionNet(nn.Flatten(), classifier, decoder, (1, 1, 2))


def test_perfect_decoder():
    result = evaluate(net_with_decoder(nn.Unflatten(1, (1, 1, 2))), tiny_dataset(), batch_size=3)
    assert result["accuracy"] == pytest.approx(0.75)  # image 2 ([1, 1], labelled "a") is called "b"
    assert result["recon_mse"] == 0.0
    assert result["recon_spread"] == pytest.approx(1.0)
    assert not result["decoder_collapsed"]


class Constant(nn.Module):
    def forward(self, z):
        return torch.full((len(z), 1, 1, 2), 0.5)


def test_constant_decoder_is_collapsed_and_mse_is_hand_computed():
    result = evaluate(net_with_decoder(Constant()), tiny_dataset())
    assert result["recon_mse"] == pytest.approx(0.25)  # every pixel is 0 or 1, recon 0.5
    assert result["recon_spread"] == 0.0 < COLLAPSE_RATIO
    assert result["decoder_collapsed"]


def test_evaluate_keeps_training_mode_and_batching_does_not_matter():
    net = models.mnist()
    train, test = data.mnist5k_split()
    subset = test.subset(torch.arange(0, 1000, 7))
    a = evaluate(net, subset, batch_size=13)
    b = evaluate(net, subset, batch_size=1000)
    assert net.training
    assert a["accuracy"] == b["accuracy"]
    assert a["recon_mse"] == pytest.approx(b["recon_mse"], rel=1e-6)
