"""A run's perception, drawn and read: `perceptreg perceive` as one call.

    result = perceive("runs/demo", n=20)
    result.grid, result.reading  # the PNG of x beside P(x), the judge's reading of P(x)
    result.measures              # consistency, judges, perceptual distance, spread (measures.consistency)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from pydantic import ConfigDict

from perceptreg import data, runs
from perceptreg.adversarial import judges
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.data import registry
from perceptreg.display import figure_html
from perceptreg.figures.grids import Cell, image_grid, perception_grid, save_png
from perceptreg.measures.consistency import SPREAD_SCALE, PerceptionMeasures, measure_perception, perception_spread
from perceptreg.runs.files import PERCEPTION_JSON, PERCEPTION_SPREAD
from perceptreg.storage.schema import Sealed, write_sealed


class PerceptionFile(Sealed, PerceptionMeasures):
    """RUN/perception.json (of an attach run perception_LAYER.json): ``PerceptionMeasures``, sealed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class PerceptionResult:
    grid: Path  # the PNG: test images x beside the model's perception P(x)
    images: int  # test images in the grid
    classes: tuple[str, ...]  # the run's class names, by label
    reading: judges.PerceptionReading | None  # an independent judge's reading of P(x); None without a judge
    measures: PerceptionMeasures | None = None  # beside pixel MSE: consistency, judges, distance, spread
    spread_grid: Path | None = None  # the PNG: x, P(x) and the per-pixel spread of D(F(x) + e)

    def lines(self) -> list[str]:
        """What `perceptreg perceive` prints."""
        said = [f"perception grid of {self.images} test images: {self.grid}"]
        said += self.measures.lines(self.classes) if self.measures else []
        return said + ([judges.format_reading(self.reading, self.classes)] if self.reading else [])

    def _repr_html_(self) -> str:
        return figure_html(self.grid, self.lines())


def perceive(run: runs.Run | str | Path, n: int = 20, layer: str | None = None, judge: runs.Run | str | Path | None = None,
             out: str | Path | None = None, device: str = "cpu", read_size: int | None = None,
             more_judges: Sequence[runs.Run | str | Path] = (), attack: AttackSettings | None = None) -> PerceptionResult:
    """Draw ``n`` test images x beside the model's perception P(x) = D(F(x)) into ``out``
    (default RUN/perception.png; of an attach run, perception_LAYER.png for ``layer``, default
    the deepest), and have ``judge`` (a run whose model reads P(x); default on natural images
    the dataset's standing judge once trained, else none) read P(x) of ``read_size`` test
    images (a stratified sample; default as many as `attach` scores, ``registry.attach_sizes``:
    the whole test split of digits, 1,000 natural images, where the judges' minutes of reading
    a 10,000-image split would be a first look's). On the same images,
    ``measures.consistency.measure_perception`` (written to RUN/perception.json) with a panel
    of judges: the 3-NN pixel judge, ``judge``'s CNN and ``more_judges``' models; with
    ``attack``, each judge reads x_adv and P(x_adv) too. The spread of D(F(x) + e) of the
    grid's images goes to RUN/perception_spread.png."""
    run = runs.open_run(run)
    judge = None if judge is None else runs.open_run(judge)
    out = runs.check_output_file(out or run.path / runs.for_layer(runs.PERCEPTION, run.output_layer(layer)),
                                 owned=(runs.for_layer(runs.PERCEPTION, "*"), runs.PERCEPTION),
                                 run=run.path, reads=[judge.path] if judge else ())
    model = run.model(device, layer)
    train, test = run.data()
    judged = judges.architecture(run.config)  # a judge of the model's own architecture is refused
    reader = judges.reading_judge(run.config.dataset, test.image_shape, len(test.classes), judge, device, judged)
    panel = [judges.KNNJudge(train, device=device), *([reader] if reader else []),  # checked before anything is drawn
             *(judges.run_judge(runs.open_run(j), run.config.dataset, test.image_shape, len(test.classes), device,
                                judged) for j in more_judges)]
    named = run.output_layer(layer)
    grid = save_png(perception_grid(model, test, n=n, device=device), out)
    if read_size is None:
        read_size = registry.attach_sizes(run.config.dataset, test.image_shape[0])["eval_size"]
    sample = data.training_subset(test, read_size, seed=0)
    reading = None if reader is None else judges.read_perception(model, sample, reader, device=device)
    attacker = None if attack is None else attack.for_images(run.config.dataset, test.image_shape).build(model)
    measures = measure_perception(model, sample, panel, device=device, attack=attacker)
    write_sealed(run.path / runs.for_layer(PERCEPTION_JSON, named), PerceptionFile(**measures.model_dump()).model_dump())
    index = data.spread_over_classes(test.labels, min(n, len(test)))
    spread = save_png(spread_grid(model, data.to_float(test.images[index]).to(device), named),
                      run.path / runs.for_layer(PERCEPTION_SPREAD, named))
    return PerceptionResult(grid, min(n, len(test)), tuple(test.classes), reading, measures, spread)


@torch.no_grad()
def spread_grid(model: PerceptionNet, images: torch.Tensor, layer: str | None = None, per_row: int = 5):
    """Per image x, P(x) and the per-pixel spread of D(F(x) + e) (``perception_spread``),
    drawn white where it is largest among these images: what the latent leaves open."""
    with evaluating(model):
        perceived = model.perceive(images).float()
    spread = perception_spread(model, images)  # (B, H, W)
    shown = (spread / spread.max().clamp_min(1e-12)).unsqueeze(1).expand_as(images)
    p = f"P_{layer}(x)" if layer else "P(x)"
    cells = [cell for _ in range(len(images)) for cell in (
        Cell("x", alt="a test image"), Cell(p, alt=f"{p}, its perception"),
        Cell("spread", alt="where perceptions of nearby latents differ (white: most)"))]
    return image_grid(torch.stack([images, perceived, shown], 1).flatten(0, 1), 3 * min(per_row, len(images)), cells,
                      cards=[(i, i + 1, i + 2) for i in range(0, len(cells), 3)],
                      title=f"x, {p} and the spread of D(F(x) + e), |e| = {SPREAD_SCALE:g} |F(x)| (white: the most of these "
                            f"images, {float(spread.max()):.3f} per pixel)")


def read_measures(run: runs.Run, layer: str | None = None) -> PerceptionMeasures | None:
    """What `perceive` measured of the run's P(x) (of an attach run, ``layer``'s), as it wrote
    it to RUN/perception.json; None where it has not been run since it writes the file."""
    name = runs.for_layer(PERCEPTION_JSON, run.output_layer(layer))
    if not run.has(name):
        return None
    values = run.read_json(name, PerceptionFile, f"write it again with `perceptreg perceive {run.path}`")
    return PerceptionMeasures.model_validate({k: v for k, v in values.items() if k not in ("checksum", "code_version")})
