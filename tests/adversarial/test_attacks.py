import math

import pytest
import torch
from helpers import ProgressBars, batch_norm_dropout_net, identity_classifier, image
from torch import nn

from perceptreg.adversarial import attacks
from perceptreg.adversarial.adaptive import AdaptivePGD
from perceptreg.adversarial.attacks import PGD, FromNoise
from perceptreg.core import models
from perceptreg.core.errors import PerceptregError


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
    (dict(steps=-1), "`steps` must be in \\[0, 100,000\\]"), (dict(steps=100_001), "`steps` must be in \\[0, 100,000\\]"),
    (dict(norm="l1"), "`norm` must be one of linf, l2"),
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


@pytest.mark.parametrize("attack", [PGD, AdaptivePGD])
def test_attacks_run_the_model_in_eval_mode(attack):
    net, x, y = batch_norm_dropout_net(), torch.rand(8, 1, 2, 2), torch.arange(8) % 3
    net.eval()
    expected = attack(net, eps=0.1, steps=3)(x, y)
    net.train()
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    assert torch.equal(attack(net, eps=0.1, steps=3)(x, y), expected)  # no dropout, running statistics
    assert all(torch.equal(buffers[k], v) for k, v in net.state_dict().items()) and net.training


# --- margin loss, best iterate, restarts, schedule ----------------------------------------------

def test_margin_step_by_hand_with_three_classes():
    # margin of label 0 = max(x1, x2) - x0: gradient [-1, +1, 0], so pixel 2 stays (CE moves it: above)
    x, y = torch.tensor([[[[0.6, 0.5, 0.3]]]]), torch.tensor([0])
    pgd = PGD(three_class_classifier(), eps=0.1, alpha=0.05, steps=1, random_start=False, loss="margin")
    torch.testing.assert_close(pgd(x, y), torch.tensor([[[[0.55, 0.55, 0.3]]]]))


class Peak(nn.Module):
    """A 1x1x1 image x: logits [0, 0.1 - |x - 0.5|], class 1 only for x within 0.1 of 0.5."""

    def forward(self, x):
        value = x.flatten(1)[:, :1]
        return torch.cat([torch.zeros_like(value), 0.1 - (value - 0.5).abs()], 1)


def test_best_iterate_is_kept_when_a_later_step_is_worse():
    # 0.25 -> 0.45 (class 1: fooled, margin 0.05) -> 0.65 (overshot: class 0 again)
    x, y = torch.tensor([[[[0.25]]]]), torch.tensor([0])
    settings = dict(eps=0.5, alpha=0.2, steps=2, random_start=False, loss="margin")
    assert PGD(Peak(), **settings)(x, y).item() == pytest.approx(0.65)
    assert PGD(Peak(), best_iterate=True, **settings)(x, y).item() == pytest.approx(0.45)


def test_restarts_keep_per_image_the_best_start():
    # steps 0: each restart returns its random start; per image the one with the largest margin x1 - x0
    model, x, y = identity_classifier(), torch.rand(6, 1, 1, 2), torch.zeros(6, dtype=torch.long)
    attack = PGD(model, eps=0.3, steps=0, restarts=3, seed=5)
    generator = torch.Generator().manual_seed(5)
    starts = torch.stack([attack.start(x, generator) for _ in range(3)])  # (3, 6, 1, 1, 2)
    margin = starts[..., 1] - starts[..., 0]  # (3, 6, 1, 1)
    best = starts[margin.flatten(1).argmax(0), torch.arange(6)]
    assert torch.equal(attack(x, y), best)
    assert not torch.equal(best, starts[0])  # some image's best start is not the first
    # restart 0 is the single start: one restart is PGD as it was
    assert torch.equal(PGD(model, eps=0.3, steps=0, seed=5)(x, y), starts[0])


def test_cosine_schedule_by_hand():
    attack = PGD(identity_classifier(), eps=1.0, alpha=0.1, steps=4, random_start=False, schedule="cosine")
    # alpha * (1 + cos(pi (t + 1/2) / 4)): 0.1924, 0.1383, 0.0617, 0.0076, summing to 4 alpha
    cosines = [math.cos(math.pi * k / 8) for k in (1, 3, 5, 7)]
    assert [attack.step_size(t) for t in range(4)] == pytest.approx([0.1 * (1 + c) for c in cosines])
    adv = attack(image(0.9, 0.05), torch.tensor([0]))  # CE's signs [-, +]: 0.4 down and 0.4 up
    torch.testing.assert_close(adv, image(0.5, 0.45), atol=1e-6, rtol=0)
    assert PGD(identity_classifier(), steps=4, alpha=0.1).step_size(3) == 0.1


@pytest.mark.parametrize("kwargs, message", [
    (dict(restarts=0), "`restarts` must be in \\[1, 1,000\\]"), (dict(restarts=1001), "`restarts` must be in"),
    (dict(restarts=2, random_start=False), "`restarts` must be 1 without a random start"),
    (dict(schedule="step"), "`schedule` must be one of constant, cosine"), (dict(loss="hinge"), "`loss` must be one of"),
    (dict(kappa=-1.0), "`kappa` must be >= 0"),
])
def test_bad_strong_settings(kwargs, message):
    with pytest.raises(PerceptregError, match=message):
        PGD(identity_classifier(), **kwargs)


def test_strong_options_leave_the_model_as_found():
    model = models.mnist()
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    PGD(model, steps=2, loss="dlr", restarts=2, schedule="cosine", best_iterate=True)(torch.rand(3, 1, 28, 28), torch.arange(3))
    assert [p.requires_grad for p in model.parameters()] == flags and model.training
    assert all(p.grad is None for p in model.parameters())


def test_keep_better_ranks_by_tier_then_key_and_keeps_the_earlier_on_ties():
    old = attacks.Iterate(torch.zeros(4, 1), torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0.5, 3.0, 0.2, 0.2]))
    new = attacks.Iterate(torch.ones(4, 1), torch.tensor([0.0, 1.0, 1.0, 1.0]), torch.tensor([9.0, -1.0, 0.3, 0.2]))
    kept = attacks.keep_better(old, new)
    assert kept.images.flatten().tolist() == [0.0, 1.0, 1.0, 0.0]  # tier wins, then key; a tie stays
    assert kept.key.tolist() == pytest.approx([0.5, -1.0, 0.3, 0.2])


def test_pgd_is_torchattacks_pgd_from_the_same_start():
    torchattacks = pytest.importorskip("torchattacks")
    net = models.mnist()
    x, y = torch.rand(5, 1, 28, 28), torch.arange(5)
    classify = nn.Sequential(net.encoder, net.classifier)
    ours = PGD(net, eps=0.1, alpha=0.02, steps=5, random_start=False)(x, y)
    theirs = torchattacks.PGD(classify, eps=0.1, alpha=0.02, steps=5, random_start=False)(x, y)
    assert torch.equal(ours, theirs)


def test_the_progress_bar_counts_every_step_of_every_chunk_and_restart(monkeypatch):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    images, labels = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    quiet = PGD(model, eps=0.1, steps=3, chunk_size=2, restarts=2)(images, labels)
    bars = ProgressBars()
    monkeypatch.setattr(attacks, "tqdm", bars)
    shown = PGD(model, eps=0.1, steps=3, chunk_size=2, restarts=2, progress=True)(images, labels)
    assert torch.equal(quiet, shown)  # the bar changes nothing
    assert bars.bars == [{"total": 18, "desc": "attack (PGD, 5 images)", "steps": 18, "postfix": None}]


def test_settings_without_eps_take_the_radius_of_the_images_attacked():
    settings = attacks.AttackSettings(steps=3)
    assert settings.for_images("cifar10", (3, 32, 32)).eps == 0.03  # colour images: the paper's CelebA radius
    assert settings.for_images("mnist5k", (1, 28, 28)).eps == 0.2  # digits: its MNIST radius
    l2 = attacks.AttackSettings(steps=3, norm="l2")  # L2's own radii, not the L-inf number in another norm
    assert l2.for_images("cifar10", (3, 32, 32)).eps == 0.5 and l2.for_images("mnist5k", (1, 28, 28)).eps == 2.0
    assert l2.for_images("cifar10", (3, 32, 32)).build(identity_classifier()).norm == "l2"
    given = attacks.AttackSettings(eps=0.1, steps=3)
    assert given.for_images("cifar10", (3, 32, 32)) is given  # an eps given always wins
    assert settings.for_images("cifar10", (3, 32, 32)).build(identity_classifier()).eps == 0.03
    with pytest.raises(PerceptregError, match="`eps`: no radius given and no dataset known"):
        settings.build(identity_classifier())  # never a radius chosen silently for images it does not know
