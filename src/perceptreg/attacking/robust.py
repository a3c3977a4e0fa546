"""`perceptreg robust-accuracy` as one call: AutoAttack's standard ensemble on the first N
test images of a run (RobustBench's protocol), written sealed to RUN/robust_accuracy.json.

    result = robust_accuracy_of_run(open_run("runs/robust"), norm="linf", eps=0.3, images=1000)
    result.robust.rate, result.clean.rate, result.warnings
"""

from __future__ import annotations

from pathlib import Path

import torch

from perceptreg.adversarial.robust_accuracy import (
    STANDARD_IMAGES,
    STANDARD_STEPS,
    RobustAccuracy,
    check_threat,
    robust_accuracy,
    standard_eps,
)
from perceptreg.core.errors import PerceptregError
from perceptreg.data import spread_over_classes, to_float
from perceptreg.runs import Run
from perceptreg.storage.schema import load_sealed_file, write_sealed

ROBUST_ACCURACY = "robust_accuracy.json"


def robust_accuracy_of_run(run: Run, *, norm: str = "linf", eps: float | None = None,
                           images: int = STANDARD_IMAGES, seed: int = 0, steps: int = STANDARD_STEPS,
                           layer: str | None = None, device: str = "cpu") -> RobustAccuracy:
    """``robust_accuracy`` of ``run``'s classifier on the first ``images`` images of its test
    split, at ``eps`` (None: the standard radius of ``norm`` on its images, ``standard_eps``);
    writes RUN/robust_accuracy.json."""
    model = run.model(device, layer)
    eps = standard_eps(norm, model.input_shape) if eps is None else eps
    check_threat(norm, eps)
    if images < 1:
        raise PerceptregError(f"`images` must be >= 1, got {images}")
    _, test_data = run.data()
    if images > len(test_data):
        raise PerceptregError(f"`images`: the test split of {run.path} has {len(test_data)} images, "
                              f"fewer than {images}; ask for at most {len(test_data)}")
    index, selection = first_images(test_data.labels, images)
    first = test_data.subset(index)
    result = robust_accuracy(model, to_float(first.images), first.labels, norm=norm, eps=eps,
                             num_classes=run.num_classes, dataset=run.config.dataset, selection=selection,
                             seed=seed, steps=steps, device=device)
    write_sealed(run.path / ROBUST_ACCURACY, result.model_dump(exclude={"checksum"}))
    return result


def first_images(labels: torch.Tensor, n: int) -> tuple[torch.Tensor, str]:
    """The first ``n`` test images (RobustBench's protocol: CIFAR-10's and MNIST's test sets
    mix the classes), and how they were picked. A split ordered by class (MNIST-5k's) would
    give n images of one class: there, the first of each class in turn (``spread_over_classes``)."""
    classes = labels.unique().numel()
    if labels[:n].unique().numel() == min(n, classes):
        return torch.arange(n), "first"
    return spread_over_classes(labels, n), "first of each class"


def read_robust_accuracy(run: Run | Path) -> RobustAccuracy:
    """RUN/robust_accuracy.json, checked (its schema and seal); ``run`` a run or its folder,
    which needs no model to be read."""
    folder = run if isinstance(run, Path) else run.path
    return RobustAccuracy(**load_sealed_file(folder / ROBUST_ACCURACY, RobustAccuracy,
                                             "run perceptreg robust-accuracy again"))
