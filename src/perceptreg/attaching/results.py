"""What attach measures per layer, as dicts that show themselves: a table in Jupyter
(``_repr_html_``), a short line as text. ``LayerMeasures`` is ``evaluate_layers``' result,
``LayerTable`` an attach run's layers.json; ``layer_cells`` is that table's one layout,
which the CLI prints and the report shows."""

from __future__ import annotations

from perceptreg import display
from perceptreg.adversarial.summary import NO_INTERVAL, format_auroc
from perceptreg.display import aligned
from perceptreg.measures import format_rate


class LayerMeasures(dict):
    """``{"accuracy": float, "recon_mse": {layer: float}}``: the model's accuracy and each
    layer's test reconstruction MSE per pixel (``evaluate_layers``)."""

    def __repr__(self) -> str:
        layers = ", ".join(f"{name} {mse:.4f}" for name, mse in self["recon_mse"].items())
        return f"LayerMeasures(accuracy {self['accuracy']:.1%}; MSE/pixel: {layers or 'no layers'})"

    def _repr_html_(self) -> str:
        return display.html_table(["layer", "test MSE/pixel"],
                                  [[name, f"{mse:.4f}"] for name, mse in self["recon_mse"].items()],
                                  f"test accuracy {self['accuracy']:.1%}")


# The judge's and the detector's columns of a layer, in ``reading_cells``' order
LAYER_HEADINGS = ("judge accuracy on P(x)", "x_adv read as adversarial", "P(x_adv) read as adversarial",
                  "P(x_adv) read as true", "detector AUC")


def reading_cells(row: dict) -> list[str]:
    """A layers.json row's judge readings and detector AUC as text, with their 95 % intervals
    (Wilson; DeLong for the AUC). A file written before the intervals shows its values alone,
    and "-" for the readings it lacks."""
    def shown(reading: dict | None, key: str | None = None, value: float | None = None) -> str:
        if reading:
            return format_rate(reading[key] if key else reading)
        return "-" if value is None else f"{100 * value:.1f} %"
    p_adv = row.get("p_adv_read")
    return [shown(row.get("accuracy_on_p")), shown(row.get("x_adv_read"), "adversarial_label"),
            shown(p_adv, "adversarial_label", row["p_adv_read_as_adversarial"]),
            shown(p_adv, "true_label", row["p_adv_read_as_true"]),
            "-" if row["detector_roc_auc"] is None
            else format_auroc(row["detector_roc_auc"], row.get("detector_roc_auc_interval") or NO_INTERVAL)]


def consistency_cells(row: dict) -> list[str]:
    """A layers.json row's measures beside pixel MSE (``measures.consistency``): how often H
    reads P(x) as it reads x, and the perceptual distance of x and P(x); "-" in older files."""
    measured = row.get("perception")
    if not measured:
        return ["-", "-"]
    distance = measured["perceptual_distance"]
    return [format_rate(measured["h_consistency"]), f"{distance['mean']:.3f} [{distance['low']:.3f}, {distance['high']:.3f}]"]


def layer_cells(summary: dict) -> tuple[list[str], list[list[str]], str]:
    """An attach run's per-layer measures (layers.json) as a header, rows of text, and the
    note that says what the judge's readings are of."""
    header = ["layer", "activation", "decoder params", "test MSE/pixel", "H(P(x)) = H(x)", "perceptual distance",
              *LAYER_HEADINGS]
    rows = [[r["name"], "x".join(map(str, r["shape"])), f"{r['decoder_parameters']:,}", f"{r['test_recon_mse']:.4f}",
             *consistency_cells(r), *reading_cells(r)] for r in summary["layers"]]
    first, attack = summary["layers"][0], summary["attack"]
    ball = f"PGD {attack.get('norm', 'linf')}, eps {attack['eps']:g}; " if "eps" in attack else ""
    note = (f"read by {first['judge']}: P(x) of clean images, and x_adv and P(x_adv) of the "
            f"{first['successful_attacks']} successful attacks of {attack['images']} images "
            f"({ball}95 % Wilson intervals; the AUC's: DeLong)")
    if first["successful_attacks"] == 0:
        note += "; no attack succeeded, so the readings of x_adv and P(x_adv) are undefined (-): attack harder"
    return header, rows, note


def layers_table(summary: dict) -> str:
    """The per-layer measures of an attach run as a plain-text table, its note under it."""
    header, rows, note = layer_cells(summary)
    return aligned([header, *rows]) + "\n" + note


class LayerTable(dict):
    """An attach run's summary as layers.json holds it (``run_attach``): mode, accuracy,
    the attack, and one row per layer, shallow to deep."""

    def __repr__(self) -> str:
        names = ", ".join(row["name"] for row in self["layers"])
        return f"LayerTable({self['mode']}, test accuracy {self['accuracy']:.1%}, layers: {names})"

    def _repr_html_(self) -> str:
        header, rows, note = layer_cells(self)
        return display.html_table(header, rows, f"test accuracy {self['accuracy']:.1%}. {note}")
