"""The typed results of an attack (``summary``) as rows of text: the CLI prints them
aligned, the report and Jupyter as HTML tables. Rates are shown with their 95 % Wilson
intervals, AUCs with their DeLong intervals."""

from __future__ import annotations

from pathlib import Path

from perceptreg.adversarial.detection import BASELINES
from perceptreg.adversarial.summary import AdaptiveRow, AttackSummary, PairedComparison, baseline_keys, format_auroc
from perceptreg.display import aligned

RATES_NOTE = ("(rates: 95 % Wilson intervals in brackets; AUCs: 95 % DeLong intervals; "
              "FPR: false-positive rate on held-out clean images)")


def _side_and_rate(sided: str, fpr: float | str) -> str:
    return f"{100 * float(fpr):g} % FPR, {sided}"


def attack_rows(summaries: dict[str, AttackSummary]) -> list[list[str]]:
    """Attack summaries as rows of text, a measure and one value per run."""
    first = next(iter(summaries.values()))
    rows = [("clean accuracy", lambda s: str(s.clean_accuracy)),
            ("robust accuracy", lambda s: str(s.robust_accuracy)),
            ("attack success rate", lambda s: str(s.attack_success_rate))]
    for sided, entries in (first.detector.at_fpr or {}).items():
        for i, entry in enumerate(entries):
            rows.append((f"succeeded and undetected at {_side_and_rate(sided, entry.fpr)}",
                         lambda s, d=sided, i=i: str(s.detector.at_fpr[d][i].succeeded_and_undetected)))
    rows.append(("detector ROC AUC, ||x - P(x)||^2", lambda s: s.detector.text()))
    # measurements written before a baseline existed show "-" in its row
    rows += [(f"  baseline AUC: {BASELINES[key][0]}",
              lambda s, k=key: s.detector.baselines[k].text() if k in (s.detector.baselines or {}) else "-")
             for key in baseline_keys(summaries.values())]
    if "shuffled_perturbation" in baseline_keys(summaries.values()):
        rows.append(("  H right on the shuffled perturbation", lambda s: _shuffled_h_correct(s)))
    for judge in first.judges:
        rows.append((f"{judge}: accuracy on x", lambda s, j=judge: str(s.judges[j].accuracy_on_x)))
        rows.append((f"{judge}: accuracy on P(x)", lambda s, j=judge: str(s.judges[j].accuracy_on_perception)))
        for what, part in (("x_adv", "on_x_adv"), ("P(x_adv)", "on_perception_adv")):
            for label in ("adversarial_label", "true_label"):
                rows.append((f"{judge}: {what} read as {label.split('_')[0]} label",
                             lambda s, j=judge, p=part, l=label: str(getattr(getattr(s.judges[j], p), l))))
    return [[label] + [value(summary) for summary in summaries.values()] for label, value in rows]


def _shuffled_h_correct(summary: AttackSummary) -> str:
    shuffled = (summary.detector.baselines or {}).get("shuffled_perturbation")
    return "-" if shuffled is None or shuffled.h_correct is None else str(shuffled.h_correct)


def attack_table(summaries: dict[str, AttackSummary]) -> str:
    """Attack summaries by run path as a plain-text table, one column per run."""
    header = [""] + [Path(n).name[:24] for n in summaries]
    return aligned([header, *attack_rows(summaries)]) + "\n" + RATES_NOTE


def adaptive_cells(rows: list[AdaptiveRow]) -> tuple[list[str], list[list[str]]]:
    """Adaptive rows as a header and rows of text, one row per beta (the search over betas:
    "search 0,0.1,..."), the succeeded-and-undetected rates where measured."""
    judges = list(rows[0].judges_on_perception_adv) if rows else []
    rates = [(sided, fpr) for sided, by_fpr in (rows[0].undetected if rows else {}).items() for fpr in by_fpr]
    baselines = [key for key in BASELINES if rows and key in rows[0].baselines]
    header = (["beta", "success"] + [f"undetected at {_side_and_rate(*pair)}" for pair in rates]
              + ["detector AUC"] + [BASELINES[key][1] for key in baselines]
              + [h for judge in judges for h in (f"{judge}: P(x_adv) read as adversarial", f"{judge}: P(x_adv) read as true")])
    cells = [[row.name, str(row.attack_success)]
             + [str(row.undetected[sided][fpr]) for sided, fpr in rates]
             + [format_auroc(row.auroc, row.auroc_interval)]
             + [f"{row.baselines[key]:.3f}" for key in baselines]
             + [str(getattr(row.judges_on_perception_adv[judge], label)) for judge in judges
                for label in ("adversarial_label", "true_label")]
             for row in rows]
    return header, cells


def adaptive_table(rows: list[AdaptiveRow]) -> str:
    """Adaptive rows as a plain-text table, one line per beta."""
    header, cells = adaptive_cells(rows)
    return aligned([header, *cells], first_left=False)


def paired_table(comparison: PairedComparison, names: tuple[str, str]) -> str:
    """``evaluation.compare_paired`` as text: per reading, the images where both, only the
    first, only the second, or neither said yes, and McNemar's exact p-value."""
    first, second = (Path(n).name for n in names)
    header = ["", "both", f"{first} only", f"{second} only", "neither", "McNemar p"]
    lines = [[what, str(t.both), str(t.first_only), str(t.second_only), str(t.neither), f"{t.p_value:.3g}"]
             for what, t in comparison.tests.items()]
    return f"paired on the {comparison.paired_images} images both attacks fooled:\n" + aligned([header, *lines])
