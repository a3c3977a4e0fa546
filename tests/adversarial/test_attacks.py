import pytest
import torch
from torch import nn

from perceptreg.adversarial import attacks
from perceptreg.adversarial.attacks import PGD, FromNoise
from perceptreg.core import models
from perceptreg.core.errors import PerceptregError


def identity_classifier():
    """logits = the two pixels of a 1x1x2 image: class 0 when x0 > x1."""
    linear = nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(2))
        linear.bias.zero_()
    return nn.Sequential(nn.Flatten(), linear)


def image(a, b):
    return torch.tensor([[[[a, b]]]])


def test_linf_steps_by_hand():
    # d CE / d x = softmax(x) - onehot(0) = [p0 - 1, p1]: sign [-1, +1]; two steps of 0.05
    adv = PGD(identity_classifier(), eps=0.1, alpha=0.05, steps=2, random_start=False)(image(0.6, 0.4), torch.tensor([0]))
    torch.testing.assert_close(adv, image(0.5, 0.5), atol=1e-6, rtol=0)


def test_linf_projection_stops_at_eps():
    adv = PGD(identity_classifier(), eps=0.1, alpha=0.05, steps=10, random_start=False)(image(0.6, 0.4), torch.tensor([0]))
    torch.testing.assert_close(adv, image(0.5, 0.5), atol=1e-6, rtol=0)


def test_l2_steps_and_projection_by_hand():
    step = 0.05 / 2**0.5  # the normalized gradient is [-1, 1] / sqrt(2)
    attack = PGD(identity_classifier(), eps=0.1, alpha=0.05, steps=1, norm="l2", random_start=False)
    torch.testing.assert_close(attack(image(0.6, 0.4), torch.tensor([0])), image(0.6 - step, 0.4 + step))
    attack.steps = 5  # two steps reach the sphere; the later ones are projected back onto it
    adv = attack(image(0.6, 0.4), torch.tensor([0]))
    torch.testing.assert_close(adv, image(0.6 - 2 * step, 0.4 + 2 * step))
    assert (adv - image(0.6, 0.4)).norm().item() == pytest.approx(0.1, abs=1e-6)


def test_targeted_moves_toward_the_target():
    model = identity_classifier()
    x = torch.cat([image(0.9, 0.1), image(0.8, 0.3)])
    adv = PGD(model, eps=0.3, alpha=0.1, steps=5, random_start=False)(x, torch.tensor([0, 0]), torch.tensor([1, 1]))
    torch.testing.assert_close(adv, torch.cat([image(0.6, 0.4), image(0.5, 0.6)]), atol=1e-6, rtol=0)
    assert model(adv).argmax(1).tolist() == [0, 1]  # the first needed more than eps


def test_box_holds_at_the_edges():
    adv = PGD(identity_classifier(), eps=0.1, alpha=0.05, steps=3, random_start=False)(image(0.02, 0.98), torch.tensor([1]))
    torch.testing.assert_close(adv, image(0.12, 0.88), atol=1e-6, rtol=0)
    adv = PGD(identity_classifier(), eps=0.1, alpha=0.05, steps=3, random_start=False)(image(0.98, 0.02), torch.tensor([0]))
    torch.testing.assert_close(adv, image(0.88, 0.12), atol=1e-6, rtol=0)
    adv = PGD(identity_classifier(), eps=0.1, alpha=0.05, steps=3, random_start=False)(image(0.98, 0.02), torch.tensor([1]))
    assert adv.tolist() == image(1.0, 0.0).tolist()  # pushed past the box, clamped to it


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_ball_and_box_always_hold_on_the_mnist_net(norm):
    model = models.mnist()
    x = torch.rand(16, 1, 28, 28)
    y = torch.randint(0, 10, (16,))
    eps = 0.2 if norm == "linf" else 2.0
    adv = PGD(model, eps=eps, steps=5, norm=norm, alpha=eps)(x, y)  # alpha = eps: every step hits the ball
    assert adv.min() >= 0 and adv.max() <= 1
    if norm == "linf":
        assert (adv - x).abs().max() <= eps + 1e-6
    else:
        assert (adv - x).flatten(1).norm(dim=1).max() <= eps + 1e-5


def test_zero_steps_returns_the_input_or_the_random_start():
    model, x, y = models.mnist(), torch.rand(4, 1, 28, 28), torch.arange(4)
    assert torch.equal(PGD(model, steps=0, random_start=False)(x, y), x)
    start = PGD(model, eps=0.1, steps=0)(x, y)
    assert not torch.equal(start, x) and (start - x).abs().max() <= 0.1 + 1e-6


def test_attack_leaves_the_model_as_found():
    model = models.mnist()
    model.decoder.requires_grad_(False)  # a user's own choice of flags must survive
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    PGD(model, steps=3)(torch.rand(4, 1, 28, 28), torch.arange(4))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_deterministic_under_seed():
    model, x, y = models.mnist(), torch.rand(4, 1, 28, 28), torch.arange(4)
    a = PGD(model, steps=3, seed=7)(x, y)
    assert torch.equal(a, PGD(model, steps=3, seed=7)(x, y))
    assert not torch.equal(a, PGD(model, steps=3, seed=8)(x, y))


def test_batches_are_independent_without_random_start():
    model, x, y = models.mnist(), torch.rand(6, 1, 28, 28), torch.arange(6)
    attack = PGD(model, steps=3, random_start=False)
    whole = attack(x, y)
    # PGD's loss is a batch mean, but the sign of each image's gradient is its own
    torch.testing.assert_close(torch.cat([attack(x[:2], y[:2]), attack(x[2:], y[2:])]), whole)


def test_perception_net_and_plain_classifier_are_attacked_alike():
    net = models.mnist()
    x, y = torch.rand(3, 1, 28, 28), torch.arange(3)
    plain = nn.Sequential(net.encoder, net.classifier)
    assert torch.equal(PGD(net, steps=2)(x, y), PGD(plain, steps=2)(x, y))


def test_from_noise_reaches_the_targets_on_a_linear_model():
    noise, adv = FromNoise(identity_classifier(), eps=1.0, steps=20).generate(torch.tensor([0, 1, 0, 1]), (1, 1, 2))
    assert noise.shape == adv.shape == (4, 1, 1, 2) and noise.min() >= 0 and noise.max() <= 1
    assert identity_classifier()(adv).argmax(1).tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=0), "`eps` must be a finite number > 0"), (dict(eps=-0.1), "`eps` must be a finite number > 0"),
    (dict(eps=float("inf")), "`eps` must be a finite number > 0"),
    (dict(steps=-1), "`steps` must be >= 0"), (dict(norm="l1"), "`norm` must be one of linf, l2"),
    (dict(alpha=0), "`alpha` must be a finite number > 0"), (dict(alpha=float("nan")), "`alpha` must be"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(PerceptregError, match=message):
        PGD(identity_classifier(), **kwargs)


def test_bad_inputs():
    attack = PGD(identity_classifier(), steps=1)
    with pytest.raises(PerceptregError, match=r"pixels in \[0, 1\]; these images range over \[-0.5, 0.4\]"):
        attack(image(-0.5, 0.4), torch.tensor([0]))
    with pytest.raises(PerceptregError, match="`target` class 2 is outside the model's classes 0..1"):
        attack(image(0.5, 0.4), torch.tensor([0]), torch.tensor([2]))
    with pytest.raises(PerceptregError, match="same batch size"):
        attack(image(0.5, 0.4), torch.tensor([0, 1]))


def test_alpha_default():
    assert PGD(identity_classifier(), eps=0.2, steps=100).alpha == pytest.approx(0.005)
    assert attacks.NORMS == ("linf", "l2")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_chunked_equals_one_batch(norm):
    model, x, y = models.mnist(), torch.rand(7, 1, 28, 28), torch.arange(7)
    whole = PGD(model, steps=3, norm=norm, eps=0.3 if norm == "linf" else 1.5, chunk_size=256)(x, y)
    chunked = PGD(model, steps=3, norm=norm, eps=0.3 if norm == "linf" else 1.5, chunk_size=3)(x, y)
    # L-inf steps take the gradient's sign: bit-identical. L2 steps keep its last bits,
    # which the conv kernels compute in a batch-size-dependent order.
    torch.testing.assert_close(whole, chunked, atol=1e-6 if norm == "l2" else 0, rtol=0)
    with pytest.raises(PerceptregError, match="`chunk_size` must be >= 1"):
        PGD(model, chunk_size=0)


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
    plain = attacks.AdaptivePGD(half_decoder_net(), beta=0.0, eps=0.1, alpha=0.05, steps=1, random_start=False)(x, y)
    torch.testing.assert_close(plain, image(0.65, 0.65))
    adaptive = attacks.AdaptivePGD(half_decoder_net(), beta=10.0, eps=0.1, alpha=0.05, steps=1, random_start=False)(x, y)
    torch.testing.assert_close(adaptive, image(0.65, 0.55))


@pytest.mark.parametrize("targeted", [False, True])
def test_adaptive_with_beta_zero_is_pgd_exactly(targeted):
    model, x, y = models.mnist(), torch.rand(6, 1, 28, 28), torch.arange(6)
    targets = (y + 3) % 10 if targeted else None
    settings = attacks.AttackSettings(eps=0.1, steps=3, seed=4)
    assert torch.equal(settings.build(model, attacks.AdaptivePGD, beta=0.0)(x, y, targets), settings.build(model)(x, y, targets))
    assert not torch.equal(settings.build(model, attacks.AdaptivePGD, beta=1.0)(x, y, targets), settings.build(model)(x, y, targets))


def test_adaptive_bad_settings():
    with pytest.raises(PerceptregError, match="`beta` must be a finite number >= 0"):
        attacks.AdaptivePGD(half_decoder_net(), beta=-1.0)
    with pytest.raises(PerceptregError, match="AdaptivePGD needs a PerceptionNet"):
        attacks.AdaptivePGD(identity_classifier(), beta=1.0)


# --- seeds, targets with three classes, eval mode ---------------------------------------------

def test_from_noise_draws_the_start_apart_from_the_noise():
    # with one seed for both, the start was exactly clamp((1 + 2 eps) * noise - eps)
    noise, start = FromNoise(identity_classifier(), eps=0.2, steps=0).generate(torch.tensor([0, 1] * 8), (1, 1, 2))
    assert (start - noise).abs().max() <= 0.2 + 1e-6
    assert not torch.allclose(start, (1.4 * noise - 0.2).clamp(0, 1))


def three_class_classifier():
    """logits = the three pixels of a 1x1x3 image."""
    return nn.Sequential(nn.Flatten(), nn.Identity())


def test_targeted_step_by_hand_with_three_classes():
    # d CE_target / dx = softmax(x) - onehot(target): signs [+, +, -] for target 2, so a
    # targeted step lowers pixels 0 and 1; "away from the label 0" would raise pixel 1
    x, y = torch.tensor([[[[0.6, 0.5, 0.3]]]]), torch.tensor([0])
    pgd = PGD(three_class_classifier(), eps=0.1, alpha=0.05, steps=1, random_start=False)
    torch.testing.assert_close(pgd(x, y, torch.tensor([2])), torch.tensor([[[[0.55, 0.45, 0.35]]]]))
    torch.testing.assert_close(pgd(x, y, torch.tensor([1])), torch.tensor([[[[0.55, 0.55, 0.25]]]]))
    torch.testing.assert_close(pgd(x, y), torch.tensor([[[[0.55, 0.55, 0.35]]]]))


def batch_norm_dropout_net():
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5))
    decoder = nn.Sequential(nn.Linear(16, 4), nn.Sigmoid(), nn.Unflatten(1, (1, 2, 2)))
    net = models.PerceptionNet(encoder, nn.Linear(16, 3), decoder, (1, 2, 2))
    with torch.no_grad():  # running statistics unlike a batch's own, so train mode shows
        net.encoder[2].running_mean.fill_(0.3)
        net.encoder[2].running_var.fill_(2.0)
    return net


@pytest.mark.parametrize("attack", [PGD, attacks.AdaptivePGD])
def test_attacks_run_the_model_in_eval_mode(attack):
    net, x, y = batch_norm_dropout_net(), torch.rand(8, 1, 2, 2), torch.arange(8) % 3
    net.eval()
    expected = attack(net, eps=0.1, steps=3)(x, y)
    net.train()
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    assert torch.equal(attack(net, eps=0.1, steps=3)(x, y), expected)  # no dropout, running statistics
    assert all(torch.equal(buffers[k], v) for k, v in net.state_dict().items()) and net.training
