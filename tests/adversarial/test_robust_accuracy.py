"""Robust accuracy under AutoAttack's standard ensemble (issue 36): the radii, the budget, the
counts behind the rates, the gradient-masking warnings, the sealed file and the command."""

import json
import math
import warnings

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from perceptreg import data
from perceptreg.adversarial import robust_accuracy as robust
from perceptreg.core.errors import PerceptregError
from perceptreg.measures import rate


class Centroids(nn.Module):
    """A linear classifier of MNIST digits: logits = <x, class mean> - |class mean|^2 / 2
    (nearest class mean). ``quantize``: x rounded to 4 levels first, whose gradient is 0
    everywhere: the textbook masked gradient."""

    def __init__(self, train: data.ImageDataset, quantize: bool = False):
        super().__init__()
        images = data.to_float(train.images).flatten(1)
        means = torch.stack([images[train.labels == k].mean(0) for k in range(10)])
        self.linear = nn.Linear(784, 10)
        with torch.no_grad():
            self.linear.weight.copy_(means)
            self.linear.bias.copy_(-means.square().sum(1) / 2)
        self.quantize = quantize

    def forward(self, x):
        if self.quantize:
            x = torch.round(x * 3) / 3
        return self.linear(x.flatten(1))


@pytest.fixture(scope="module")
def first_digits(mnist5k):
    train, test = mnist5k
    first = test.subset(data.spread_over_classes(test.labels, 40))  # mnist5k's test split is ordered by class
    return train, data.to_float(first.images), first.labels


@pytest.mark.parametrize("norm, shape, eps", [("linf", (1, 28, 28), 0.3), ("linf", (3, 32, 32), 8 / 255),
                                              ("l2", (3, 32, 32), 0.5), ("l2", (1, 28, 28), 2.0)])
def test_the_standard_radii(norm, shape, eps):
    assert robust.standard_eps(norm, shape) == eps


@pytest.mark.parametrize("norm, eps, message", [("linf", 0.0, "`eps` must be a finite number > 0"),
                                                ("linf", -1.0, "`eps`"), ("linf", math.nan, "`eps`"),
                                                ("linf", math.inf, "`eps`"), ("l1", 0.3, "`norm` must be one of")])
def test_bad_threat_models_are_refused_in_one_line(norm, eps, message):
    with pytest.raises(PerceptregError, match=message) as caught:
        robust.check_threat(norm, eps)
    assert "\n" not in str(caught.value)


def test_autoattack_runs_the_standard_budget(first_digits):
    attack = robust.autoattack(Centroids(first_digits[0]), "linf", 0.3, num_classes=10)
    parts = attack.attack._autoattack.attacks
    assert [type(a).__name__ for a in parts] == ["APGD", "APGDT", "FAB", "Square"]
    assert [a.steps for a in parts[:3]] == [100, 100, 100] and parts[3].n_queries == 5000
    assert parts[0].loss == "ce" and parts[2].multi_targeted and attack.name == robust.AUTOATTACK
    assert robust.budget(100, 10)["APGD-T"] == "100 iterations x 9 target classes"


def test_rates_count_the_first_images(first_digits):
    train, images, labels = first_digits
    model = Centroids(train)
    result = robust.robust_accuracy(model, images, labels, norm="linf", eps=0.3, num_classes=10, steps=10,
                                    dataset="mnist5k")
    with torch.no_grad():
        clean = int((model(images).argmax(1) == labels).sum())
    assert result.images == 40 and result.clean.model_dump() == rate(clean, 40) and clean > 20
    survived = round(result.robust.rate * 40)
    assert survived <= 2 and result.broken_by["APGD-CE"] >= clean - 2  # a linear model at eps 0.3
    assert sum(result.broken_by.values()) == clean - survived  # each broken image counted once, by the first
    assert result.robust.model_dump() == rate(survived, 40) and result.pgd_robust.rate <= 0.05
    assert result.warnings == [] and result.dataset == "mnist5k" and result.eps == 0.3


def test_the_first_images_unless_the_split_is_ordered_by_class():
    from perceptreg.attacking.robust import first_images

    mixed, ordered = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 0, 1, 1, 2, 2])
    assert first_images(mixed, 4)[0].tolist() == [0, 1, 2, 3] and first_images(mixed, 4)[1] == "first"
    assert first_images(ordered, 3)[0].tolist() == [0, 2, 4] and first_images(ordered, 3)[1] == "first of each class"
    assert first_images(ordered, 1)[0].tolist() == [0]  # one image: of one class anyway


@pytest.mark.parametrize("pgd, auto, square, expected", [
    (0.50, 0.10, 0, ["PGD-50 (50.0%) is 40.0% above AutoAttack's (10.0%)"]),
    (0.15, 0.10, 0, []),
    (0.10, 0.10, 3, ["Square broke 3 image(s)"])])
def test_masking_warnings(pgd, auto, square, expected):
    found = robust.masking_warnings(pgd, auto, square)
    assert len(found) == len(expected) and all(e in line for e, line in zip(expected, found))


@pytest.mark.slow  # Square's 5000 queries: about 10 s
def test_a_masked_model_is_warned_about(first_digits):
    train, images, labels = first_digits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = robust.robust_accuracy(Centroids(train, quantize=True), images[:20], labels[:20], norm="linf",
                                        eps=0.3, num_classes=10, steps=10)
    # no gradient: PGD and APGD leave the images where they are, black-box Square does not
    assert result.pgd_robust.rate == result.clean.rate and result.broken_by["Square"] > 0
    assert result.robust.rate < result.clean.rate - robust.MASKING_GAP
    assert len(result.warnings) == 2 and [str(w.message) for w in caught] == result.warnings


def test_the_run_command_writes_a_sealed_file(trained_run, tmp_path):
    from perceptreg.attacking.robust import ROBUST_ACCURACY, read_robust_accuracy
    from perceptreg.cli import main
    from perceptreg.runs import open_run

    result = CliRunner().invoke(main, ["robust-accuracy", str(trained_run), "--n", "10", "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "10 test images (first of each class), linf eps 0.3" in result.output and "robust accuracy" in result.output
    written = read_robust_accuracy(open_run(trained_run))
    assert written.images == 10 and written.eps == 0.3 and written.budget["APGD-CE"].startswith("2 iterations")
    values = json.loads((trained_run / ROBUST_ACCURACY).read_text())
    values["robust"]["rate"] = 0.99
    (trained_run / ROBUST_ACCURACY).write_text(json.dumps(values))
    with pytest.raises(PerceptregError, match=ROBUST_ACCURACY):
        read_robust_accuracy(open_run(trained_run))
    (trained_run / ROBUST_ACCURACY).unlink()


@pytest.mark.parametrize("args, line", [(["--eps", "0"], "Error: --eps must be a finite number > 0"),
                                        (["--eps", "nan"], "Error: --eps must be a finite number > 0"),
                                        (["--norm", "l1"], "Error: Invalid value for '--norm'"),
                                        (["--n", "100000"], "Error: --n: the test split of")])
def test_the_command_refuses_bad_input_in_one_line(trained_run, args, line):
    from perceptreg.cli import main

    result = CliRunner().invoke(main, ["robust-accuracy", str(trained_run), *args])
    assert result.exit_code in (1, 2) and result.output.strip().startswith(line), result.output
    assert len(result.output.strip().splitlines()) == 1
