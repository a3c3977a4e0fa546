"""Judges: independent readings of an image's class, to ask what a perception looks like.

    judge = KNNJudge(train_data)          # 3-NN in pixel space, another family than the CNN
    labels = judge(perceptions)           # (B,) class indices
    judges = default_judges("cifar10", train_data)   # the main judge first
    reading = read_perception(model, test_data, judge)   # what the judge makes of P(x)

On grey digits a pixel 3-NN reads classes well; on natural (RGB) images pixel distances say
little about a class, so there the default judge is a CNN of another architecture and seed,
trained on real images only: the dataset's standing judge (``standing_judge_dir``), made
once with ``perceptreg train-judge`` (``standing_judge_config``).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import torch

from perceptreg.adversarial.callables import as_logits
from perceptreg.adversarial.defaults import STANDING_JUDGE
from perceptreg.adversarial.summary import Agreement
from perceptreg.core.attached import AttachedModel, LayerView
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.data import ImageDataset, to_float
from perceptreg.measures import MeanOf, Rate, Record, evaluate
from perceptreg.measures.consistency import derangement
from perceptreg.runs import Run, completed_epochs, open_run

JUDGES_ENV = "PERCEPTREG_JUDGES"  # where standing judges live (default ~/.cache/perceptreg/judges)


class KNNJudge:
    """k-nearest neighbours in pixel space over a labelled reference set (the training set).

    A judge of another family than the network: PGD examples made for a CNN rarely move an
    image closer, in pixels, to another class's training digits, so its reading of x_adv
    stays mostly right, and its reading of P(x_adv) says what the perception looks like.
    """

    def __init__(self, reference: ImageDataset, k: int = 3, device: torch.device | str = "cpu"):
        if k < 1 or k > len(reference):
            raise ValueError(f"k must lie in 1..{len(reference)}, got {k}")
        self.k, self.num_classes = k, len(reference.classes)
        self.name = f"{k}-NN pixels"
        self.points = to_float(reference.images).flatten(1).to(device)  # (N, D)
        self.labels = reference.labels.to(device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        votes = []
        for chunk in images.flatten(1).float().split(batch_size):
            distances = torch.cdist(chunk.to(self.points.device), self.points)  # (b, N)
            nearest = self.labels[distances.topk(self.k, largest=False).indices]  # (b, k), nearest first
            # One vote each, plus a bonus below 1 in total that favours nearer neighbours:
            # the majority wins, a tie goes to the class with the nearer neighbour.
            weights = 1 + (self.k - torch.arange(self.k, device=nearest.device)) / (self.k * (self.k + 1))
            counts = torch.zeros(len(chunk), self.num_classes, device=nearest.device).scatter_add_(
                1, nearest, weights.expand_as(nearest))
            votes.append(counts.argmax(1))
        return torch.cat(votes).to(images.device)


class ModelJudge:
    """A trained classifier as judge (e.g. another run's model, ``run_judge``): argmax of its logits."""

    def __init__(self, model: torch.nn.Module, name: str = "model"):
        self.model, self.name = model, name
        self.logits_of = as_logits(model)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        with evaluating(self.model):
            return torch.cat([self.logits_of(chunk).argmax(1) for chunk in images.split(batch_size)])

    def read(self, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """Its labels (B,) and its penultimate features (B, D): the input of its last
        ``nn.Linear`` (the layer before the logits), what a perceptual distance compares."""
        last = [m for m in _logits_module(self.model).modules() if isinstance(m, torch.nn.Linear)]
        if not last:
            raise PerceptregError(f"the judge {self.name} has no nn.Linear layer to take its features before")
        features: list[torch.Tensor] = []
        hook = last[-1].register_forward_hook(lambda module, inputs, output: features.append(inputs[0].flatten(1)))
        try:
            labels = self(images, batch_size)
        finally:
            hook.remove()
        return labels, torch.cat(features).float()


def _logits_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose last ``nn.Linear`` gives a judge's logits: C of a PerceptionNet, the
    user's network of an attached model (its decoders may hold Linear layers too), else the model."""
    if isinstance(model, LayerView):
        return model.seen.model
    if isinstance(model, AttachedModel):
        return model.model
    return model.classifier if isinstance(model, PerceptionNet) else model


def judge_agreement(readings: torch.Tensor, adversarial: torch.Tensor, true: torch.Tensor) -> Agreement:
    """How often a judge's readings name H's adversarial label, the true label, or neither,
    each a ``Rate`` (share with its 95 % interval)."""
    says_adversarial, says_true = readings == adversarial, readings == true
    return Agreement(adversarial_label=Rate.of(says_adversarial), true_label=Rate.of(says_true),
                     other=Rate.of(~says_adversarial & ~says_true), count=len(readings))


def feature_distance(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per row, the squared distance of two feature vectors each scaled to length 1 (as
    LPIPS scales its features): 2 - 2 cos, 0 for the same direction, 2 for orthogonal
    ones (ReLU features never point further apart). Scaling takes out overall contrast, so
    what is compared is which features an image excites."""
    unit = [torch.nn.functional.normalize(f.double(), dim=1) for f in (first, second)]
    return (unit[0] - unit[1]).square().sum(1)


class PerceptionReading(Record):
    """``read_perception``: what an independent judge makes of a model's P(x) (a sweep
    keeps one per member in sweep.json)."""
    judge: str
    images: int
    judge_accuracy: Rate
    perception_read_true: Rate
    model_accuracy: Rate
    feature_distance: MeanOf
    unrelated_distance: MeanOf
    pixel_mse: MeanOf
    perception_reads: list[int]


def read_perception(model: PerceptionNet, data: ImageDataset, judge: ModelJudge, batch_size: int = 500,
                    device: torch.device | str = "cpu") -> PerceptionReading:
    """What an independent ``judge`` makes of ``model``'s perception P(x) = D(F(x)) of ``data``:

    - ``judge_accuracy``: how often it reads x itself right (what its other readings are worth);
    - ``perception_read_true``: how often it reads P(x) as x's true class;
    - ``feature_distance``: ``feature_distance`` of its penultimate features of x and of P(x),
      and ``unrelated_distance``, the same between x and another image of ``data`` (a fixed
      derangement): the level of "nothing alike", so 0 is P(x) = x to the judge and
      ``unrelated_distance`` is P(x) no closer to x than another image is;
    - ``pixel_mse``: the squared error per pixel of P(x), for comparison;
    - ``model_accuracy``: C(F(x)) right;
    - ``perception_reads``: how many P(x) it reads as each class (index = class), whatever
      x's class: a judge that reads every blur as the same few classes shows it here.

    Rates as ``Rate`` (95 % Wilson interval); distances and MSE as ``MeanOf`` (95 % Student-t
    interval of the mean over images). Read in the forward
    pass of ``measures.evaluate``; to have its measures too, pass a ``PerceptionReader``'s
    ``add`` to it yourself (one pass for both)."""
    reader = PerceptionReader(judge, batch_size)
    evaluate(model, data, batch_size, device, each_batch=reader.add)
    return reader.result()


class PerceptionReader:
    """``read_perception`` fed batch by batch from a forward pass made anyway:
    ``measures.evaluate(model, data, each_batch=reader.add)``, then ``reader.result()``."""

    def __init__(self, judge: ModelJudge, batch_size: int = 500):
        self.judge, self.batch_size = judge, batch_size
        self.labels, self.reads_x, self.read_as, self.own, self.distances, self.mse, self.features = [], [], [], [], [], [], []
        self.classes = 0

    @torch.no_grad()
    def add(self, x: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, perception: torch.Tensor) -> None:
        perception = perception.float()
        x_labels, x_features = self.judge.read(x, self.batch_size)
        p_labels, p_features = self.judge.read(perception, self.batch_size)
        self.labels.append(labels.cpu())
        self.reads_x.append(x_labels == labels)
        self.read_as.append(p_labels.cpu())
        self.classes = logits.shape[1]
        self.own.append(logits.argmax(1) == labels)
        self.distances.append(feature_distance(x_features, p_features).cpu())
        self.mse.append((perception - x).square().flatten(1).mean(1).double().cpu())
        self.features.append(x_features.cpu())

    def result(self) -> PerceptionReading:
        features_x = torch.cat(self.features)
        unrelated = derangement(len(features_x))  # each image beside another, never itself
        read_as = torch.cat(self.read_as)
        return PerceptionReading(
            judge=self.judge.name, images=len(features_x), judge_accuracy=Rate.of(torch.cat(self.reads_x)),
            perception_read_true=Rate.of(read_as == torch.cat(self.labels)), model_accuracy=Rate.of(torch.cat(self.own)),
            feature_distance=MeanOf.of(torch.cat(self.distances).tolist()),
            unrelated_distance=MeanOf.of(feature_distance(features_x, features_x[unrelated]).tolist()),
            pixel_mse=MeanOf.of(torch.cat(self.mse).tolist()),
            perception_reads=torch.bincount(read_as, minlength=self.classes).tolist())  # every class, the unread too


def format_reading(reading: PerceptionReading, classes: Sequence[str] | None = None) -> str:
    """``read_perception``'s result in one line, each number with its 95 % interval, then
    the classes the judge reads P(x) as most often (named by ``classes`` where given)."""
    return (f"judge {reading.judge} ({reading.images} test images): x read right {reading.judge_accuracy}; P(x) read "
            f"as the true class {reading.perception_read_true}; feature distance x-P(x) {reading.feature_distance.text(3)} "
            f"(x-another image {reading.unrelated_distance.text(3)}); MSE/pixel {reading.pixel_mse.text(4)}; "
            f"the model's accuracy {reading.model_accuracy}; {most_read(reading, classes)}")


def most_read(reading: PerceptionReading, classes: Sequence[str] | None = None, top: int = 3) -> str:
    """"P(x) read most often as airplane 38.3 %, ship 34.6 %, frog 9.3 %": the ``top``
    classes of ``read_perception``'s ``perception_reads``, shares of all images."""
    counts = torch.tensor(reading.perception_reads)
    shares = counts / counts.sum()
    order = shares.argsort(descending=True, stable=True)[:top]
    named = [f"{classes[i] if classes else i} {100 * shares[i]:.1f} %" for i in order.tolist() if counts[i]]
    return "P(x) read most often as " + ", ".join(named)


def architecture(config) -> str | None:
    """A run's architecture by name (``config``: its TrainConfig or AttachConfig): the paper's
    ("mnist", "vgg", ...), or "custom NAME" for the user's function NAME (``--model
    FILE.py:NAME``; its file is copied per run, so the name, not the path); None where unknown."""
    arch = getattr(config, "arch", "custom")
    if arch != "custom":
        return arch
    model = getattr(config, "model", None)
    return None if model is None else "custom " + model.rpartition(":")[2]


def run_judge(judge: Run, dataset: str, image_shape: tuple[int, ...], num_classes: int,
              device: str = "cpu", judged: str | None = None, standing: bool = False) -> ModelJudge:
    """Another run's model as a judge of ``dataset``'s images: the same image shape and classes,
    and another architecture than ``judged`` (``architecture`` of the model it judges; None: a
    model of no known architecture): a twin of that model would share its blind spots, and
    read an attack on it as the attack transfers, not as the image looks. Named "model FOLDER",
    or, ``standing``, as the dataset's standing judge (its folder's name is the dataset's)."""
    for key, judged_value in (("input_shape", tuple(image_shape)), ("num_classes", num_classes)):
        if getattr(judge, key) != judged_value:
            raise PerceptregError(f"{judge.path} cannot judge {dataset}: its model has {key} "
                                  f"{getattr(judge, key)}, the images {judged_value}")
    if judged is not None and architecture(judge.config) == judged:
        raise PerceptregError(f"{judge.path} cannot judge a model of its own architecture ({judged}): its readings "
                              f"would be the attack transferring to a twin; train a judge of another architecture "
                              f"(`perceptreg train-judge`, or `perceptreg train --model FILE.py:FUNCTION --lam 0`)")
    if judge.config.dataset != dataset:
        warnings.warn(f"the judge {judge.path} was trained on {judge.config.dataset!r}, the images come from the "
                      f"test set of {dataset!r}: its training data may hold some of them", UserWarning, stacklevel=2)
    name = f"standing judge ({architecture(judge.config)})" if standing else f"model {judge.path.name}"
    return ModelJudge(judge.model(device), name)


def standing_judge_dir(dataset: str) -> Path:
    """The folder of ``dataset``'s standing judge: $PERCEPTREG_JUDGES (default
    ~/.cache/perceptreg/judges), then the dataset's name made a file name."""
    home = Path(os.environ.get(JUDGES_ENV) or Path.home() / ".cache" / "perceptreg" / "judges")
    return home.expanduser() / re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("_.")


def standing_judge_config(dataset: str, **overrides) -> TrainConfig:
    """The training settings of ``dataset``'s standing judge (``STANDING_JUDGE``, then ``overrides``)."""
    return TrainConfig(dataset=dataset, **{**STANDING_JUDGE, **overrides})


def default_judges(dataset: str, train_data: ImageDataset, judge_runs: Sequence[Run] = (),
                   device: str = "cpu", judged: str | None = None) -> list:
    """The judges of ``dataset``'s images, the main one first. On grey images the 3-NN pixel
    judge, then the models of ``judge_runs``. On natural (RGB) images the models of
    ``judge_runs``, else the dataset's standing CNN judge, else (with a warning: it means little
    there) the 3-NN pixel judge. ``judged``: the architecture of the model judged (``run_judge``)."""
    judges = [run_judge(j, dataset, train_data.image_shape, len(train_data.classes), device, judged)
              for j in judge_runs]
    if train_data.image_shape[0] != 3:  # grey digits: the pixel judge reads them well, and first
        return [KNNJudge(train_data, device=device), *judges]
    standing = None if judges else _standing_judge(dataset)
    if standing is not None:
        judges.append(run_judge(standing, dataset, train_data.image_shape, len(train_data.classes), device, judged,
                                standing=True))
    return judges or [KNNJudge(train_data, device=device)]


def main_judge(dataset: str, train_data: ImageDataset, judge: Run | None = None, device: str = "cpu",
               judged: str | None = None):
    """The one judge a single reading is made by (attach's layers, noise to class, latent
    edits): the model of ``judge`` if given, else ``default_judges``' main one; ``judged``: the
    architecture of the model judged (``run_judge``)."""
    if judge is not None:
        return run_judge(judge, dataset, train_data.image_shape, len(train_data.classes), device, judged)
    return default_judges(dataset, train_data, device=device, judged=judged)[0]


def reading_judge(dataset: str, image_shape: tuple[int, ...], num_classes: int, judge: Run | None = None,
                  device: str = "cpu", judged: str | None = None) -> ModelJudge | None:
    """The CNN judge that reads a run's perception (``read_perception``): the model of
    ``judge`` if given, else on natural (RGB) images the dataset's standing judge once it is
    fully trained, else None (a reading is then left out, without a warning); ``judged``: as
    ``run_judge``'s."""
    standing = judge is None
    if standing and image_shape[0] == 3:
        judge = _standing_judge(dataset, warn=False)
    return None if judge is None else run_judge(judge, dataset, image_shape, num_classes, device, judged, standing)


def judge_progress(folder: Path) -> tuple[Run | None, int]:
    """The judge run in ``folder`` and its completed epochs: (None, 0) before its first
    checkpoint; it is finished once they reach ``run.config.total_epochs``."""
    done = completed_epochs(folder) if folder.is_dir() else 0
    return (open_run(folder) if done else None), done


def _standing_judge(dataset: str, warn: bool = True) -> Run | None:
    """``dataset``'s standing judge if it is fully trained; else None, with a warning saying how to make it."""
    folder = standing_judge_dir(dataset)
    run, done = judge_progress(folder)
    if run is not None and done >= run.config.total_epochs:
        return run
    if not warn:
        return None
    state = f"is trained up to epoch {done} of {run.config.total_epochs}" if run else "has not been made"
    warnings.warn(f"the CNN judge of {dataset} ({folder}) {state}: only a 3-NN pixel judge reads the images, and "
                  f"pixel distances say little about a natural image's class. Run `perceptreg train-judge "
                  f"--dataset {dataset}` (it resumes), or pass --judge RUN", UserWarning, stacklevel=3)
    return None
