import pytest
import torch
from helpers import ShiftAttack, linear_perception_net, pixels
from torch import nn

from perceptreg.adversarial.callables import ExternalAttack, Logits, check_adversarial, load_attack
from perceptreg.adversarial.evaluation import measure_attack
from perceptreg.core import models
from perceptreg.core.errors import PerceptregError

X = torch.full((2, 1, 1, 2), 0.5)


@pytest.mark.parametrize("adversarial, eps, norm, message", [
    (torch.full((2, 1, 2), 0.5), None, "linf", r"returned \(2, 1, 2\) torch.float32; it must return the images' shape"),
    (X.double(), None, "linf", r"returned \(2, 1, 1, 2\) torch.float64"),
    (X + 0.6, None, "linf", r"returned pixels in \[1.1, 1.1\]; they must lie in \[0, 1\]"),
    (X * float("nan"), None, "linf", r"returned pixels in \[nan, nan\]"),
    (X + 0.2, 0.1, "linf", r"moved 2 of 2 images outside the linf eps-ball \(largest distance 0.2 > eps 0.1\)"),
])
def test_check_adversarial_names_the_attack(adversarial, eps, norm, message):
    with pytest.raises(PerceptregError, match="the attack mine " + message):
        check_adversarial("mine", X, adversarial, eps, norm)


def test_check_adversarial_l2_ball_and_non_tensors():
    with pytest.raises(PerceptregError, match=r"outside the l2 eps-ball \(largest distance 0.1414 > eps 0.1\)"):
        check_adversarial("mine", X, X + 0.1, 0.1, "l2")
    with pytest.raises(PerceptregError, match="the attack mine returned a list; it must return a tensor"):
        check_adversarial("mine", X, [X], 0.1)
    check_adversarial("mine", X, X + 0.1, 0.1)  # on the sphere of L-inf: allowed
    check_adversarial("mine", X, X + 0.1, 0.15, "l2")  # L2 0.141 < 0.15: inside


def test_measure_attack_takes_any_callable_and_checks_it():
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))
    tiny = pixels([[0.6, 0.4], [0.4, 0.6]], [0, 1])

    def swap(images, labels):  # a plain function: logits = pixels, so swapping fools every image
        return images.flip(-1)
    result = measure_attack(net, swap, tiny, eps=0.2)
    assert result.success.tolist() == [True, True]
    with pytest.raises(PerceptregError, match="the attack .*swap moved 2 of 2 images outside the linf eps-ball"):
        measure_attack(net, swap, tiny, eps=0.1)
    with pytest.raises(PerceptregError, match=r"the attack ShiftAttack returned pixels in \[-0.5"):
        measure_attack(net, ShiftAttack(net, shift=-0.9), tiny)
    with pytest.raises(PerceptregError, match=r"the attack ShiftAttack returned \(4,\) torch.float32"):
        measure_attack(net, ShiftAttack(net, shape=(4,)), tiny)
    with pytest.raises(PerceptregError, match=r"the attack ShiftAttack moved 2 of 2 images outside"):
        measure_attack(net, ShiftAttack(net, eps=0.05, shift=0.1), tiny)  # its own eps: 0.05


def test_load_attack_builds_a_class_with_the_settings():
    net = models.mnist()
    attack = load_attack("helpers:ShiftAttack", net, {"shift": 0.05}, eps=0.2, steps=7)
    assert isinstance(attack.attack.model, Logits) and attack.attack.eps == 0.2 and attack.attack.shift == 0.05
    assert attack.eps == 0.2 and attack.name == "helpers:ShiftAttack"
    assert load_attack("helpers:ShiftAttack", net, {"eps": 0.3}, eps=0.2).eps == 0.3  # the option wins


@pytest.mark.parametrize("spec, message", [
    ("torchattacks", "give pgd or package.module:Class"), ("no_such_package:CW", "cannot import no_such_package"),
    ("helpers:NoSuch", "helpers has no class or function 'NoSuch'"),
])
def test_load_attack_bad_specs(spec, message):
    with pytest.raises(PerceptregError, match=f"`attack` '{spec}': {message}"):
        load_attack(spec, models.mnist())
    with pytest.raises(PerceptregError, match=r"building it with \{'colour': 1, 'eps': 0.1\} failed \(TypeError"):
        load_attack("helpers:ShiftAttack", models.mnist(), {"colour": 1}, eps=0.1)


def test_external_attack_leaves_the_model_as_found_even_when_it_fails():
    net = models.mnist()
    net.decoder.requires_grad_(False)
    net.train()
    flags = [p.requires_grad for p in net.parameters()]

    def breaks(images, labels):
        net.requires_grad_(True)
        assert not net.training  # run in eval mode
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        ExternalAttack(breaks, net, "breaks", 0.1)(torch.rand(2, 1, 28, 28), torch.arange(2))
    assert [p.requires_grad for p in net.parameters()] == flags and net.training
    with pytest.raises(PerceptregError, match="targeted attacks"):
        ExternalAttack(breaks, net, "breaks", 0.1)(torch.rand(2, 1, 28, 28), torch.arange(2), torch.arange(2))


def test_torchattacks_attacks_run_through_measure_attack():
    pytest.importorskip("torchattacks")
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))
    tiny = pixels([[0.6, 0.4], [0.55, 0.45]], [0, 0])
    pgd = load_attack("torchattacks:PGD", net, {"alpha": 0.05, "steps": 4}, eps=0.15, seed=3)
    result = measure_attack(net, pgd, tiny)
    assert result.success.tolist() == [True, True]
    assert result.summary.attack_success_rate.rate == 1.0
    assert torch.equal(measure_attack(net, pgd, tiny).adversarial, result.adversarial)  # seeded start
    cw = load_attack("torchattacks:CW", net, {"c": 1.0, "steps": 20, "lr": 0.05}, eps=0.5, norm="l2")
    assert cw.eps == 0.5  # CW takes no eps: the ball it is checked against is ours
    measure_attack(net, cw, tiny)
