"""`perceptreg attack --from-noise` as one call (the paper's Fig. 7): uniform noise attacked
toward each class, how often H and the judge's reading of P(x_adv) reach the target, the
grid and noise_metrics.json, returned as a ``NoiseResult``.

    result = attack_from_noise(open_run("runs/demo"), images_per_class=100)
    result.reached_judge.rate
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from perceptreg import figures, runs
from perceptreg.adversarial.attacks import AttackSettings, FromNoise
from perceptreg.adversarial.defaults import JUDGE_CHECK_IMAGES, NOISE_SHOWN
from perceptreg.adversarial.judges import architecture, main_judge
from perceptreg.adversarial.summary import NoiseMetricsFile, NoiseRecord, Rate
from perceptreg.core.devices import check_memory
from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.data import ImageDataset, spread_over_classes, to_float
from perceptreg.display import figure_html
from perceptreg.runs import Run
from perceptreg.storage.schema import write_sealed


@dataclass(frozen=True)
class NoiseResult:
    """What the noise study found and wrote: of ``noise_images`` noise images
    (``images_per_class`` per class), how often H reads the target (``reached_h``) and how
    often the judge reads P(x_adv) as it (``reached_judge``); the judge's accuracy on
    ``clean_images`` test images (``judge_on_x``), what its reading is worth; the grid
    (``shown`` images) and the metrics file."""

    path: Path
    metrics: Path
    eps: float
    noise_images: int
    images_per_class: int
    num_classes: int
    shown: int
    judge: str
    clean_images: int
    reached_h: Rate
    reached_judge: Rate
    judge_on_x: Rate
    layer: str | None = None

    def text(self) -> str:
        """What the command prints."""
        at_layer = f" at layer {self.layer}" if self.layer else ""
        return (f"noise -> target on {self.noise_images} noise images (eps {self.eps:g}): H reads the target on "
                f"{self.reached_h}, the {self.judge} judge reads P(x_adv) as the target on {self.reached_judge} "
                f"(chance {100 / self.num_classes:.0f} %; the judge reads {self.clean_images} test images x right "
                f"{self.judge_on_x})\nnoise attacked toward each class, with the perceptions{at_layer} ({self.shown} "
                f"of {self.noise_images} shown): {self.path}")

    def _repr_html_(self) -> str:
        return figure_html(self.path, self.text().splitlines())


def attack_from_noise(run: Run, settings: AttackSettings | None = None, *, images_per_class: int = 10,
                      judge_run: Run | None = None, layer: str | None = None, device: str = "cpu",
                      out: str | Path | None = None) -> NoiseResult:
    """Attack ``images_per_class`` noise images toward each class (``FromNoise``), read them
    with H and the judge (``judge_run``'s model, default the dataset's main judge), draw the
    first ``NOISE_SHOWN`` of each class (RUN/attack_from_noise.png, or ``out``) and write
    RUN/noise_metrics.json (of an attach run, each named after ``layer``). ``settings``
    without eps: the radius of the run's images."""
    named = run.output_layer(layer)
    out = runs.check_output_file(out or run.path / runs.for_layer(runs.ATTACK_FROM_NOISE, named),
                                 owned=(runs.ATTACK_FROM_NOISE, runs.for_layer(runs.ATTACK_FROM_NOISE, "*")),
                                 run=run.path, reads=[judge_run.path] if judge_run else ())
    model, (train_data, test_data) = run.model(device, layer), run.data()
    settings = (settings or AttackSettings()).for_images(run.config.dataset, model.input_shape)
    # the noise, the attacked images, their gradients and perceptions: four float copies
    n = images_per_class
    check_memory("images_per_class", n, 4 * 4 * n * model.num_classes * math.prod(model.input_shape),
                 f"{n * model.num_classes} noise images ({n} per class)")
    classes = torch.arange(model.num_classes).repeat_interleave(n).to(device)
    noise, adversarial = settings.build(model, FromNoise).generate(classes, model.input_shape, device)
    # the grid shows the first NOISE_SHOWN per class, in one row of classes; the rates count every image
    shown = (torch.arange(model.num_classes)[:, None] * n + torch.arange(min(n, NOISE_SHOWN))).flatten()
    picture = figures.noise_grid(model, noise[shown], adversarial[shown], test_data.classes, columns=len(shown))
    judge = main_judge(run.config.dataset, train_data, judge_run, device, architecture(run.config))
    clean = test_data.subset(spread_over_classes(test_data.labels, JUDGE_CHECK_IMAGES))
    reached = noise_to_target(model, adversarial, classes, judge, clean)
    metrics = run.path / runs.for_layer(runs.NOISE_METRICS, named)
    record = NoiseRecord(**dataclasses.asdict(settings), images_per_class=n)
    written = NoiseMetricsFile(settings=record, noise_images=len(classes), judge=judge.name, reached=reached)
    write_sealed(metrics, written.model_dump(exclude={"checksum"}))
    path = figures.save_png(picture, out)
    return NoiseResult(path, metrics, settings.eps, len(classes), n, model.num_classes, len(shown), judge.name,
                       len(clean), reached["H"], reached[judge.name], reached["judge on x"], named)


@torch.no_grad()
def noise_to_target(model: PerceptionNet, adversarial: torch.Tensor, targets: torch.Tensor, judge,
                    clean: ImageDataset) -> dict[str, Rate]:
    """Of ``FromNoise``'s images, how often H reads the target and how often ``judge`` reads
    the perception P(x_adv) as the target, and the judge's own accuracy on the ``clean``
    test images, what its reading of the perceptions is worth: {"H", judge.name, "judge on x"}."""
    with evaluating(model):
        on_h = model.classify(adversarial).argmax(1) == targets
        on_perception = judge(model.perceive(adversarial)) == targets
    device = adversarial.device
    on_x = judge(to_float(clean.images).to(device)) == clean.labels.to(device)
    return {"H": Rate.of(on_h), judge.name: Rate.of(on_perception), "judge on x": Rate.of(on_x)}
