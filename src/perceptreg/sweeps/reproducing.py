"""REPRODUCING.md: each claim of the paper, the command that measures it here, our number
with its 95 % interval, and the paper's number where it gives one, read from run folders.

    python -m perceptreg.sweeps.reproducing runs/reproduce --run --out REPRODUCING.md

``--run`` first makes the run folders it reads (``STEPS``, inside the given folder; a step
whose output exists is skipped, so an interrupted run continues; about an hour on 2 CPU
cores), with the very commands the table quotes. Nothing in the page is typed by hand.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from perceptreg import runs
from perceptreg.core import checkpoint
from perceptreg.core.errors import PerceptregError, warnings_as_lines
from perceptreg.measures import format_rate, rate
from perceptreg.sweeps.sweep import format_percent

# Each step: the file it makes under the root, and the command (run inside the root) that makes it.
STEPS = {
    "demo": ("demo/model.json", "perceptreg train --lam 1e-2 --epochs 20 --out demo"),
    "judge": ("judge/model.json", "perceptreg train --lam 1e-2 --epochs 20 --seed 1 --out judge"),
    "post-hoc": ("post-hoc/model.json", "perceptreg train --classifier-from demo --out post-hoc"),
    "attack": ("demo/attack_metrics.json",
               "perceptreg evaluate-attack demo --judge judge --compare post-hoc --adaptive 0,0.1,1,10"),
    "noise": ("demo/noise_metrics.json", "perceptreg attack demo --from-noise --n 100"),
    "interpolate": ("demo/interpolation_metrics.json",
                    "perceptreg interpolate demo --target 8 --images 100 --compare post-hoc"),
    "sweep-4000": ("sweep-4000/sweep.json", "perceptreg sweep --out sweep-4000"),
    "sweep-73257": ("sweep-73257/sweep.json", "perceptreg sweep --dataset mnist-strips:73257 --seeds 0 "
                    "--no-post-hoc --epochs 10 --out sweep-73257"),
}
PAPER_SWEEP = {"0.0001": 88.5, "0.001": 87.9, "0.01": 87.8, "100": 81.3}  # Fig. 3, SVHN test accuracy (%)


@dataclass(frozen=True)
class Claim:
    claim: str  # the paper's words, shortened
    where: str  # its figure or section
    paper: str  # the paper's number, or "-" where it gives none
    step: str  # a key of STEPS
    ours: Callable[[Path], str]  # reads the runs under the root


def _need(path: Path) -> Path:
    """``path`` if it exists; else FileNotFoundError, which the table shows as the command that makes it."""
    if not path.exists():
        raise FileNotFoundError(path)
    return path


def _read(path: Path, pick: Callable[[dict], str]) -> str:
    """``pick`` applied to a results file; a missing file says which command makes it."""
    try:
        return pick(checkpoint.read_json(_need(path)))
    except (KeyError, TypeError, IndexError, ValueError) as err:
        raise PerceptregError(f"{path}: not in the format perceptreg writes ({type(err).__name__}: {err}); "
                              f"make it again with the command in the table") from None


def _first_run(results: dict) -> dict:
    """The results of the command's RUN: the first of "runs" (then those of --compare)."""
    return next(iter(results["runs"].values()))


def _attack(root: Path, pick: Callable[[dict], str]) -> str:
    return _read(root / "demo" / runs.ATTACK_METRICS, lambda d: pick(_first_run(d)))


def _judge(summary: dict) -> dict:
    return summary["judges"][next(j for j in summary["judges"] if "-NN" in j)]


def _final(root: Path, run: str) -> str:
    _need(root / run / runs.MODEL_META)
    opened = runs.open_run(root / run)
    if not opened.metrics:  # a model without its curves: the file was lost or cut short
        raise PerceptregError(f"{root / run / runs.METRICS}: holds no epoch; train the run again (`--run` after "
                              f"removing {root / run})")
    last, n = opened.metrics[-1], len(opened.data()[1])
    accuracy = rate(round(last["test_accuracy"] * n), n)
    return f"test accuracy {format_rate(accuracy)} on {n} test images, MSE/pixel {last['test_recon_mse']:.4f}"


def _sweep(root: Path, name: str) -> str:
    def pick(summary: dict) -> str:
        cells = []
        for row in summary["rows"]:
            cells.append(f"{row['variant']}: {format_percent(row)} (MSE {row['test_recon_mse']:.4f}, "
                         f"CE share {row['ce_share']:.2f})")
        return "; ".join(cells)
    return _read(root / name / runs.SWEEP_JSON, pick)


def _adaptive(summary: dict) -> str:
    return "; ".join(f"beta {row['beta']:g}: success {format_rate(row['attack_success'])}, AUC {row['auroc']:.3f}"
                     for row in summary["adaptive"])


def _interpolation(root: Path) -> str:
    def pick(data: dict) -> str:
        mean = _first_run(data)["directions"]["mean"]
        judge = next(k for k in mean["flip_curve"] if k not in ("H(image)", "C(latent)"))
        low, high = mean["flip_interval"][judge][-1]
        return (f"{judge} reads the edit at a = 2 as an 8: "
                + format_rate({"rate": mean["flip_curve"][judge][-1], "low": low, "high": high})
                + f" (H: {100 * mean['flip_curve']['H(image)'][-1]:.0f} %)")
    return _read(root / "demo" / runs.INTERPOLATION_METRICS, pick)


CLAIMS = [
    Claim("P(x) = D(F(x)) shows what the classifier's representation kept", "Fig. 2", "-", "demo",
          lambda root: _final(root, "demo")),
    Claim("test accuracy stays almost flat from lambda 1e-4 to 1e-2 and drops at 1e2 (SVHN)", "Fig. 3",
          ", ".join(f"{k}: {v} %" for k, v in PAPER_SWEEP.items()), "sweep-4000",
          lambda root: _sweep(root, "sweep-4000")),
    Claim("the same sweep at SVHN's training size (MNIST-strips, 73,257 images)", "Fig. 3",
          ", ".join(f"{k}: {v} %" for k, v in PAPER_SWEEP.items()), "sweep-73257",
          lambda root: _sweep(root, "sweep-73257")),
    Claim("PGD (L-inf, eps 0.2, 100 steps) fools H", "Sec. 4.2", "-", "attack",
          lambda root: _attack(root, lambda s: "success " + format_rate(s["attack_success_rate"]))),
    Claim("P(x_adv) looks like the adversarial class (read by a 3-NN pixel judge)", "Fig. 4, 5", "-", "attack",
          lambda root: _attack(root, lambda s: "adversarial " + format_rate(_judge(s)["on_P(x_adv)"]["adversarial_label"])
                               + ", true " + format_rate(_judge(s)["on_P(x_adv)"]["true_label"]))),
    Claim("||x - P(x)||^2 detects adversarial inputs (ROC AUC; the paper cites Qin et al.)", "Sec. 5", "-", "attack",
          lambda root: _attack(root, lambda s: f"AUC {s['detector']['auroc']:.3f}; model-free pixel statistic "
                               f"{s['detector']['baselines']['pixel_statistic']['auroc']:.3f}; shuffled perturbation "
                               f"{s['detector']['baselines']['shuffled_perturbation']['auroc']:.3f}")),
    Claim("... against an attacker who also keeps ||x_adv - P(x_adv)||^2 low (adaptive PGD)", "not in the paper",
          "-", "attack", lambda root: _attack(root, _adaptive)),
    Claim("a latent direction from a targeted attack edits images toward the class", "Fig. 6", "-", "interpolate",
          _interpolation),
    Claim("noise attacked toward a class is perceived as that class", "Fig. 7", "-", "noise",
          lambda root: _read(root / "demo" / runs.NOISE_METRICS, lambda d: f"judge reads P(x_adv) as the target "
                             f"{format_rate(d['reached'][d['judge']])} of {d['noise_images']} noise images")),
]


def reproducing_page(root: str | Path) -> str:
    """The Markdown page for the run folders under ``root``."""
    root = Path(root)
    lines = ["# Reproducing the paper's claims", "",
             f"Generated by `python -m perceptreg.sweeps.reproducing {root} --run` from the run folders "
             "that the commands below make inside that folder; do not edit by hand. "
             "Rates carry their 95 % Wilson interval, sweep accuracies the 95 % Student-t interval over seeds.", "",
             "| claim | paper | paper's number | command | ours |", "| --- | --- | --- | --- | --- |"]
    for claim in CLAIMS:
        try:
            ours = claim.ours(root)
        except FileNotFoundError as missing:
            ours = f"not measured: {Path(str(missing)).name} is missing (`--run` makes it)"
        cells = (claim.claim, claim.where, claim.paper, f"`{STEPS[claim.step][1]}`", ours)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def make_runs(root: Path) -> None:
    """Run every step whose output is missing, in order, in this Python environment."""
    root.mkdir(parents=True, exist_ok=True)
    for output, command in STEPS.values():
        if (root / output).exists():
            continue
        print(f"+ {command}", flush=True)
        argv = [sys.executable, "-m", "perceptreg", *shlex.split(command)[1:]]
        if subprocess.run(argv, cwd=root).returncode != 0:
            raise PerceptregError(f"`{command}` failed in {root} (its error is above); fix it and rerun with --run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perceptreg.sweeps.reproducing", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder of the runs (made there with --run)")
    parser.add_argument("--run", action="store_true", help="first make the runs that are missing (about 1 h)")
    parser.add_argument("--out", default="REPRODUCING.md")  # a str: Path("") would be ".", not empty
    args = parser.parse_args(argv)
    try:
        with warnings_as_lines(lambda line: print(line, file=sys.stderr)):  # before the Error line
            args.out = checkpoint.check_output_path(args.out)  # before an hour of runs
            if args.run:
                runs.claim(args.root, "reproducing")
                make_runs(args.root)
            elif not args.root.is_dir():
                raise PerceptregError(f"{args.root}: no such folder; make the runs with --run")
            page = reproducing_page(args.root)
            checkpoint.atomic_write(args.out, lambda tmp: tmp.write_text(page))
    except PerceptregError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
