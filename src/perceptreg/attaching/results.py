"""What attach measures per layer, as dicts that show themselves: a table in Jupyter
(``_repr_html_``), a short line as text. ``LayerMeasures`` is ``evaluate_layers``' result,
``LayerTable`` an attach run's layers.json; ``layer_cells`` is that table's one layout,
which the CLI prints and the report shows."""

from __future__ import annotations

from perceptreg.core import display


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


def layer_cells(summary: dict) -> tuple[list[str], list[list[str]], str]:
    """An attach run's per-layer measures (layers.json) as a header, rows of text, and the
    note that says what the judge's readings are of."""
    header = ["layer", "activation", "decoder params", "test MSE/pixel", "P(x_adv) adv", "P(x_adv) true",
              "detector AUC"]
    rows = [[r["name"], "x".join(map(str, r["shape"])), f"{r['decoder_parameters']:,}", f"{r['test_recon_mse']:.4f}",
             f"{r['p_adv_read_as_adversarial']:.1%}", f"{r['p_adv_read_as_true']:.1%}", f"{r['detector_roc_auc']:.3f}"]
            for r in summary["layers"]]
    first = summary["layers"][0]
    note = (f"P(x_adv) read by {first['judge']} as the adversarial / the true class, over the "
            f"{first['successful_attacks']} successful attacks of {summary['attack']['images']} images")
    return header, rows, note


class LayerTable(dict):
    """An attach run's summary as layers.json holds it (``run_attach``): mode, accuracy,
    the attack, and one row per layer, shallow to deep."""

    def __repr__(self) -> str:
        names = ", ".join(row["name"] for row in self["layers"])
        return f"LayerTable({self['mode']}, test accuracy {self['accuracy']:.1%}, layers: {names})"

    def _repr_html_(self) -> str:
        header, rows, note = layer_cells(self)
        return display.html_table(header, rows, f"test accuracy {self['accuracy']:.1%}. {note}")
