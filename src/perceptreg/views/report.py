"""One self-contained HTML page per run: a summary (model, lambda, accuracy, reconstruction
error, what H and P(x) mean), training curves, perception, attacks, latent edits, the sweep
table and the configuration, with every image inlined (no network needed to view it).

What the run folder lacks is skipped with a line saying which command produces it.
"""

from __future__ import annotations

import functools
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from perceptreg import runs
from perceptreg.adversarial.summary import AdaptiveRow, AttackMetricsFile
from perceptreg.adversarial.tables import RATES_NOTE, adaptive_cells, attack_rows
from perceptreg.attaching.attach_run import read_layers
from perceptreg.attaching.results import layer_cells
from perceptreg.core.errors import PerceptregError
from perceptreg.edits.interpolation import Interpolation as InterpolationMetricsFile
from perceptreg.figures import plots
from perceptreg.figures.inversion import measured_line, read_inversion
from perceptreg.figures.perception import read_measures
from perceptreg.runs import Run
from perceptreg.runs.files import INVERSION_PNG, PERCEPTION_SPREAD
from perceptreg.storage import fileio
from perceptreg.storage.schema import load_model_file
from perceptreg.sweeps.summary import (
    PROBE_KINDS,
    Spread,
    SweepRecord,
    SweepRow,
    SweepSummary,
    collapse_note,
    column_name,
    digits,
    read_sweep,
)
from perceptreg.views.report_html import STYLE, WRONG_KEY, figure, image, missing, prose, section, table
from perceptreg.views.report_summary import config_tables, summary, sweep_summary


def _reads(name: str | Callable[..., str], command: str):
    """A section drawn from a results file another command wrote: a file without what the
    section reads (damaged, or from another version) is one error naming it, not a traceback.
    ``name``: the file, or a function of the section's arguments that names the file it
    reads (of an attach run, the layer's own file)."""
    def wrap(render):
        @functools.wraps(render)
        def checked(target: Run | Path, **options) -> str:
            try:
                return render(target, **options)
            except PerceptregError:  # it names its own file (a damaged PNG is not the results file's fault)
                raise
            except (KeyError, TypeError, IndexError, AttributeError, ValueError) as err:
                read = name(target, **options) if callable(name) else name
                raise PerceptregError(f"{read} of {_folder(target)} is not as `perceptreg {command}` writes it "
                                      f"({type(err).__name__}: {err}); run `perceptreg {command}` again") from err
        return checked
    return wrap


def _training(run: Run) -> str:
    if not run.metrics:
        return missing("training metrics", f"perceptreg train --out {run.path}")
    rows = run.metrics
    # cross-entropy (about 0-2) and the summed reconstruction error (tens) on panels of their own
    curves = plots.line_plot_png([r["epoch"] for r in rows], {
        "cross-entropy (training)": {"train CE": [r["train_ce"] for r in rows]},
        "reconstruction error (training)": {"train reconstruction": [r["train_recon"] for r in rows]},
        "test accuracy": {"test accuracy": [r["test_accuracy"] for r in rows]},
        "reconstruction error (test)": {"MSE per pixel": [r["test_recon_mse"] for r in rows]},
    }, xlabel="epoch", columns=2,
        ylabel=["CE per image", "squared error per image", "fraction correct", "MSE per pixel"])
    table_rows = [[r["epoch"], r["phase"], r["train_ce"], r["train_recon"], r["test_accuracy"],
                   r["test_recon_mse"], r["seconds"]] for r in rows]
    return (image(curves, "training curves by epoch: cross-entropy, reconstruction error, test accuracy, "
                          "test reconstruction error")
            + table(["epoch", "phase", "train CE", "train recon", "test accuracy", "test MSE/pixel", "seconds"],
                    table_rows))


def _perception(run: Run) -> str:
    if not (run.path / runs.PERCEPTION).exists():
        return missing("perception grid", f"perceptreg perceive {run.path}")
    return ("<p>Test images x, each beside the model's perception P(x) = D(F(x)), with H's prediction on x.</p>"
            + WRONG_KEY + figure(run.path / runs.PERCEPTION, "test images beside their perceptions") + _measured(run))


def _measured(run: Run, layer: str | None = None) -> str:
    """Beside a perception grid: `perceive`'s measures of P(x) and its spread grid, and
    `invert`'s x' beside P(x), where they were run."""
    named = run.output_layer(layer)
    measures, inversion = read_measures(run, named), read_inversion(run, named)
    parts = [f"<p>{html.escape(line)}</p>" for line in (measures.lines(run.classes) if measures else [])]
    for name, heading in (
            (PERCEPTION_SPREAD, "x, P(x) and the spread of D(F(x) + e): what the latent leaves open"),
            (INVERSION_PNG, "x, P(x) and the inversion x', optimised to match the latent without a decoder: "
                                 "where x' and P(x) differ, the decoder's prior speaks")):
        if run.has(runs.for_layer(name, named)):
            parts.append(f"<h3>{html.escape(heading)}</h3>" + figure(run.path / runs.for_layer(name, named), heading))
    return "".join(parts) + (f"<p>{html.escape(measured_line(inversion))}</p>" if inversion else "")


def _attack_metrics(run: Run, layer: str | None = None) -> str:
    """The attack measurements `evaluate-attack` writes; of an attach run, those of ``layer``
    (default the deepest), named as it names them (``Run.output_layer``)."""
    return runs.for_layer(runs.ATTACK_METRICS, run.output_layer(layer))


@_reads(_attack_metrics, "evaluate-attack")
def _attacks(run: Run, layer: str | None = None) -> str:
    """What `attack` and `evaluate-attack` wrote; of an attach run, their files of ``layer``."""
    named = run.output_layer(layer)
    option = f" --layer {named}" if named else ""
    metrics = _attack_metrics(run, layer)
    parts = []
    if run.has(metrics):
        written = AttackMetricsFile.model_validate(run.read_json(
            metrics, AttackMetricsFile, f"make it again with `perceptreg evaluate-attack {run.path}{option}`"))
        settings = ", ".join(f"{k} {v}" for k, v in written.settings.model_dump().items() if v is not None)
        names = [Path(name).name for name in written.runs]
        rows = [[label, *map(_unbroken, values)] for label, *values in attack_rows(written.runs)]
        parts.append(f"<p>{html.escape(settings)}</p>" + table(["measure", *names], rows)
                     + f"<p class='key'>{RATES_NOTE}</p>")
        parts += [_adaptive(name, summary.adaptive_rows()) for name, summary in written.runs.items()
                  if summary.adaptive_rows()]
    else:
        parts.append(missing("attack measurements", f"perceptreg evaluate-attack {run.path}{option}"))
    for name, heading, what, command in (
            (runs.ATTACK, "", "attack figure", "attack"),
            (runs.ATTACK_ROC, "The ||x - P(x)||^2 detector", "detector ROC curve", "evaluate-attack"),
            (runs.ATTACK_FROM_NOISE, "Noise attacked toward each class, and what the model perceives of it",
             "from-noise figure", "attack --from-noise")):
        path = run.path / runs.for_layer(name, named)
        if not path.exists():
            parts.append(missing(what, f"perceptreg {command.split()[0]} {run.path}{command[len(command.split()[0]):]}"
                                       f"{option}"))
            continue
        parts.append((f"<h3>{html.escape(heading)}</h3>" if heading else "")
                     + (WRONG_KEY if name == runs.ATTACK else "") + figure(path, heading or what))
    return "".join(parts)


def _unbroken(rate: str) -> str:
    """"87.0 % [84.8, 89.0]" that a narrow cell breaks before its interval only."""
    return rate.replace(" %", "\u00a0%").replace(", ", ",\u00a0")


def _adaptive(name: str, rows: list[AdaptiveRow]) -> str:
    """The adaptive-attack table of one run (evaluate-attack --adaptive), a column per beta
    (a few), so that it fits a phone as the measures above do."""
    header, cells = adaptive_cells(rows)
    measures = [[measure, *map(_unbroken, values)] for measure, *values in zip(header[1:], *(c[1:] for c in cells))]
    return (f"<p>Adaptive attacks on {html.escape(Path(name).name)}: each keeps beta * ||x_adv - P(x_adv)||^2 "
            f"low, against the detector (\"search\": the margin attack, the best of several betas per image).</p>" + table(["beta", *(c[0] for c in cells)], measures))


@_reads(runs.INTERPOLATION_METRICS, "interpolate")
def _edits(run: Run) -> str:
    if not (run.path / runs.INTERPOLATION_METRICS).exists():
        return missing("latent edits", f"perceptreg interpolate {run.path} --target 8")
    written = InterpolationMetricsFile.model_validate(run.read_json(
        runs.INTERPOLATION_METRICS, InterpolationMetricsFile, "make it again with `perceptreg interpolate`"))
    rows = [[Path(name).name, kind, reader, curve[0], curve[len(curve) // 2], curve[-1]]
            for name, edits in written.runs.items() for kind, entry in edits.directions.by_kind().items()
            for reader, curve in entry.flip_curve.model_dump().items()]
    first = next(iter(written.runs.values()))
    alphas, target = first.alphas, first.target
    flips = table(["run", "direction", "reader", f"a={alphas[0]:g}", f"a={alphas[len(alphas) // 2]:g}",
                   f"a={alphas[-1]:g}"], rows)
    plots_ = "".join(figure(run.path / f, what) for f, what in (
        (runs.INTERPOLATION_FLIP, f"fraction of images read as class {target} by alpha, per direction and reader"),
        (runs.INTERPOLATION_CHANGE, "where the edits change the image, with the target class's region outlined"))
        if (run.path / f).exists())
    grids = "".join(figure(run.path / runs.INTERPOLATION_GRID.format(kind=kind), f"{kind} direction grid")
                    for kind in ("per-image", "mean") if (run.path / runs.INTERPOLATION_GRID.format(kind=kind)).exists())
    return (f"<p>Images edited toward class {target}: D(F(x) + a dz), each row one image, a growing to the right. "
            f"Fraction of images read as class {target} along the edit:</p>" + flips + plots_ + grids)


def _folder(target: Run | Path) -> Path:
    """The folder a report is of: a run's, or a sweep folder."""
    return target.path if isinstance(target, Run) else target


def _sweep_folder(run: Path) -> Path | None:
    """The sweep this folder is, or is a model of."""
    return next((f for f in (run, run.parent) if (f / runs.SWEEP_JSON).exists()), None)


@_reads(runs.SWEEP_JSON, "sweep")
def _sweep(target: Run | Path) -> str:
    run = _folder(target)
    folder = _sweep_folder(run)
    if folder is None:
        return ('<p class="missing">This run is not part of a sweep (a sweep folder holds sweep.json; '
                'make one with <code>perceptreg sweep</code>).</p>')
    sweep = read_sweep(folder)
    measured = "".join(_sweep_table(sweep, heading, kind, pixels) for heading, kind, pixels in SWEEP_TABLES)
    note = "" if folder == run else f"<p>This run is one model of the sweep in {html.escape(str(folder))}.</p>"
    images = "".join(figure(folder / f, what) for f, what in (
        (runs.SWEEP_PERCEPTION, "the same test images perceived by each model, one column per lambda"),
        (runs.SWEEP_ATTENTION, "squared reconstruction error per pixel, averaged over the test set, per model"),
        (runs.SWEEP_PROBES, "linear probe accuracy on frozen z, per model")) if (folder / f).exists())
    return note + "<p>Mean ± 95 % interval over seeds (none with one seed).</p>" + measured + images


# The sweep's columns in tables that fit a page: (heading, the rows' field of probes, the
# summary's field of the same probes on raw pixels); the first holds the measures that are not probes
SWEEP_TABLES = (("What each model does", None, None), *(
    (f"{name} on frozen z (test accuracy)", kind, pixels) for kind, _, pixels, name in PROBE_KINDS))


def _sweep_table(sweep: SweepSummary, heading: str, kind: str | None, pixels: str | None) -> str:
    """The sweep's probes of ``kind`` (None: its measures that are not probes), one row per
    lambda, and the same probes on raw pixels as the last row."""
    def columns(row: SweepRow) -> dict[str, Spread]:
        return row.measured() if kind is None else getattr(row, kind)
    rows = sweep.rows
    names = list(columns(rows[0]))
    if not names:
        return ""
    body = [[r.variant, r.seeds] + [value.text(r.seeds, digits(name)) for name, value in columns(r).items()]
            for r in rows]
    reference = getattr(sweep, pixels) if pixels else {}
    if reference:
        body.append(["raw pixels (reference)", ""] + [f"{reference[n]:.3f}" if n in reference else "" for n in names])
    note = collapse_note(rows) if kind is None else None
    return (f'<h3>{html.escape(heading)}</h3><div class="numbers">'
            + table(["lambda", "seeds"] + [column_name(n) for n in names], body) + "</div>"
            + (f'<p class="warning">{html.escape(note)}</p>' if note else ""))


@_reads(runs.SWEEP_CONFIG, "sweep")
def _sweep_config(run: Path) -> str:
    config = SweepRecord.model_validate(load_model_file(run / runs.SWEEP_CONFIG, SweepRecord,
                                                        "make it again with `perceptreg sweep`"))
    models = sorted(p.name for p in run.iterdir() if (p / runs.CONFIG).exists())
    return (table(["setting", "value"], [[k, json.dumps(v) if isinstance(v, (list, dict)) else v]
                                        for k, v in config.model_dump(mode="json").items()])
            + f"<p>Models (each a run folder with its own report): {html.escape(', '.join(models))}</p>")


def _layers(run: Run, layer: str | None = None) -> str:
    """An attach run: each layer's decoder and measures (of ``layer`` alone, if given), and
    what the layers perceive."""
    if not run.has(runs.LAYERS_JSON):
        return missing("layer measures", "perceptreg attach ... --out " + str(run.path))
    layers = read_layers(run)
    header, rows, note = layer_cells(layers)
    measures = table(header, [row for row in rows if layer in (None, row[0])])
    # None only for a run whose model.json records no digest of metrics.jsonl (written before
    # issue 38) and whose metrics.jsonl was lost or emptied; with the digest, open_run refuses that
    history = run.metrics
    curves = missing("training curves", f"perceptreg attach ... --out {run.path}") if not history else image(
        plots.line_plot_png([r["epoch"] for r in history], {"test reconstruction error per layer": {
            name: [r["test_recon_mse"][name] for r in history] for name in history[-1]["test_recon_mse"]}},
            xlabel="epoch", ylabel="MSE per pixel"), "test reconstruction error of each layer's decoder by epoch")
    attack = ", ".join(f"{k} {v}" for k, v in layers.attack.model_dump().items() if v is not None)
    grids = "".join(f"<h3>{html.escape(heading)}</h3>" + figure(run.path / f, heading) for f, heading in (
        (runs.LAYERS_PNG, "Test images x, then their perception at each layer, shallow to deep"),
        (runs.LAYERS_ATTACK_PNG, "Attacked images: x, x_adv, then the perception of x_adv at each layer"))
        if (run.path / f).exists())
    return (f"<p>{prose(note[:1].upper() + note[1:])}; the attack: {html.escape(attack)}.</p>"
            + measures + WRONG_KEY + grids + curves)


SECTIONS = (("Summary", "summary", summary), ("Training", "training", _training),
            ("Perception", "perception", _perception), ("Adversarial perception", "attacks", _attacks),
            ("Latent edits", "edits", _edits), ("Lambda sweep", "sweep", _sweep),
            ("Configuration", "config", config_tables))
SWEEP_SECTIONS = (("Summary", "summary", _reads(runs.SWEEP_JSON, "sweep")(sweep_summary)),
                  ("Lambda sweep", "sweep", _sweep), ("Sweep configuration", "config", _sweep_config))
def _layer_perception(run: Run, layer: str | None = None) -> str:
    """An attach run: the perception grid of each layer (or of ``layer``), as `perceive --layer` writes it."""
    parts = []
    for name in [layer] if layer else run.layers:
        grid = run.path / runs.for_layer(runs.PERCEPTION, name)
        parts.append(f"<h3>Layer {html.escape(name)}</h3>" + (
            figure(grid, f"test images beside their perception at layer {name}") + _measured(run, name) if grid.exists()
            else missing(f"perception grid of layer {name}", f"perceptreg perceive {run.path} --layer {name}")))
    return f"<p>Test images x, each beside P_layer(x), with H's prediction on x.</p>{WRONG_KEY}{''.join(parts)}"


ATTACK_FILES = (runs.ATTACK_METRICS, runs.ATTACK, runs.ATTACK_ROC, runs.ATTACK_FROM_NOISE)  # what _attacks shows


def _layer_attacks(run: Run, layer: str | None = None) -> str:
    """An attach run: the attacks of ``layer``; without one, of every layer that has any
    (`evaluate-attack`, `attack` with --layer), each under its name, or the deepest's
    missing lines where none has."""
    if layer is not None:
        return _attacks(run, layer=layer)
    attacked = [name for name in run.layers if any(run.has(runs.for_layer(f, name)) for f in ATTACK_FILES)]
    if not attacked:
        return _attacks(run)
    return "".join(f"<h3>Layer {html.escape(name)}</h3>" + _attacks(run, layer=name) for name in attacked)


def attach_sections(layer: str | None = None) -> tuple:
    """The sections of an attach run's report: every layer, or ``layer`` alone."""
    return (("Summary", "summary", summary), ("Layers", "layers", functools.partial(_layers, layer=layer)),
            ("Perception" + (f" at layer {layer}" if layer else " at each layer"), "perception",
             functools.partial(_layer_perception, layer=layer)),
            ("Adversarial perception" + (f" at layer {layer}" if layer else " at each layer attacked"), "attacks",
             functools.partial(_layer_attacks, layer=layer)),
            ("Configuration", "config", config_tables))


def _chosen_layer(target: Run | Path, layer: str | None) -> str | None:
    if layer is None:
        return None
    if not isinstance(target, Run) or target.kind != "attached":
        raise PerceptregError(f"`layer` {layer!r}: {_folder(target)} is not a run of `attach`; layers are "
                              f"chosen in runs of `attach`")
    if layer not in target.layers:
        raise PerceptregError(f"`layer` {layer!r} has no decoder in {target.path}; choose one of "
                              f"{', '.join(target.layers)}")
    return layer


def build_report(target: Run | str | Path, layer: str | None = None) -> str:
    """The report of a run (a ``Run``, or its folder), or of a sweep folder, as one HTML string.
    ``layer``: of an attach run, that layer alone (default: every layer)."""
    target = open_report_target(target)
    layer = _chosen_layer(target, layer)
    body = "".join(section(title, anchor, make(target)) for title, anchor, make in _sections(target, layer))
    title = _title(target, layer)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def _sections(target: Run | Path, layer: str | None) -> tuple:
    if isinstance(target, Run):
        return attach_sections(layer) if target.kind == "attached" else SECTIONS
    return SWEEP_SECTIONS


def _title(target: Run | Path, layer: str | None) -> str:
    return f"perceptreg report: {_folder(target).resolve().name}" + (f", layer {layer}" if layer else "")


def open_report_target(target: Run | str | Path) -> Run | Path:
    """A ``Run`` as it is; a folder opened as a run, or kept as a sweep folder (sweep.json)."""
    if isinstance(target, Run):
        return target
    folder = Path(target)
    if not (folder / runs.CONFIG).exists() and (folder / runs.SWEEP_JSON).exists():
        return folder
    return runs.open_run(folder)


@dataclass(frozen=True)
class Report:
    """A report written (``write_report``): its file, title and sections (what a run lacks is
    a line in its section naming the command that makes it)."""
    path: Path
    title: str
    sections: tuple[str, ...]

    def __fspath__(self) -> str:  # open(report), Path(report): the file
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def _repr_html_(self) -> str:  # in Jupyter: a link to the page (it inlines its plots: too long to show here)
        return (f'<p><a href="{html.escape(str(self.path))}" target="_blank">{html.escape(self.title)}</a>: '
                f'{html.escape(", ".join(self.sections))}</p>')


def write_report(target: Run | str | Path, out: str | Path | None = None, layer: str | None = None) -> Report:
    """Write the report (default ``RUN/report.html``; of one layer, ``RUN/report_LAYER.html``)
    atomically. Building it writes nothing else: its plots are drawn in
    memory and inlined, so a report refused (a damaged file) leaves the run folder as it was."""
    target = open_report_target(target)
    out = runs.check_output_file(out or _folder(target) / runs.for_layer(runs.REPORT, layer), run=_folder(target),
                                 owned=(runs.REPORT, runs.for_layer(runs.REPORT, "*")))
    text = build_report(target, layer)
    out.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return Report(out, _title(target, layer), tuple(title for title, _, _ in _sections(target, layer)))
