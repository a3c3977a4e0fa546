"""`perceptreg interpolate` as one call: a run's images edited toward a class along latent
directions (and a second run's, on the same images), drawn, measured and written.

    result = interpolate(open_run("runs/demo"), EditSettings(target=8, alphas=(0, 1, 2)))
    result.runs["runs/demo"].directions.mean.flip_curve.H   # H's flip to 8, per alpha
    Interpolation.read("runs/demo/interpolation_metrics.json")   # the same type, from the file
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import torch
from pydantic import Field

from perceptreg import figures, runs
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.display import html_table
from perceptreg.edits.latent import H_IMAGE, Direction, direction_path, locality, save_direction
from perceptreg.edits.study import RESULT, EditSettings, EditStudy, RunEdits, study_run
from perceptreg.figures import plots
from perceptreg.runs import Run
from perceptreg.storage.schema import Sealed, load_sealed_file, write_sealed


class Interpolation(Sealed):
    """What ``interpolate`` returns and writes as interpolation_metrics.json (sealed): the
    attack that found the directions, each run's edit study by the run's path, and where the
    fitted mean direction was saved (None: a saved one was applied; files of before have none)."""

    model_config = RESULT
    attack: AttackSettings
    runs: dict[str, RunEdits] = Field(min_length=1)
    saved_direction: Path | None = None

    @classmethod
    def read(cls, path: str | Path) -> "Interpolation":
        """The results file at ``path``, checked against this schema and its seal."""
        return cls.model_validate(load_sealed_file(Path(path), cls, "make it again with `perceptreg interpolate`"))

    def lines(self) -> list[str]:
        """Per run, the mean direction's flip to the target, as the command prints it."""
        return [edits.line(Path(name).name, self.attack.eps) for name, edits in self.runs.items()]

    def _repr_html_(self) -> str:
        """The flip curves at the first and the last alpha, per run, direction and reader."""
        alphas = next(iter(self.runs.values())).alphas
        rows = [[Path(name).name, kind, reader, curve[0], curve[-1]] for name, edits in self.runs.items()
                for kind, entry in edits.directions.by_kind().items()
                for reader, curve in entry.flip_curve.model_dump().items()]
        return html_table(["run", "direction", "reader", f"a={alphas[0]:g}", f"a={alphas[-1]:g}"], rows,
                          "fraction of the images read as the target")


def interpolate(run: Run, edit: EditSettings, attack: AttackSettings = AttackSettings(), *,
                compare: Run | None = None, judge: Run | None = None, out: str | Path | None = None,
                save_direction: str | Path | None = None, device: str = "cpu") -> Interpolation:
    """Edit images toward ``edit.target`` with ``run``'s model (and ``compare``'s, on the same
    images) along per-image and mean latent directions found by targeted PGD (``attack``;
    no eps: the radius of ``run``'s images, which ``compare`` is attacked in too), read by
    ``judge``'s model or the dataset's judge (``study.study_run``). Writes into ``out``
    (default: the run folder) ``run``'s grids and change maps, every run's flip curves,
    the fitted mean direction (at ``save_direction``, default direction-SOURCE-to-TARGET;
    none when ``edit.direction_file`` applies a saved one) and interpolation_metrics.json,
    which holds the result returned."""
    reads = (run.path, *(r.path for r in (compare, judge) if r is not None),
             *(p for p in (edit.direction_file, edit.from_file) if p is not None))
    out = runs.check_output_folder(out or run.path, reads=reads)  # every output refused before any work
    if not edit.direction_file:
        direction_path(save_direction or out / _direction_name(edit), reads, run.path)
    attack = attack.for_images(run.config.dataset, run.input_shape)
    summaries, saved = {}, None
    for current in [run] + ([compare] if compare else []):
        study, region = study_run(current, edit, attack, device, judge)
        summaries[str(current.path)] = study.summary
        if current is run:
            edit_study_figures(study, region, run.data()[1].classes, out)
            if not edit.direction_file:
                saved = _save_fitted(study.direction, run, attack, save_direction or out / _direction_name(edit),
                                     reads)
    flip_figure(summaries, edit, out / runs.INTERPOLATION_FLIP)
    result = Interpolation(attack=attack, runs=summaries, saved_direction=saved)
    write_sealed(out / runs.INTERPOLATION_METRICS, result.model_dump(mode="json", exclude={"checksum"}))
    return result


def _direction_name(edit: EditSettings) -> str:
    return f"direction-{'any' if edit.source is None else edit.source}-to-{edit.target}"


def _save_fitted(direction: Direction, run: Run, attack: AttackSettings, path: str | Path, reads) -> Path:
    """The fitted mean direction saved with the run and the attack that found it."""
    meta = {"run": str(run.path), **dataclasses.asdict(attack)}
    return save_direction(dataclasses.replace(direction, meta=meta), path, run.model(), reads, run.path)


EDIT_TITLES = {"per-image": "Per-image direction: each image moved along its own dz = F(x_adv) - F(x), "
                            "x_adv its attack toward {target}",
               "mean": "Mean direction: every image moved along one dz toward {target}, "
                       "averaged over {count} training images"}


def edit_study_figures(study: EditStudy, region: torch.Tensor, classes: Sequence[str], out: Path,
                       rows: int = 20) -> list[Path]:
    """The grids of an ``EditStudy`` (first ``rows`` images; the measures use all) and its
    change maps, with the target's region outlined; written into ``out``."""
    written = []
    for kind, edited in study.edited.items():
        title = EDIT_TITLES[kind].format(target=classes[study.target], count=study.direction.count)
        grid = figures.interpolation_grid(study.images[:rows], edited[:rows], study.readings[kind][H_IMAGE][:rows],
                                          study.confidence[kind][:rows], classes, study.alphas, title,
                                          f"the {kind} direction")
        written.append(figures.save_png(grid, out / runs.INTERPOLATION_GRID.format(kind=kind)))
    maps = {f"{kind}: |change| a={study.alphas[0]:g} to {study.alphas[-1]:g}":
            locality(edited, region.to(edited.device))["change_map"] for kind, edited in study.edited.items()}
    written.append(plots.heatmaps(maps, out / runs.INTERPOLATION_CHANGE, outline=region))
    return written


def flip_figure(summaries: dict[str, RunEdits], edit: EditSettings, path: Path) -> Path:
    """Every reader's flip curve, a panel per kind of direction; the first run's solid, the
    compared run's dashed (named "(compare)")."""
    curves: dict[str, dict[str, list[float]]] = {}
    for number, summary in enumerate(summaries.values()):
        for kind, entry in summary.directions.by_kind().items():
            for reader, values in entry.flip_curve.model_dump().items():
                curves.setdefault(f"{kind} direction", {})[reader + (" (compare)" if number else "")] = values
    return plots.line_plot(edit.alphas, curves, path, xlabel="alpha",
                           ylabel=f"fraction read as class {edit.target}", ylim=(-0.02, 1.02))
