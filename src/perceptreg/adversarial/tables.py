"""The summaries of ``evaluate_attack`` and ``evaluate_run`` as rows of text: the CLI prints
them aligned, the report as HTML tables. Rates are shown with their 95 % Wilson intervals,
AUCs with their DeLong intervals."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import ConfigDict, Field

from perceptreg.adversarial.detection import BASELINES
from perceptreg.display import aligned
from perceptreg.measures import format_rate
from perceptreg.storage.schema import Sealed

RATES_NOTE = ("(rates: 95 % Wilson intervals in brackets; AUCs: 95 % DeLong intervals; "
              "FPR: false-positive rate on held-out clean images)")

NO_INTERVAL = (math.nan, math.nan)  # files written before AUCs had intervals


class AttackMetricsFile(Sealed):
    """attack_metrics.json (`perceptreg evaluate-attack`, sealed): its settings, each run's
    summary by the run's path, and the paired comparison with --compare."""
    model_config = ConfigDict(extra="allow")
    settings: dict
    runs: dict[str, dict] = Field(min_length=1)


class NoiseMetricsFile(Sealed):
    """noise_metrics.json (`perceptreg attack --from-noise`, sealed): its settings, how many
    noise images, the judge's name and each reader's rate of reaching the target."""
    model_config = ConfigDict(extra="allow")
    settings: dict
    noise_images: int = Field(ge=1)
    judge: str
    reached: dict[str, dict] = Field(min_length=1)


def format_auroc(value: float, interval) -> str:
    """"0.986 [0.975, 0.994]"; without an interval (fewer than two of a kind), the value alone."""
    low, high = interval
    if math.isnan(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _side_and_rate(sided: str, fpr: float | str) -> str:
    return f"{100 * float(fpr):g} % FPR, {sided}"


def key_in(summary: dict, baseline: str) -> bool:
    return baseline in summary["detector"]["baselines"]


def attack_rows(summaries: dict[str, dict]) -> list[list[str]]:
    """The summaries of evaluate_attack as rows of text, a measure and one value per run."""
    names = list(summaries)
    first = summaries[names[0]]
    auroc = lambda part: lambda s: format_auroc(part(s)["auroc"], part(s).get("auroc_interval", NO_INTERVAL))  # noqa: E731
    shuffled = lambda s: s["detector"]["baselines"]["shuffled_perturbation"]  # noqa: E731
    rows = [("clean accuracy", lambda s: format_rate(s["clean_accuracy"])),
            ("robust accuracy", lambda s: format_rate(s["robust_accuracy"])),
            ("attack success rate", lambda s: format_rate(s["attack_success_rate"]))]
    for sided, entries in first["detector"].get("at_fpr", {}).items():
        for i, entry in enumerate(entries):
            rows.append((f"succeeded and undetected at {_side_and_rate(sided, entry['fpr'])}",
                         lambda s, d=sided, i=i: format_rate(s["detector"]["at_fpr"][d][i]["succeeded_and_undetected"])))
    rows.append(("detector ROC AUC, ||x - P(x)||^2", auroc(lambda s: s["detector"])))
    # measurements written before a baseline existed show "-" in its row
    rows += [(f"  baseline AUC: {label}", lambda s, k=key: auroc(lambda s: s["detector"]["baselines"][k])(s)
              if key_in(s, k) else "-") for key, (label, _, _) in BASELINES.items()
             if any(key_in(summaries[n], key) for n in names)]
    rows.append(("  H right on the shuffled perturbation", lambda s: format_rate(shuffled(s)["H_correct"])))
    for judge in first["judges"]:
        for what, key in (("x", "accuracy_on_x"), ("P(x)", "accuracy_on_P(x)")):
            rows.append((f"{judge}: accuracy on {what}", lambda s, j=judge, k=key: format_rate(s["judges"][j][k])))
        for what in ("x_adv", "P(x_adv)"):
            for label in ("adversarial_label", "true_label"):
                rows.append((f"{judge}: {what} read as {label.split('_')[0]} label",
                             lambda s, j=judge, w=what, l=label: format_rate(s["judges"][j][f"on_{w}"][l])))
    return [[label] + [value(summaries[n]) for n in names] for label, value in rows]


def attack_table(summaries: dict[str, dict]) -> str:
    """The summaries of evaluate_attack as a plain-text table, one column per run."""
    header = [""] + [Path(n).name[:24] for n in summaries]
    return aligned([header, *attack_rows(summaries)]) + "\n" + RATES_NOTE


def adaptive_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The rows of ``adaptive_row`` as a header and rows of text, one row per beta (the search
    over betas: "search 0,0.1,..."), the succeeded-and-undetected rates where measured."""
    judges = list(rows[0]["judges_on_P(x_adv)"]) if rows else []
    rates = [(sided, fpr) for sided, by_fpr in (rows[0].get("undetected", {}) if rows else {}).items() for fpr in by_fpr]
    baselines = [key for key in BASELINES if rows and key in rows[0]["baselines"]]
    header = (["beta", "success"] + [f"undetected at {_side_and_rate(*pair)}" for pair in rates]
              + ["detector AUC"] + [BASELINES[key][1] for key in baselines]
              + [h for judge in judges for h in (f"{judge}: P(x_adv) read as adversarial", f"{judge}: P(x_adv) read as true")])
    cells = []
    for row in rows:
        name = f"{row['beta']:g}" if row["beta"] is not None else "search " + ",".join(f"{b:g}" for b in row["betas"])
        cells.append([name, format_rate(row["attack_success"])]
                     + [format_rate(row["undetected"][sided][fpr]) for sided, fpr in rates]
                     + [format_auroc(row["auroc"], row.get("auroc_interval", NO_INTERVAL))]
                     + [f"{row['baselines'][key]:.3f}" for key in baselines]
                     + [format_rate(row["judges_on_P(x_adv)"][judge][label]) for judge in judges
                        for label in ("adversarial_label", "true_label")])
    return header, cells


def adaptive_table(rows: list[dict]) -> str:
    """The rows of ``adaptive_row`` as a plain-text table, one line per beta."""
    header, cells = adaptive_cells(rows)
    return aligned([header, *cells], first_left=False)


def paired_table(comparison: dict, names: tuple[str, str]) -> str:
    """``evaluation.compare_paired`` as text: per reading, the images where both, only the
    first, only the second, or neither said yes, and McNemar's exact p-value."""
    first, second = (Path(n).name for n in names)
    header = ["", "both", f"{first} only", f"{second} only", "neither", "McNemar p"]
    lines = [[what, str(t["both"]), str(t["first_only"]), str(t["second_only"]), str(t["neither"]), f"{t['p_value']:.3g}"]
             for what, t in comparison["tests"].items()]
    return (f"paired on the {comparison['paired_images']} images both attacks fooled:\n"
            + aligned([header, *lines]))
