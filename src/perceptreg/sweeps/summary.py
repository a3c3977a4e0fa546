"""What a sweep measured, as types: ``SweepSummary`` is what ``run_sweep`` returns and what
sweep.json holds (sealed), a ``SweepRow`` per lambda (each measure's mean over seeds with
its 95 % interval) and each seed's ``MemberMeasures``; and the sweep's table, from them.

    summary = read_sweep("runs/sweep")
    summary.rows[0].test_accuracy.mean, summary.rows[0].probes["left_digit"].ci95
    summary.per_seed["0.01"][0].reading.perception_read_true.rate, summary.config.seeds

Files written before the rows were typed (main f9ee0de) keep each mean in a column of its
own beside its "_ci95", the probes' as "probe: NAME": they are read as the same rows.
A file with a key missing or misspelt is refused naming the file and the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pydantic import ConfigDict, Field, model_validator

from perceptreg import display, measures, runs
from perceptreg.adversarial.judges import PerceptionReading
from perceptreg.core.errors import PerceptregError
from perceptreg.measures.records import Record
from perceptreg.storage import schema
from perceptreg.sweeps.config import SweepConfig

# Per-model numbers that get a column (mean and interval over seeds), in the table's order.
MEASURES = ("test_accuracy", "test_recon_mse", "shape_spread", "ce_share", "centre_to_edge")
# An independent judge's reading of each member's P(x) (judges.read_perception), when the
# sweep has a judge: its accuracy on x, its reading of P(x) as the true class, the distance
# of x and P(x) in its penultimate features.
JUDGE_MEASURES = ("judge_accuracy", "perception_read_true", "feature_distance")
# A sweep with adversarial training: each member's last epoch's robust accuracy (PGD-10 at the
# training eps on 500 test images, adversarial_training.Adversary.measure).
ROBUST_MEASURES = ("test_robust_accuracy",)
OPTIONAL_MEASURES = (*ROBUST_MEASURES, *JUDGE_MEASURES)
COLUMN_NAMES = {"shape_spread": "shape spread", "ce_share": "CE share of F's gradient",
                "test_robust_accuracy": "robust accuracy (PGD-10, training eps)",
                "judge_accuracy": "judge right on x", "perception_read_true": "judge reads P(x) as true",
                "feature_distance": "feature distance x-P(x)"}
# The probes on frozen z: (their field in a row and a member, the prefix of their columns in
# the table, the field of the same probes on raw pixels in the summary, their name)
PROBE_KINDS = (("probes", "probe: ", "pixel_probes", "Linear probes"),
               ("mlp_probes", "mlp probe: ", "pixel_mlp_probes", "MLP probes"))

# sweep.json's record of the sweep's settings: SweepConfig's fields, read without its checks
# of this machine (a sweep of 16 workers opens on 2 cores)
SweepRecord = schema.settings_record(SweepConfig, (
    "dataset", "lams", "seeds", "post_hoc", "epochs", "batch_size", "train_size", "device", "data_root",
    "max_probe_attributes", "max_probe_images", "workers", "ensemble", "engine", "address", "judge"))


# what a rerun may not change without `extend`: the members and how far they are trained
GRID = ("lams", "seeds", "post_hoc", "epochs")


def check_rerun(folder: Path, config: SweepConfig, extend: bool) -> None:
    """Refuse to rerun the sweep in ``folder`` with other lambdas, seeds or epochs than it was
    made with (its sweep_config.json), unless ``extend``: then finished members are trained
    on to the new epochs, new members are added, and sweep.json is written for the grid given."""
    if extend or not (folder / runs.SWEEP_CONFIG).is_file():
        return
    saved = schema.load_model_file(folder / runs.SWEEP_CONFIG, SweepRecord,
                                   "the sweep's settings are damaged; choose another output folder")
    as_json = lambda value: list(value) if isinstance(value, tuple) else value  # noqa: E731
    asked = dataclasses.asdict(config)
    changed = [f"{key} {as_json(saved[key])} (asked {as_json(asked[key])})" for key in GRID
               if as_json(saved[key]) != as_json(asked[key])]
    if changed:
        raise PerceptregError(f"{folder} is a sweep of {', '.join(changed)}; rerun it with its own settings, give "
                              f"`extend` to train its members on and add new ones (sweep.json then sums up the "
                              f"grid given), or choose another output folder (nothing was changed)")


class Spread(Record):
    """A mean over seeds and the half-width of its 95 % Student-t interval (0 for one seed)."""
    mean: float
    ci95: float

    @classmethod
    def of(cls, values: list[float]) -> "Spread":
        mean, half = measures.mean_and_interval(values)
        return cls(mean=mean, ci95=half)

    def text(self, seeds: int, digits: int = 3) -> str:
        """"0.900 ± 0.020"; one seed has no interval: no "± 0.000" that reads as a measured one."""
        return f"{self.mean:.{digits}f}" + (f" ± {self.ci95:.{digits}f}" if seeds > 1 else "")

    def percent(self, seeds: int) -> str:
        """"90.0 % ± 2.0": a rate as a percentage, its interval in points (none for one seed)."""
        return f"{100 * self.mean:.1f} %" + (f" ± {100 * self.ci95:.1f}" if seeds > 1 else "")


class MemberMeasures(Record):
    """One model of the sweep, measured (``sweep._measure``): the ``MEASURES``, the probes on
    its frozen z by attribute, and with a judge, the ``JUDGE_MEASURES`` and its whole reading."""
    test_accuracy: float
    test_recon_mse: float
    shape_spread: float
    ce_share: float
    centre_to_edge: float
    decoder_collapsed: bool
    probes: dict[str, float]
    mlp_probes: dict[str, float]
    test_robust_accuracy: float | None = None
    judge_accuracy: float | None = None
    perception_read_true: float | None = None
    feature_distance: float | None = None
    reading: PerceptionReading | None = None


class SweepRow(Record):
    """One lambda (or post-hoc) of the sweep: each measure's ``Spread`` over its ``seeds``,
    how many of them collapsed, the probes on frozen z by attribute."""
    variant: str
    seeds: int = Field(ge=1)
    collapsed: int = Field(ge=0)
    test_accuracy: Spread
    test_recon_mse: Spread
    shape_spread: Spread
    ce_share: Spread
    centre_to_edge: Spread
    test_robust_accuracy: Spread | None = None
    judge_accuracy: Spread | None = None
    perception_read_true: Spread | None = None
    feature_distance: Spread | None = None
    probes: dict[str, Spread]
    mlp_probes: dict[str, Spread]

    @classmethod
    def over_seeds(cls, variant: str, members: list[MemberMeasures]) -> "SweepRow":
        """The row of ``variant``'s members (one per seed, measured alike)."""
        first = members[0]
        names = [name for name in (*MEASURES, *OPTIONAL_MEASURES) if getattr(first, name) is not None]
        return cls(variant=variant, seeds=len(members), collapsed=sum(m.decoder_collapsed for m in members),
                   **{name: Spread.of([getattr(m, name) for m in members]) for name in names},
                   **{kind: {probe: Spread.of([getattr(m, kind)[probe] for m in members]) for probe in getattr(first, kind)}
                      for kind, *_ in PROBE_KINDS})

    def measured(self) -> dict[str, Spread]:
        """The measures that are not probes, by attribute, in the table's order."""
        return {name: getattr(self, name) for name in (*MEASURES, *OPTIONAL_MEASURES) if getattr(self, name) is not None}

    @model_validator(mode="before")
    @classmethod
    def _from_columns(cls, values):
        """A row of a file of before (main f9ee0de): each mean in a column beside its "_ci95",
        the probes' named "probe: NAME" and "mlp probe: NAME"."""
        if not isinstance(values, dict) or "probes" in values:
            return values
        means = [key for key in values if f"{key}_ci95" in values]
        row = {k: v for k, v in values.items() if k not in means and k.removesuffix("_ci95") not in means}
        row.update({kind: {} for kind, *_ in PROBE_KINDS})
        for key in means:
            spread = {"mean": values[key], "ci95": values[f"{key}_ci95"]}
            for kind, prefix, *_ in PROBE_KINDS:
                if key.startswith(prefix):
                    row[kind][key.removeprefix(prefix)] = spread
                    break
            else:
                row[key] = spread
        return row


class SweepSummary(schema.Sealed):
    """sweep.json (sealed), what ``run_sweep`` returns: the sweep's settings, a row per
    lambda (post-hoc last), each seed's measures by lambda, the probes on raw pixels (the
    reference the probes on z are read against) and the judge; a table in Jupyter."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    config: SweepRecord
    rows: list[SweepRow] = Field(min_length=1)
    per_seed: dict[str, list[MemberMeasures]]
    pixel_probes: dict[str, float]
    pixel_mlp_probes: dict[str, float]
    judge: str | None

    def __repr__(self) -> str:
        variants = ", ".join(row.variant for row in self.rows)
        return f"SweepSummary({len(self.rows)} rows: {variants}; {len(self.config.seeds)} seeds)"

    def _repr_html_(self) -> str:
        header, cells, notes = sweep_cells(self)
        return display.html_table(header, cells, " ".join(notes))


def read_sweep(folder: str | Path) -> SweepSummary:
    """The sweep.json of ``folder``, validated and checked against its seal."""
    return SweepSummary.model_validate(schema.load_sealed_file(
        Path(folder) / runs.SWEEP_JSON, SweepSummary, "make it again with `perceptreg sweep`"))


def column_name(key: str) -> str:
    return COLUMN_NAMES.get(key, key.replace("_", " "))


def digits(column: str) -> int:
    """Decimals of a column's numbers: 4 for an MSE per pixel, else 3."""
    return 4 if "mse" in column else 3


def collapse_note(rows: list[SweepRow]) -> str | None:
    """Which models' decoders collapsed, in words (None when none did)."""
    collapsed = [f"{row.variant} ({row.collapsed} of {row.seeds} seeds)" for row in rows if row.collapsed]
    if not collapsed:
        return None
    return ("Decoder collapsed (reconstructions nearly one image, or one shape in each image's colours: shape "
            f"spread below {measures.SHAPE_COLLAPSE_RATIO}): " + ", ".join(collapsed))


def sweep_cells(summary: SweepSummary) -> tuple[list[str], list[list[str]], list[str]]:
    """The sweep's rows as a header and rows of text, each value as mean ± 95 % interval over
    seeds, and the notes under them (collapsed decoders, the raw-pixel probes)."""
    first = summary.rows[0]
    header = ["lambda", "seeds", *map(column_name, first.measured())]
    header += [prefix + name for kind, prefix, *_ in PROBE_KINDS for name in getattr(first, kind)]
    cells = [[row.variant, str(row.seeds), *(value.text(row.seeds, digits(name)) for name, value in row.measured().items()),
              *(value.text(row.seeds) for kind, *_ in PROBE_KINDS for value in getattr(row, kind).values())]
             for row in summary.rows]
    notes = [collapse_note(summary.rows)] if collapse_note(summary.rows) else []
    if summary.judge:
        notes.append(f"Judge: {summary.judge}, an independent classifier trained on real images only; "
                     "'judge right on x' is its own accuracy on the test images, beside its reading of P(x); "
                     "feature distance: 2 - 2 cos of its penultimate features of x and P(x) (0: alike to it)")
    notes += [f"{name} on the raw pixels (reference): " + ", ".join(f"{attribute} {value:.3f}" for attribute, value in
                                                                    getattr(summary, pixels).items())
              for _, _, pixels, name in PROBE_KINDS if getattr(summary, pixels)]
    return header, cells, notes


def sweep_table(summary: SweepSummary) -> str:
    """The sweep's rows as a Markdown table (``sweep_cells``), its notes underneath."""
    header, cells, notes = sweep_cells(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    for note in notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"
