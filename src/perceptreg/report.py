"""One self-contained HTML page per run: config, training curves, perception, attacks,
latent edits and the sweep table, with every image inlined (no network needed to view it).

What the run folder lacks is skipped with a line saying which command produces it.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from perceptreg import checkpoint, figures, runs
from perceptreg.attack_evaluation import adaptive_table, attack_table
from perceptreg.errors import PerceptregError
from perceptreg.fitting import read_layers

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; padding: 0 1rem; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; display: block; overflow-x: auto; max-width: 100%; }
td, th { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5rem 0; }
img.pixels { image-rendering: pixelated; }
.missing { color: #777; font-style: italic; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    kind = "plot" if any(w in path.name for w in ("curves", "roc", "flip", "change")) else "pixels"
    return f'<img class="{kind}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[object]]) -> str:
    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return html.escape("-" if value is None else str(value))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _missing(what: str, command: str) -> str:
    return f'<p class="missing">No {html.escape(what)} in this run; produce it with <code>{html.escape(command)}</code>.</p>'


def _section(title: str, anchor: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def _config(run: Path) -> str:
    config = checkpoint.read_json(run / runs.CONFIG)
    rows = [[k, json.dumps(v) if isinstance(v, (list, dict)) else v] for k, v in config.items()]
    meta_path = run / runs.MODEL_META
    if meta_path.exists():
        meta = checkpoint.read_json(meta_path)
        rows += [["architecture", meta.get("arch")], ["latent shape", meta.get("latent_shape")],
                 ["classes", ", ".join(meta.get("classes", []))],
                 ["versions", ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())]]
    return _table(["setting", "value"], rows)


def _training(run: Path) -> str:
    if not (run / runs.METRICS).exists():
        return _missing("training metrics", f"perceptreg train --out {run}")
    rows = runs.read_metrics(run)
    epochs = [r["epoch"] for r in rows]
    curves = figures.line_plot(epochs, {
        "training loss parts": {"train CE": [r["train_ce"] for r in rows],
                                "train reconstruction": [r["train_recon"] for r in rows]},
        "test accuracy": {"test accuracy": [r["test_accuracy"] for r in rows]},
        "test reconstruction": {"MSE per pixel": [r["test_recon_mse"] for r in rows]},
    }, run / runs.TRAINING_CURVES, xlabel="epoch", ylabel="")
    last = rows[-1]
    collapsed = ('<p><strong>Warning: the decoder collapsed</strong>: its reconstructions are nearly '
                 'the same for every image; perceptions show nothing about the inputs.</p>'
                 if last.get("decoder_collapsed") else "")
    table = _table(["epoch", "phase", "train CE", "train recon", "test accuracy", "test MSE/pixel", "seconds"],
                   [[r["epoch"], r["phase"], r["train_ce"], r["train_recon"], r["test_accuracy"],
                     r["test_recon_mse"], r["seconds"]] for r in rows])
    return collapsed + _image(curves, "training curves") + table


def _perception(run: Path) -> str:
    if not (run / runs.PERCEPTION).exists():
        return _missing("perception grid", f"perceptreg perceive {run}")
    return "<p>Each test image x beside the model's perception P(x) = D(F(x)).</p>" + _image(run / runs.PERCEPTION, "perception grid")


def _attacks(run: Path) -> str:
    parts = []
    if (run / runs.ATTACK_METRICS).exists():
        written = checkpoint.read_json(run / runs.ATTACK_METRICS)
        settings = ", ".join(f"{k} {v}" for k, v in written["settings"].items())
        parts.append(f"<p>{html.escape(settings)}</p><pre>{html.escape(attack_table(written['runs']))}</pre>")
        parts += [_adaptive(name, summary["adaptive"]) for name, summary in written["runs"].items() if "adaptive" in summary]
    else:
        parts.append(_missing("attack measurements", f"perceptreg evaluate-attack {run}"))
    for name, what, command in ((runs.ATTACK, "attack figure", "attack"),
                                (runs.ATTACK_ROC, "detector ROC curve", "evaluate-attack"),
                                (runs.ATTACK_FROM_NOISE, "from-noise figure", "attack --from-noise")):
        parts.append(_image(run / name, what) if (run / name).exists()
                     else _missing(what, f"perceptreg {command.split()[0]} {run}{command[len(command.split()[0]):]}"))
    return "".join(parts)


def _adaptive(name: str, rows: list[dict]) -> str:
    """The adaptive-attack table of one run (evaluate-attack --adaptive)."""
    return (f"<p>Adaptive PGD on {html.escape(Path(name).name)}: the attack keeps beta * ||x_adv - P(x_adv)||^2 "
            f"low, against the detector.</p><pre>{html.escape(adaptive_table(rows))}</pre>")


def _edits(run: Path) -> str:
    if not (run / runs.INTERPOLATION_METRICS).exists():
        return _missing("latent edits", f"perceptreg interpolate {run} --target 8")
    written = checkpoint.read_json(run / runs.INTERPOLATION_METRICS)
    rows = []
    for name, summary in written["runs"].items():
        for kind, entry in summary["directions"].items():
            for reader, curve in entry["flip_curve"].items():
                rows.append([Path(name).name, kind, reader, curve[0], curve[len(curve) // 2], curve[-1]])
    alphas = next(iter(written["runs"].values()))["alphas"]
    target = next(iter(written["runs"].values()))["target"]
    table = _table(["run", "direction", "reader", f"a={alphas[0]:g}", f"a={alphas[len(alphas) // 2]:g}",
                    f"a={alphas[-1]:g}"], rows)
    images = "".join(_image(run / f, f) for f in (runs.INTERPOLATION_FLIP, runs.INTERPOLATION_CHANGE,
                                                   runs.INTERPOLATION_GRID.format(kind="per-image"),
                                                   runs.INTERPOLATION_GRID.format(kind="mean"))
                     if (run / f).exists())
    return f"<p>Fraction of images read as class {target} along the edit.</p>" + table + images


def _sweep_folder(run: Path) -> Path | None:
    """The sweep this folder is, or is a model of."""
    return next((f for f in (run, run.parent) if (f / runs.SWEEP_JSON).exists()), None)


def _sweep(run: Path) -> str:
    folder = _sweep_folder(run)
    if folder is None:
        return ('<p class="missing">This run is not part of a sweep (a sweep folder holds sweep.json; '
                'make one with <code>perceptreg sweep</code>).</p>')
    sweep = checkpoint.read_json(folder / runs.SWEEP_JSON)
    rows = sweep["rows"]
    columns = [k for k in rows[0] if not k.endswith("_ci95") and k not in ("variant", "seeds")]
    table = _table(["lambda", "seeds"] + [c.replace("_", " ") for c in columns],
                   [[r["variant"], r["seeds"]] + [f"{r[c]:.4g} ± {r[c + '_ci95']:.2g}" for c in columns] for r in rows])
    pixel_probes = sweep.get("pixel_probes", {})
    if pixel_probes:
        table += "<p>Linear probes on the raw pixels (reference): " + html.escape(
            ", ".join(f"{k} {v:.3f}" for k, v in pixel_probes.items())) + "</p>"
    note = "" if folder == run else f"<p>This run is one model of the sweep in {html.escape(str(folder))}.</p>"
    images = "".join(_image(folder / f, f) for f in (runs.SWEEP_PERCEPTION, runs.SWEEP_ATTENTION, runs.SWEEP_PROBES)
                     if (folder / f).exists())
    return note + "<p>Mean ± 95 % interval over seeds.</p>" + table + images


def _sweep_config(run: Path) -> str:
    config = checkpoint.read_json(run / runs.SWEEP_CONFIG)
    models = sorted(p.name for p in run.iterdir() if (p / runs.CONFIG).exists())
    return (_table(["setting", "value"], [[k, json.dumps(v) if isinstance(v, (list, dict)) else v]
                                         for k, v in config.items()])
            + f"<p>Models (each a run folder with its own report): {html.escape(', '.join(models))}</p>")


def _layers(run: Path) -> str:
    """An attach run: each layer's decoder and measures, and what the layers perceive."""
    if not (run / runs.LAYERS_JSON).exists():
        return _missing("layer measures", "perceptreg attach ... --out " + str(run))
    summary = read_layers(run)
    rows = summary["layers"]
    table = _table(["layer", "activation", "decoder parameters", "test MSE/pixel", "P(x_adv) read as adversarial",
                    "P(x_adv) read as true", "detector ROC AUC"],
                   [[r["name"], "x".join(map(str, r["shape"])), f"{r['decoder_parameters']:,}",
                     f"{r['test_recon_mse']:.4f}", f"{r['p_adv_read_as_adversarial']:.1%}",
                     f"{r['p_adv_read_as_true']:.1%}", f"{r['detector_roc_auc']:.3f}"] for r in rows])
    history = runs.read_metrics(run)
    curves = figures.line_plot([r["epoch"] for r in history], {"test reconstruction per layer": {
        name: [r["test_recon_mse"][name] for r in history] for name in history[-1]["test_recon_mse"]}},
        run / runs.TRAINING_CURVES, xlabel="epoch", ylabel="MSE per pixel")
    accuracy = f"Test accuracy of the model {summary['accuracy']:.2%}"
    if summary["mode"] == "joint":
        accuracy += f" after fine-tuning (before: {summary['accuracy_before']:.2%})"
    attack = ", ".join(f"{k} {v}" for k, v in summary["attack"].items())
    images = "".join(_image(run / f, what) for f, what in (
        (runs.LAYERS_PNG, "x, then its perception at each layer, shallow to deep"),
        (runs.LAYERS_ATTACK_PNG, "x, x_adv, then the perception of x_adv at each layer")) if (run / f).exists())
    return (f"<p>{html.escape(accuracy)}. Judge readings are of P_layer(x_adv) for the successful attacks "
            f"({html.escape(attack)}).</p>" + table + images + _image(curves, "reconstruction per layer by epoch"))


SECTIONS = (("Configuration", "config", _config), ("Training", "training", _training),
            ("Perception", "perception", _perception), ("Adversarial perception", "attacks", _attacks),
            ("Latent edits", "edits", _edits), ("Lambda sweep", "sweep", _sweep))
SWEEP_SECTIONS = (("Sweep configuration", "config", _sweep_config), ("Lambda sweep", "sweep", _sweep))
ATTACH_SECTIONS = (("Configuration", "config", _config), ("Layers", "layers", _layers),
                   ("Adversarial perception (deepest layer, or evaluate-attack --layer)", "attacks", _attacks))


def build_report(run_dir: str | Path) -> str:
    """The report of a run folder, or of a sweep folder, as one HTML string."""
    run = Path(run_dir)
    if (run / runs.CONFIG).exists():
        sections = ATTACH_SECTIONS if runs.is_attached(run) else SECTIONS
    elif (run / runs.SWEEP_JSON).exists():
        sections = SWEEP_SECTIONS
    else:
        raise PerceptregError(f"{run}: no config.json; is this a run folder written by `perceptreg train` "
                              f"(or a sweep folder written by `perceptreg sweep`)?")
    body = "".join(_section(title, anchor, make(run)) for title, anchor, make in sections)
    title = f"perceptreg report: {run.resolve().name}"
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default ``RUN/report.html``) atomically; returns its path."""
    out = Path(out) if out else Path(run_dir) / runs.REPORT
    text = build_report(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return out
