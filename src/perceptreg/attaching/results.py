"""What attach measures per layer, as values that show themselves: a table in Jupyter
(``_repr_html_``), a short line as text. ``LayerMeasures`` is ``evaluate_layers``' result,
``LayerTable`` an attach run's layers.json (sealed; its schema); ``layer_cells`` is that
table's one layout, which the CLI prints and the report shows.

    table.accuracy, table.attack.eps, table.layers[0].p_adv_read.adversarial_label.rate
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from perceptreg import display
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.summary import NO_INTERVAL, Agreement, Rate, Record, format_auroc
from perceptreg.display import aligned
from perceptreg.measures.consistency import COLLAPSED, PerceptionMeasures
from perceptreg.storage.schema import Sealed, settings_record


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


# layers.json's attack: PGD's settings as it ran on the layers (eps resolved), on ``images`` test images
LayersAttack = settings_record(
    AttackSettings, ("eps", "steps", "norm", "alpha", "seed", "loss", "restarts", "schedule", "best_iterate"),
    eps=(float, Field(gt=0)), steps=(int, Field(ge=1)), seed=(int, Field(ge=0)), restarts=(int, Field(ge=1)),
    attack=(Literal["PGD"], ...), images=(int, Field(ge=1)))


class LayerRow(Record):
    """One layer of an attach run: its decoder, its test reconstruction error, and the judge's
    readings under attack (``evaluation.evaluate_layers_under_attack``); a reading is None
    where no attack succeeded, the success rate where the model is right on no image."""
    name: str
    shape: list[int]
    decoder_parameters: int = Field(ge=0)
    test_recon_mse: float
    attack_success_rate: float | None = Field(ge=0, le=1)
    successful_attacks: int = Field(ge=0)
    judge: str | None  # None: no judge read (natural images without a CNN judge: attaching.judging)
    accuracy_on_p: Rate | None  # None where no judge read
    accuracy_on_x: Rate | None = None  # the judge's, on the clean images x; None in files written before it
    p_adv_read_as_adversarial: float | None = Field(ge=0, le=1)
    p_adv_read_as_true: float | None = Field(ge=0, le=1)
    detector_roc_auc: float | None
    p_adv_read: Agreement | None
    x_adv_read: Agreement | None
    detector_roc_auc_interval: tuple[float, float] | None
    perception: PerceptionMeasures | None = None  # beside pixel MSE, of the attacked images' P(x); None in older files


# The judge's and the detector's columns of a layer, in ``reading_cells``' order
LAYER_HEADINGS = ("judge accuracy on P(x)", "x_adv read as adversarial", "P(x_adv) read as adversarial",
                  "P(x_adv) read as true", "detector AUC")


def reading_cells(row: LayerRow) -> list[str]:
    """A layer's judge readings and detector AUC as text, with their 95 % intervals (Wilson;
    DeLong for the AUC); "-" where no attack succeeded."""
    def shown(rate: Rate | None) -> str:
        return "-" if rate is None else str(rate)
    p_adv, x_adv = row.p_adv_read, row.x_adv_read
    return [shown(row.accuracy_on_p), shown(x_adv and x_adv.adversarial_label),
            shown(p_adv and p_adv.adversarial_label), shown(p_adv and p_adv.true_label),
            "-" if row.detector_roc_auc is None
            else format_auroc(row.detector_roc_auc, row.detector_roc_auc_interval or NO_INTERVAL)]


class LayerTable(Sealed):
    """layers.json (sealed), what ``run_attach`` returns as ``AttachResult.layers``: the mode,
    the model's test accuracy after the fitting and before it, the attack, and one row per
    layer, shallow to deep."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["post-hoc", "joint"]
    decoder_loss: str = "pixel (the paper's)"  # DecoderLoss.describe(); files written before it had none
    accuracy: float = Field(ge=0, le=1)
    accuracy_before: float = Field(ge=0, le=1)
    attack: LayersAttack
    layers: list[LayerRow] = Field(min_length=1)

    def __repr__(self) -> str:
        names = ", ".join(row.name for row in self.layers)
        return f"LayerTable({self.mode}, test accuracy {self.accuracy:.1%}, layers: {names})"

    def _repr_html_(self) -> str:
        header, rows, note = layer_cells(self)
        return display.html_table(header, rows, f"test accuracy {self.accuracy:.1%}. {note}")


def consistency_cells(row: LayerRow) -> list[str]:
    """A layer's measures beside pixel MSE (``measures.consistency``): how often H reads P(x)
    as it reads x, and the perceptual distance of x and P(x); "-" in older files."""
    measured = row.perception
    if measured is None:
        return ["-", "-"]
    return [str(measured.h_consistency), measured.perceptual_distance.text(3)]


def layer_cells(table: LayerTable) -> tuple[list[str], list[list[str]], str]:
    """An attach run's per-layer measures (layers.json) as a header, rows of text, and the
    note that says what the judge's readings are of, and the judge's accuracy on x beside
    them. A run no judge read (``attaching.judging``) has the detector's column alone."""
    first, attack = table.layers[0], table.attack
    judged = first.judge is not None
    headings = LAYER_HEADINGS if judged else LAYER_HEADINGS[-1:]
    header = ["layer", "activation", "decoder params", "test MSE/pixel", "H(P(x)) = H(x)", "perceptual distance",
              *headings]
    rows = [[r.name, "x".join(map(str, r.shape)), f"{r.decoder_parameters:,}",
             f"{r.test_recon_mse:.4f}" + (" collapsed" if r.perception and r.perception.decoder_collapsed else ""),
             *consistency_cells(r), *reading_cells(r)[-len(headings):]] for r in table.layers]
    on_x = f" (its accuracy on the clean images x: {first.accuracy_on_x})" if first.accuracy_on_x else ""
    what, intervals = ((f"read by {first.judge}{on_x}: P(x) of clean images, and x_adv and P(x_adv)",
                        "95 % Wilson intervals; the AUC's: DeLong") if judged else
                       ("no judge read the perceptions (no CNN judge of the dataset: `perceptreg train-judge`); the "
                        "detector's AUC separates clean images from x_adv", "its 95 % interval: DeLong"))
    note = (f"{what} of the {first.successful_attacks} successful attacks of {attack.images} images "
            f"(PGD {attack.norm}, eps {attack.eps:g}; {intervals})")
    if first.successful_attacks == 0:
        note += "; no attack succeeded, so the readings of x_adv and P(x_adv) are undefined (-): attack harder"
    fallen = [r.name for r in table.layers if r.perception and r.perception.decoder_collapsed]
    if fallen:
        note += f". Collapsed decoder ({', '.join(fallen)}): {COLLAPSED}"
    return header, rows, note + _consistency_note(first)


def _consistency_note(row: LayerRow) -> str:
    """What the two consistency columns count, and of which images: a distance is read
    against the distance of x and another test image (nothing alike)."""
    measured = row.perception
    if measured is None:
        return ""
    return (f". H(P(x)) = H(x): how often the model reads P(x) as it reads x; perceptual distance: of x and P(x) "
            f"in random conv features (of x and another test image: "
            f"{measured.unrelated_perceptual_distance.mean:.3f}); both of the {measured.images} clean test images "
            f"attacked")


def layers_table(table: LayerTable) -> str:
    """The per-layer measures of an attach run as a plain-text table, its note under it."""
    header, rows, note = layer_cells(table)
    return aligned([header, *rows]) + "\n" + note
