import pytest
import torch
from helpers import identity_classifier, image
from torch import nn

from perceptreg.adversarial import attacks
from perceptreg.adversarial.adaptive import AdaptiveAttack, AdaptivePGD, rank_by_detector
from perceptreg.core import models
from perceptreg.core.errors import PerceptregError

# --- adaptive PGD ----------------------------------------------------------------------------

def half_decoder_net():
    """logits = the two pixels, P(x) = 0.5 everywhere: ||x - P(x)||^2 = sum (x - 0.5)^2."""
    decoder = nn.Linear(2, 2)
    with torch.no_grad():
        decoder.weight.zero_()
        decoder.bias.fill_(0.5)
    net = models.PerceptionNet(nn.Flatten(), nn.Linear(2, 2), nn.Sequential(decoder, nn.Unflatten(1, (1, 1, 2))), (1, 1, 2))
    with torch.no_grad():
        net.classifier.weight.copy_(torch.eye(2))
        net.classifier.bias.zero_()
    return net


def test_adaptive_step_by_hand():
    # d CE / dx = [p0 - 1, p1] = [-0.475, 0.475] at (0.7, 0.6); d beta||x - 0.5||^2 / dx = 2 beta (x - 0.5)
    # beta 0: signs [-1, +1]; beta 10: x1's 0.475 - 2 * 10 * 0.1 < 0, so x1 moves down too
    x, y = image(0.7, 0.6), torch.tensor([0])
    plain = AdaptivePGD(half_decoder_net(), beta=0.0, eps=0.1, alpha=0.05, steps=1, random_start=False)(x, y)
    torch.testing.assert_close(plain, image(0.65, 0.65))
    adaptive = AdaptivePGD(half_decoder_net(), beta=10.0, eps=0.1, alpha=0.05, steps=1, random_start=False)(x, y)
    torch.testing.assert_close(adaptive, image(0.65, 0.55))


@pytest.mark.parametrize("targeted", [False, True])
def test_adaptive_with_beta_zero_is_pgd_exactly(targeted):
    model, x, y = models.mnist(), torch.rand(6, 1, 28, 28), torch.arange(6)
    targets = (y + 3) % 10 if targeted else None
    settings = attacks.AttackSettings(eps=0.1, steps=3, seed=4)
    assert torch.equal(settings.build(model, AdaptivePGD, beta=0.0)(x, y, targets), settings.build(model)(x, y, targets))
    assert not torch.equal(settings.build(model, AdaptivePGD, beta=1.0)(x, y, targets), settings.build(model)(x, y, targets))


def test_adaptive_bad_settings():
    with pytest.raises(PerceptregError, match="`beta` must be a finite number >= 0"):
        AdaptivePGD(half_decoder_net(), beta=-1.0)
    with pytest.raises(PerceptregError, match="AdaptivePGD needs a PerceptionNet"):
        AdaptivePGD(identity_classifier(), beta=1.0)




# --- the strong adaptive attack -----------------------------------------------------------------

def test_rank_by_detector_by_hand():
    margin = torch.tensor([1.0, 1.0, -1.0, 1.0, 0.5])
    scores = torch.tensor([0.5, 3.0, 0.5, 0.1, 1.0])
    tier, key = rank_by_detector(margin, scores, (0.2, 2.0))
    # fooled inside the band: tier 2, the lower score the better; fooled but flagged (3 > 2,
    # 0.1 < 0.2 "too clean"): tier 1, nearer the band the better; not fooled: tier 0, by margin
    assert tier.tolist() == [2, 1, 0, 1, 2]
    assert key.tolist() == pytest.approx([-0.5, -1.0, -1.0, -0.1, -1.0])


class Fixed(AdaptivePGD):
    """An AdaptivePGD run that returns given images: to test how runs are merged."""

    def __init__(self, net, images):
        super().__init__(net, beta=0.0, eps=0.5, steps=1)
        self.images = images

    def forward(self, images, labels, targets):
        return self.images


def test_adaptive_attack_keeps_per_image_the_best_beta():
    # half_decoder_net: logits = the pixels, score = sum (x - 0.5)^2; label 0 is fooled when x1 > x0
    net, y = half_decoder_net(), torch.tensor([0, 0, 0])
    x = torch.cat([image(0.7, 0.6), image(0.7, 0.6), image(0.6, 0.55)])
    first = torch.cat([image(0.6, 0.7), image(0.6, 0.7), image(0.6, 0.55)])  # fooled (score 0.05), fooled, not
    second = torch.cat([image(0.5, 0.55), image(0.7, 0.6), image(0.5, 0.6)])  # fooled (0.0025), not, fooled
    attack = AdaptiveAttack(net, betas=(0.0, 1.0), eps=0.5, steps=1)
    attack.attacks = [Fixed(net, first), Fixed(net, second)]
    kept = attack(x, y)
    assert torch.equal(kept, torch.cat([second[:1], first[1:2], second[2:]]))


def test_adaptive_attack_is_at_least_as_good_as_each_beta_alone():
    net, x, y = models.mnist(), torch.rand(8, 1, 28, 28), torch.arange(8)
    settings = dict(eps=0.1, steps=3, seed=2)
    searched = AdaptiveAttack(net, betas=(0.0, 10.0), **settings)
    ranked = searched.attacks[0]
    with torch.no_grad():
        best_tier = ranked.evaluate(searched(x, y), y, None)[1]
        for beta in (0.0, 10.0):
            alone = AdaptivePGD(net, beta=beta, loss="margin", kappa=0.0, best_iterate=True, **settings)(x, y)
            assert (best_tier >= ranked.evaluate(alone, y, None)[1]).all()


def test_adaptive_attack_bad_settings():
    with pytest.raises(PerceptregError, match="`betas` must name at least one beta"):
        AdaptiveAttack(half_decoder_net(), betas=())
    with pytest.raises(PerceptregError, match="`steps` must be >= 1"):
        AdaptiveAttack(half_decoder_net(), steps=0)
    with pytest.raises(PerceptregError, match="`band` must be"):
        AdaptiveAttack(half_decoder_net(), band=(2.0, 1.0))
    with pytest.raises(PerceptregError, match="AdaptiveAttack needs a PerceptionNet"):
        AdaptiveAttack(identity_classifier())


def test_adaptive_attack_keeps_a_given_candidate_where_it_ranks_better():
    # the plain attack's images, given as a candidate, win on the image where they rank better
    net, y = half_decoder_net(), torch.tensor([0, 0])
    x = torch.cat([image(0.7, 0.6), image(0.7, 0.6)])
    searched = torch.cat([image(0.6, 0.7), image(0.7, 0.6)])  # fooled (score 0.05), not fooled
    plain = torch.cat([image(0.6, 0.9), image(0.6, 0.7)])  # fooled (score 0.17), fooled
    attack = AdaptiveAttack(net, betas=(0.0,), losses=("margin",), eps=0.5, steps=1, candidates=(plain,))
    attack.attacks = [Fixed(net, searched)]
    assert torch.equal(attack(x, y), torch.cat([searched[:1], plain[1:]]))
    with pytest.raises(PerceptregError, match="`candidates` must be adversarial images of the images attacked"):
        AdaptiveAttack(net, eps=0.5, steps=1, candidates=(plain[:1],))(x, y)


def test_adaptive_attack_runs_every_loss_with_every_beta():
    attack = AdaptiveAttack(half_decoder_net(), betas=(0.0, 1.0), eps=0.1, steps=1, loss="dlr")
    assert [(a.loss, a.beta) for a in attack.attacks] == [("margin", 0.0), ("margin", 1.0), ("ce", 0.0), ("ce", 1.0)]
    with pytest.raises(PerceptregError, match="`losses` must name at least one loss"):
        AdaptiveAttack(half_decoder_net(), losses=())
