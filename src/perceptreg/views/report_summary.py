"""The top of a run's report: what the model is and how well it did in a few lines, with
H and P(x) defined; then its configuration, grouped, showing only what was set or matters."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

from perceptreg import runs
from perceptreg.attaching.attach_run import read_layers
from perceptreg.core.config import AttachConfig, DecoderLoss, TrainConfig
from perceptreg.runs import Run
from perceptreg.sweeps.summary import PROBE_KINDS, read_sweep
from perceptreg.views.report_html import table

H_DEFINITION = ('H(x) = C(F(x)), the classifier\'s prediction. A caption "H: 9 87 %" means H reads the image '
                'as class 9, with softmax confidence 87 %.')
P_DEFINITION = ("P(x) = D(F(x)), the model's perception: the decoder's picture of the latent z = F(x), "
                "what the representation kept of x.")
P_LAYER_DEFINITION = ("P_layer(x), the perception at a layer: a decoder's picture of that layer's activation, "
                      "what the model kept of x up to there. The deepest layer's is shown unless a command "
                      "names another (--layer).")


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def summary(run: Run) -> str:
    """The run in a few lines: model, mode, lambda, test accuracy, reconstruction error, and
    what H and P(x) mean; a collapsed decoder is said first."""
    if run.kind == "attached":
        rows, warning = _attach_rows(run, run.config), ""
    else:
        rows, warning = _train_rows(run, run.config)
    return f'{warning}<dl class="summary" data-testid="summary">{_items(rows)}</dl>'


def _train_rows(run: Run, config: TrainConfig) -> tuple[list[tuple[str, str]], str]:
    meta = run.meta or {}
    what = (f"your PerceptionNet, built by {config.model}" if config.arch == "custom"
            else f"the paper's {config.arch} network (perceptreg.core.models.{config.arch})")
    if meta.get("latent_shape"):
        what += f", latent z of shape {'x'.join(map(str, meta['latent_shape']))}"
    if config.mode == "joint":
        mode = "joint: F, C and D trained together on cross-entropy + lambda x reconstruction error"
    else:
        source = f"taken, frozen, from {config.classifier_from}" if config.classifier_from else "trained on cross-entropy alone"
        mode = f"post-hoc: F and C {source}, then D alone learns to invert the frozen F"
    rows = [("model", what), ("mode", mode), ("lambda", _lambda(config)),
            ("decoder loss", config.decoder_loss.describe()),
            ("data", f"{config.dataset}, {config.train_size or 'all its'} training images")]
    warning = ""
    if run.metrics:
        last = run.metrics[-1]
        rows.append(("test accuracy", f"{percent(last['test_accuracy'])} after epoch {last['epoch']}"))
        if last.get("test_recon_mse") is not None:
            rows.append(("reconstruction error", f"{last['test_recon_mse']:.4f} mean squared error per pixel "
                                                 f"between x and P(x) on the test set"))
        if last.get("decoder_collapsed"):
            warning = ('<p class="warning"><strong>The decoder collapsed</strong>: its reconstructions are nearly '
                       'the same for every image, so the perceptions below show nothing about the inputs. '
                       'Train longer or on more images.</p>')
    return rows + [("H", H_DEFINITION), ("P(x)", P_DEFINITION)], warning


def _attach_rows(run: Run, config: AttachConfig) -> list[tuple[str, str]]:
    weights = f" with the weights {Path(config.weights).name}" if config.weights else ""
    mode = ("post-hoc: the model frozen, bit for bit; the decoders trained on reconstruction alone"
            if config.mode == "post-hoc" else
            "joint: the model fine-tuned with cross-entropy + lambda x the mean of the layers' reconstruction errors")
    rows = [("model", f"your model, built by {config.model}{weights}, with decoders on its layers "
                      f"{', '.join(config.layers)}"), ("mode", mode), ("lambda", _lambda(config)),
            ("decoder loss", config.decoder_loss.describe()), ("data", f"{config.dataset}, {config.train_size or 'all its'} training images")]
    if run.has(runs.LAYERS_JSON):
        layers = read_layers(run)
        accuracy = percent(layers.accuracy)
        if config.mode == "joint":
            accuracy += f" after fine-tuning ({percent(layers.accuracy_before)} before)"
        rows += [("test accuracy", accuracy),
                 ("reconstruction error", "mean squared error per pixel on the test set, by layer: " + ", ".join(
                     f"{r.name} {r.test_recon_mse:.4f}" for r in layers.layers))]
    return rows + [("H", H_DEFINITION), ("P_layer(x)", P_LAYER_DEFINITION)]


COLUMNS = {  # what each column of a sweep's table measures, for the summary at the top
    "test_accuracy": "test accuracy: the fraction of test images H classifies correctly",
    "test_recon_mse": "test recon mse: mean squared error per pixel between x and P(x) on the test set",
    "shape_spread": "shape spread: how much P(x)'s shapes vary across test images against the images' own, "
                    "colour and contrast taken out (low: one ghostly shape in each image's colours, a collapse)",
    "ce_share": "CE share of F's gradient: |grad CE| / (|grad CE| + |grad lambda x recon|) on F's parameters "
                "(near 1: F learns the task; near 0: F is an auto-encoder's encoder)",
    "centre_to_edge": "centre to edge: P(x)'s error in the middle half of the columns over that in the outer "
                      "quarters (well below 1: the perception keeps the centre and loses the edges)",
    "judge_accuracy": "judge right on x: the independent judge's own accuracy on the test images, what its "
                      "readings of P(x) are worth",
    "perception_read_true": "judge reads P(x) as true: how often the judge reads P(x) as x's true class",
    "feature_distance": "feature distance x-P(x): 2 - 2 cos of the judge's penultimate features of x and of P(x) "
                        "(0: alike to the judge)",
    "probe": "probe: NAME: test accuracy of a linear probe reading NAME from the frozen z",
    "mlp probe": "mlp probe: NAME: the same read by a small MLP (64 ReLU units)",
}


def _items(rows: list[tuple[str, str]]) -> str:
    return "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)


def sweep_summary(folder: Path) -> str:
    """A sweep in a few lines: data, lambdas, seeds, epochs, the best and worst test
    accuracy, and what the table's columns mean."""
    sweep = read_sweep(folder)
    config, rows = sweep.config, sweep.rows
    variants = [f"lambda {r.variant}" if r.variant != "post-hoc" else "post-hoc" for r in rows]
    pairs = list(zip(rows, variants))
    best = max(pairs, key=lambda pair: pair[0].test_accuracy.mean)  # a tie: the first in the table
    worst = min(pairs, key=lambda pair: pair[0].test_accuracy.mean)

    seeds = config.seeds

    def accuracy(pair) -> str:
        row, name = pair
        return f"{row.test_accuracy.percent(row.seeds)} ({name})"
    lambdas = ", ".join(f"{lam:g}" for lam in sorted(config.lams)) + (", and post-hoc" if config.post_hoc else "")
    items = [("what", "one model per lambda and seed, trained jointly on cross-entropy + lambda x reconstruction "
                      "error" + ("; post-hoc: F and C trained alone, then D" if config.post_hoc else "")),
             ("data", f"{config.dataset}, {config.train_size or 'all its'} training images"),
             ("lambdas", lambdas),
             ("seeds", f"{', '.join(map(str, seeds))} (mean ± 95 % interval over {len(seeds)} seeds)" if len(seeds) > 1
              else f"{seeds[0]} (one seed: no interval; give --seeds 0,1 for one)"),
             ("epochs", f"{config.epochs} per model"),
             ("decoder loss", config.decoder_loss.describe()),
             ("best test accuracy", accuracy(best)), ("worst test accuracy", accuracy(worst))]
    shown = {*rows[0].measured(), *(prefix.removesuffix(": ") for kind, prefix, *_ in PROBE_KINDS if getattr(rows[0], kind))}
    columns = [text for key, text in COLUMNS.items() if key in shown]
    return (f'<dl class="summary" data-testid="summary">{_items(items)}</dl><p>The table\'s columns:</p><ul>'
            + "".join(f"<li>{html.escape(c)}</li>" for c in columns) + "</ul>")


def _lambda(config: TrainConfig | AttachConfig) -> str:
    if config.mode == "post-hoc":
        return "not used: in post-hoc mode the decoders learn from the reconstruction error alone"
    scale = "per image, squared errors summed" if getattr(config, "reduction", "sum") == "sum" else "per pixel"
    return f"{config.lam:g} (weight of the reconstruction error, {scale})"


# --- configuration ------------------------------------------------------------------------------

GROUPS = (("Model", ("arch", "model", "z_dim", "decoder_width", "layers", "weights", "weights_sha256", "normalize",
                     "source")),
          ("Objective", ("mode", "lam", "reduction", "decoder_loss", "classifier_from")),
          ("Data", ("dataset", "train_size", "eval_size", "data_root")),
          ("Optimization", ("epochs", "decoder_epochs", "batch_size", "decoder_batch_size", "lr", "betas",
                            "lr_drop_epoch", "lr_drop_factor", "steps_per_epoch", "init_output_bias", "compile")),
          ("Reproducibility", ("seed", "device")))
LABELS = {"arch": "architecture", "model": "built by", "weights_sha256": "weights SHA-256", "lam": "lambda",
          "reduction": "reconstruction error", "classifier_from": "F and C from", "train_size": "training images",
          "eval_size": "test images evaluated per epoch",
          "data_root": "data folder", "lr": "learning rate (Adam)", "betas": "Adam betas",
          "init_output_bias": "D's output bias at the mean pixel", "compile": "torch.compile",
          "z_dim": "latent size", "decoder_width": "decoder width (times the paper's)", "source": "source copy"}


def _shown(config, field: dataclasses.Field) -> bool:
    """Whether a setting says something: set, not a switch left at its default, and used."""
    value = getattr(config, field.name)
    return not (value is None or value in ("", [], (), {})  # an empty list of model kwargs says nothing
                or (isinstance(value, bool) and value == field.default)
                or (field.name == "arch" and value == "custom")  # the "built by" row says it
                or (field.name == "lam" and config.mode == "post-hoc")  # only the joint objective weighs it
                or (field.name == "lr_drop_factor" and getattr(config, "lr_drop_epoch", None) is None)
                or (field.name == "decoder_width" and value == 1))  # the paper's D: nothing to say


def _value(value) -> str:
    if isinstance(value, DecoderLoss):
        return value.describe()
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_tables(run: Run) -> str:
    """The settings by group, one small table each; what the model file adds goes with them."""
    config = run.config
    fields = {f.name: f for f in dataclasses.fields(config) if _shown(config, f)}
    grouped = {title: [(LABELS.get(n, n.replace("_", " ")), _value(getattr(config, n))) for n in names if n in fields]
               for title, names in GROUPS}
    grouped["Other"] = [(n.replace("_", " "), _value(getattr(config, n)))
                        for n in fields if not any(n in names for _, names in GROUPS)]
    if run.meta is not None:
        meta = run.meta
        if meta.get("latent_shape"):
            grouped["Model"].append(("latent shape", "x".join(map(str, meta["latent_shape"]))))
        grouped["Model"].append(("input shape", "x".join(map(str, meta["input_shape"]))))
        grouped["Data"].append(("classes", f"{len(meta['classes'])}: {', '.join(meta['classes'])}"))
        if meta.get("versions"):
            grouped["Reproducibility"].append(("versions", ", ".join(f"{k} {v}" for k, v in meta["versions"].items())))
    tables = "".join(f"<div><h3>{html.escape(title)}</h3>{table(['setting', 'value'], [list(r) for r in rows])}</div>"
                     for title, rows in grouped.items() if rows)
    return f'<div class="config">{tables}</div>'
