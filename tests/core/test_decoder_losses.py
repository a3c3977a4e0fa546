import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from perceptreg.core import models
from perceptreg.core.config import DecoderLoss, TrainConfig
from perceptreg.core.decoder_losses import Comparator, DecoderObjective, default_layers
from perceptreg.core.errors import PerceptregError
from perceptreg.core.loss import perceptual_loss, reconstruction_error

SHAPE = (1, 28, 28)


def batch(n=8):
    torch.manual_seed(0)
    return torch.rand(n, *SHAPE), torch.randint(0, 10, (n,))


def objective(name, **settings):
    net, loss = models.build("mnist", 10), DecoderLoss(name, **settings)
    return net, DecoderObjective(loss, Comparator(net.encoder, loss.layers, SHAPE), SHAPE)


def test_the_paper_loss_is_the_default_and_its_numbers_do_not_move():
    assert TrainConfig().decoder_loss == DecoderLoss() and DecoderLoss().name == "pixel"
    x, y = batch()
    recon, logits = torch.rand_like(x), torch.randn(len(x), 10)
    parts = perceptual_loss(logits, y, x, recon, 1e-2)  # no objective: the squared error, bit for bit
    assert torch.equal(parts.recon, reconstruction_error(x, recon))
    assert torch.equal(parts.total, parts.ce + 1e-2 * reconstruction_error(x, recon))


def test_the_feature_loss_is_the_comparators_squared_error_plus_a_little_pixel_error():
    net, feature = objective("feature", layers=("1", "3"))
    x, _ = batch()
    recon = torch.rand_like(x)
    wanted = [net.encoder[:2](x), net.encoder[:4](x)]
    got = [net.encoder[:2](recon), net.encoder[:4](recon)]
    expected = 0.1 * reconstruction_error(x, recon) + (reconstruction_error(wanted[0], got[0])
                                                       + reconstruction_error(wanted[1], got[1])) / 2
    loss, critic = feature(x, recon)
    torch.testing.assert_close(loss, expected)
    assert critic.item() == 0


def test_the_comparator_stays_frozen_and_the_decoder_learns():
    """The feature loss moves D (and F only through z), never the comparator's weights: else
    F could make its own comparing layers blind to what D gets wrong."""
    net, feature = objective("feature")
    x, _ = batch()
    recon = net.decoder(torch.randn(len(x), 32))
    feature(x, recon).loss.backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.decoder.parameters())


def test_deepsims_discriminator_learns_only_from_its_own_loss():
    net, deepsim = objective("deepsim")
    x, _ = batch()
    recon = net.decoder(torch.randn(len(x), 32))
    loss, critic = deepsim(x, recon)
    loss.backward(retain_graph=True)  # the decoder's side: the discriminator's weights untouched
    assert all(p.grad is None for p in deepsim.discriminator.parameters())
    assert all(p.grad is not None for p in net.decoder.parameters())
    net.decoder.zero_grad(set_to_none=True)
    critic.backward()  # the discriminator's side: the decoder untouched
    assert all(p.grad is not None for p in deepsim.discriminator.parameters())
    assert all(p.grad is None for p in net.decoder.parameters())
    assert 0 < critic.item() < 4  # two hinge terms near 1 each for a fresh discriminator


def test_the_adversarial_term_moves_the_decoders_loss():
    _, with_game = objective("deepsim", adversarial_weight=30.0)
    with_game.eval()  # spectral norm's power iteration moves in train mode, call by call
    x, _ = batch()
    recon = torch.rand_like(x)
    without = DecoderObjective(DecoderLoss("feature"), with_game.comparator, SHAPE)
    game = with_game.discriminator(with_game.comparator(recon)).mean()
    torch.testing.assert_close(with_game(x, recon).loss, without(x, recon).loss - 30.0 * game)


def test_default_layers_are_every_relu_but_the_deepest():
    assert default_layers(models.build("svhn", 10).encoder, (3, 32, 32)) == ("1", "3", "5")


class FunctionalReLUs(nn.Module):
    """Activations applied as functions, as most ResNets apply them: no ReLU module to name.
    Its blocks are declared out of the order they run in."""

    def __init__(self):
        super().__init__()
        self.deep = nn.Conv2d(8, 8, 3, stride=2, padding=1)  # 4x4 maps on 16x16 images
        self.stem = nn.Conv2d(3, 4, 3, padding=1)  # 16x16
        self.block = nn.Conv2d(4, 8, 3, stride=2, padding=1)  # 8x8
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)  # 1x1, then flat: no feature maps

    def forward(self, x):
        x = F.relu(self.deep(F.relu(self.block(F.relu(self.stem(x))))))
        return self.fc(self.pool(x).flatten(1))


def test_without_activation_modules_the_default_is_the_blocks_giving_feature_maps_in_run_order_but_the_deepest():
    assert default_layers(FunctionalReLUs(), (3, 16, 16)) == ("stem", "block")
    comparator = Comparator(FunctionalReLUs(), (), (3, 16, 16))
    assert [f.shape[1:] for f in comparator(torch.rand(2, 3, 16, 16))] == [(4, 16, 16), (8, 8, 8)]


@pytest.mark.parametrize("make, words", [
    (lambda: DecoderLoss("sharp"), "`decoder_loss` 'sharp' is unknown: use one of pixel, feature, deepsim"),
    (lambda: Comparator(models.build("mnist", 10).encoder, ("9",), SHAPE), "has no layer '9'"),
    (lambda: Comparator(models.build("mnist", 10).encoder, ("1",), (3, 32, 32)),
     "does not take images of shape (3, 32, 32)"),
    (lambda: Comparator(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), (), SHAPE), "too few to choose from"),
    (lambda: DecoderLoss("feature", adversarial_weight=-1.0), "must be finite numbers >= 0"),
    (lambda: TrainConfig(decoder_loss={"name": "feature", "colour": 1}), "`decoder_loss` has no setting colour"),
])
def test_bad_settings_are_one_line_naming_them(make, words):
    with pytest.raises(PerceptregError) as raised:
        make()
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_the_decoder_loss_reads_back_from_config_json():
    config = TrainConfig(decoder_loss=DecoderLoss("deepsim", comparator="runs/c", layers=("1",), pixel_weight=0.5))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig(decoder_loss="feature").decoder_loss == DecoderLoss("feature")
    older = {k: v for k, v in TrainConfig().to_dict().items() if k != "decoder_loss"}  # runs written before it
    assert TrainConfig.from_dict(older).decoder_loss == DecoderLoss()
    with pytest.raises(PerceptregError, match="config: setting decoder_loss.colour: extra inputs"):
        TrainConfig.from_dict({**older, "decoder_loss": {"colour": 1}})


def test_the_description_names_the_papers_loss_and_ours():
    assert DecoderLoss().describe() == "pixel (the paper's)"
    assert DecoderLoss("deepsim", layers=("1",)).describe() == (
        "deepsim (ours): comparator self [1] x1, adversarial x30, pixel x0.1")
