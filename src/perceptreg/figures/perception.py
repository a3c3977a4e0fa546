"""A run's perception, drawn and read: `perceptreg perceive` as one call.

    result = perceive("runs/demo", n=20)
    result.grid, result.reading  # the PNG of x beside P(x), the judge's reading of P(x)
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from perceptreg import data, runs
from perceptreg.adversarial import judges
from perceptreg.figures.grids import perception_grid, save_png


@dataclass(frozen=True)
class PerceptionResult:
    grid: Path  # the PNG: test images x beside the model's perception P(x)
    images: int  # test images in the grid
    classes: tuple[str, ...]  # the run's class names, by label
    reading: dict | None  # judges.read_perception: an independent judge's reading of P(x); None without a judge

    def lines(self) -> list[str]:
        """What `perceptreg perceive` prints."""
        said = [f"perception grid of {self.images} test images: {self.grid}"]
        return said + ([judges.format_reading(self.reading, self.classes)] if self.reading else [])

    def _repr_html_(self) -> str:
        picture = base64.b64encode(self.grid.read_bytes()).decode()
        text = "".join(f"<p>{html.escape(line)}</p>" for line in self.lines())
        return f'<img src="data:image/png;base64,{picture}">{text}'


def perceive(run: runs.Run | str | Path, n: int = 20, layer: str | None = None, judge: runs.Run | str | Path | None = None,
             out: str | Path | None = None, device: str = "cpu", read_size: int | None = None) -> PerceptionResult:
    """Draw ``n`` test images x beside the model's perception P(x) = D(F(x)) into ``out``
    (default RUN/perception.png; of an attach run, perception_LAYER.png for ``layer``, default
    the deepest), and have ``judge`` (a run whose model reads P(x); default on natural images
    the dataset's standing judge once trained, else none) read P(x) of ``read_size`` test
    images (a stratified sample; default the whole test split)."""
    run = runs.open_run(run)
    judge = None if judge is None else runs.open_run(judge)
    out = runs.check_output_file(out or run.path / runs.for_layer(runs.PERCEPTION, run.output_layer(layer)),
                                 owned=(runs.for_layer(runs.PERCEPTION, "*"), runs.PERCEPTION),
                                 reads=(run.path, *([judge.path] if judge else ())))
    model = run.model(device, layer)
    test = run.data()[1]
    reader = judges.reading_judge(run.config.dataset, test.image_shape, len(test.classes), judge, device)
    grid = save_png(perception_grid(model, test, n=n, device=device), out)
    reading = None
    if reader is not None:
        reading = judges.read_perception(model, data.training_subset(test, read_size, seed=0), reader, device=device)
    return PerceptionResult(grid, min(n, len(test)), tuple(test.classes), reading)
