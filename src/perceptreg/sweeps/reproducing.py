"""REPRODUCING.md: each claim, whose it is (the paper's, with its section and figure, or
ours), the command that measures it here, our number with its 95 % interval, and a verdict
computed from that number and its interval (``verdicts``), read from run folders; then the
provenance: the commit of this code and the SHA-256 of every run file the page read.

    python -m perceptreg.sweeps.reproducing runs/reproduce --run --out REPRODUCING.md

``--run`` first makes the run folders it reads (``STEPS``, inside the given folder; a step
whose output exists is skipped, so an interrupted run continues; a few hours on 2 CPU
cores, most of it the two 11,000-step sweeps), with the very commands the table quotes.
With ``--natural`` it also makes those of the natural-image table (``NATURAL_STEPS``: the
CIFAR-10 download and many CPU hours), whose commands read CIFAR-10 as ``--cifar10 SPEC``
gives it (default ``cifar10``; e.g. ``memmap:PATH``). Nothing in the page is typed by hand.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from perceptreg import runs
from perceptreg.core.errors import PerceptregError, warnings_as_lines
from perceptreg.storage import fileio
from perceptreg.sweeps.claims import (
    CLAIMS,
    LARGE_EPOCHS,
    MATCHED_EPOCHS,
    MOST,
    SEEDS,
    SVHN_IMAGES,
    Claim,
    RunFiles,
    read_results,
)
from perceptreg.sweeps.claims_natural import NATURAL_CLAIMS, RUN, SWEEP
from perceptreg.sweeps.verdicts import MIN_SEEDS, NOT_MEASURED, Verdict

ATTACK = "perceptreg evaluate-attack demo --judge judge --compare post-hoc --adaptive-search 0,0.01,0.1,1,10"

# Each step: the file it makes under the root, and the command (run inside the root) that makes it.
STEPS = {
    "demo": ("demo/model.json", "perceptreg train --lam 1e-2 --epochs 20 --out demo"),
    "judge": ("judge/model.json", "perceptreg train --lam 1e-2 --epochs 20 --seed 1 --out judge"),
    "post-hoc": ("post-hoc/model.json", "perceptreg train --classifier-from demo --out post-hoc"),
    "attack": ("demo/attack_metrics.json", ATTACK),
    "noise": ("demo/noise_metrics.json", "perceptreg attack demo --from-noise --n 100"),
    "interpolate": ("demo/interpolation_metrics.json",
                    "perceptreg interpolate demo --target 8 --images 100 --compare post-hoc"),
    "sweep-4000": ("sweep-4000/sweep.json", f"perceptreg sweep --seeds {SEEDS} --out sweep-4000"),
    "sweep-73257": ("sweep-73257/sweep.json", f"perceptreg sweep --dataset mnist-strips:{SVHN_IMAGES} --seeds 0 "
                    f"--no-post-hoc --epochs {LARGE_EPOCHS} --out sweep-73257"),
    "sweep-4000-steps": ("sweep-4000-steps/sweep.json", f"perceptreg sweep --seeds 0 --no-post-hoc "
                         f"--epochs {MATCHED_EPOCHS} --out sweep-4000-steps"),
}
# The natural-image table's steps, as STEPS; {C} is the CIFAR-10 dataset spec (``natural_steps``).
JUDGE = "cifar10-judge"
POST_HOC = f"{SWEEP}/post-hoc-seed0"
NATURAL_STEPS = {
    "cifar10-judge": (f"{JUDGE}/{runs.MODEL_META}",
                      f"perceptreg train-judge --dataset {{C}} --train-size 20000 --out {JUDGE}"),
    "cifar10-sweep": (f"{SWEEP}/{runs.SWEEP_JSON}", f"perceptreg sweep --dataset {{C}} --lams 1e-4,1e-3,1e-2,1e2 "
                      f"--seeds 0,1 --epochs 20 --train-size 20000 --judge {JUDGE} --out {SWEEP}"),
    "cifar10-attack": (f"{RUN}/{runs.ATTACK_METRICS}", f"perceptreg evaluate-attack {RUN} --judge {JUDGE} --eps 0.03 "
                       f"--steps 100 --loss margin --images 500 --held-out 1000 --adaptive-search 0,0.01,0.1,1,10 "
                       f"--compare {POST_HOC}"),
    "cifar10-noise": (f"{RUN}/{runs.NOISE_METRICS}", f"perceptreg attack {RUN} --judge {JUDGE} --from-noise --n 100 "
                      "--eps 0.03 --steps 100 --loss margin"),
    "cifar10-interpolate": (f"{RUN}/{runs.INTERPOLATION_METRICS}", f"perceptreg interpolate {RUN} --judge {JUDGE} "
                            f"--target 1 --images 100 --eps 0.03 --steps 50 --compare {POST_HOC}"),
}
CIFAR10 = "cifar10"  # the dataset spec the natural steps read by default: the canonical download


def natural_steps(cifar10: str = CIFAR10) -> dict[str, tuple[str, str]]:
    """NATURAL_STEPS with the dataset spec ``cifar10`` in their commands."""
    return {name: (output, command.format(C=shlex.quote(cifar10))) for name, (output, command) in NATURAL_STEPS.items()}


def commit() -> str:
    """The git commit of this code ("+ uncommitted changes" where the tree differs), or "unknown"."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(here), "diff", "--quiet", "HEAD"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes" if dirty.returncode == 1 else "")


def _table(claims: list[Claim], steps: dict[str, tuple[str, str]], files: RunFiles, made_by: str) -> list[str]:
    """The Markdown table of ``claims``, each row quoting the command of its step in ``steps``."""
    lines = ["| claim | whose | paper's number | command | ours | verdict |", "| --- | --- | --- | --- | --- | --- |"]
    for claim in claims:
        try:
            ours, verdict = claim.measure(files)
        except FileNotFoundError as missing:
            ours, verdict = "-", Verdict(NOT_MEASURED, f"{Path(str(missing)).name} is missing (`{made_by}` makes it)")
        cells = (claim.claim, claim.where, claim.paper, f"`{steps[claim.step][1]}`", ours, verdict.text())
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def _check_spec(files: RunFiles, cifar10: str) -> None:
    """The natural commands quote ``cifar10``: the dataset the natural sweep the page read was made with."""
    if f"{SWEEP}/{runs.SWEEP_JSON}" not in files.hashes:  # not made yet: nothing quoted was run
        return
    ran = read_results(files, f"{SWEEP}/{runs.SWEEP_JSON}", lambda summary: summary["config"]["dataset"])
    if ran != cifar10:
        raise PerceptregError(f"{files.root / SWEEP / runs.SWEEP_JSON} was made with --dataset {ran}, not {cifar10}: "
                              f"give --cifar10 {shlex.quote(ran)}, so that the page quotes the commands that were run")


def reproducing_page(root: str | Path, cifar10: str = CIFAR10) -> str:
    """The Markdown page for the run folders under ``root``; the natural-image commands quoted
    with the CIFAR-10 dataset spec ``cifar10`` (what ``--run --natural`` ran them with)."""
    files = RunFiles(Path(root))
    lines = ["# Reproducing the paper's claims", "",
             f"Generated by `python -m perceptreg.sweeps.reproducing {root} --run` from the run folders "
             "that the commands below make inside that folder; do not edit by hand. "
             "Rates carry their 95 % Wilson interval, AUCs their DeLong interval, means over seeds their Student-t "
             f"interval, labelled uninformative below {MIN_SEEDS} seeds. The verdict is computed from "
             "those intervals: it holds when the whole interval lies on the claimed side, does not hold when it "
             "lies on the other, and is undecided when it straddles the line or comes from too few seeds; "
             f"\"most\" means more than {100 * MOST:g} %. \"paper\" rows are the paper's claims, with the "
             "section and figure that make them; \"ours\" rows are measurements the paper does not make. "
             "Each reading by a judge names the judge and its own accuracy on the clean images x.", ""]
    lines += _table(CLAIMS, STEPS, files, "--run")
    lines += ["", "## Natural images (CIFAR-10)", "",
              "CIFAR-10, not SVHN: the paper makes its claims on SVHN (Sec. 3), CelebA (Secs. 4, 5) and MNIST "
              "(Secs. 4, 6) and has no CIFAR-10 experiment. These rows measure which of its claims carry over to "
              "natural images, on the paper's SVHN network (CIFAR-10's default), with the budget the commands give. "
              "The judge is an independent CNN (`perceptreg train-judge`: another architecture and seed, trained on "
              f"real images only). Made by adding `--natural --cifar10 SPEC` to `--run`; here SPEC is `{cifar10}`.", ""]
    lines += _table(NATURAL_CLAIMS, natural_steps(cifar10), files, "--run --natural")
    _check_spec(files, cifar10)
    lines += ["", "## Provenance", "", f"Code: commit {commit()}.", "",
              "Run files read (SHA-256):", ""]
    lines += [f"- `{name}` {digest}" for name, digest in sorted(files.hashes.items())] or ["- none yet"]
    return "\n".join(lines) + "\n"


def make_runs(root: Path, steps: dict[str, tuple[str, str]]) -> None:
    """Run every step of ``steps`` whose output is missing, in order, in this Python environment."""
    root.mkdir(parents=True, exist_ok=True)
    for output, command in steps.values():
        if (root / output).exists():
            continue
        print(f"+ {command}", flush=True)
        argv = [sys.executable, "-m", "perceptreg", *shlex.split(command)[1:]]
        if subprocess.run(argv, cwd=root).returncode != 0:
            raise PerceptregError(f"`{command}` failed in {root} (its error is above); fix it and run this again "
                                  "(the steps already made are skipped)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perceptreg.sweeps.reproducing", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder of the runs (made there with --run)")
    parser.add_argument("--run", action="store_true", help="first make the MNIST runs that are missing (hours)")
    parser.add_argument("--natural", action="store_true",
                        help="with --run, also make the natural-image (CIFAR-10) runs (many CPU hours)")
    parser.add_argument("--cifar10", default=CIFAR10, metavar="SPEC",
                        help="the CIFAR-10 dataset the natural steps read, e.g. memmap:PATH (default: cifar10)")
    parser.add_argument("--out", default="REPRODUCING.md")  # a str: Path("") would be ".", not empty
    args = parser.parse_args(argv)
    try:
        with warnings_as_lines(lambda line: print(line, file=sys.stderr)):  # before the Error line
            if args.natural and not args.run:
                raise PerceptregError("--natural makes the natural-image runs: give it with --run")
            args.out = fileio.check_output_path(args.out)  # before an hour of runs
            if args.run:
                runs.claim(args.root, "reproducing")
                make_runs(args.root, STEPS)
                if args.natural:
                    make_runs(args.root, natural_steps(args.cifar10))
            elif not args.root.is_dir():
                raise PerceptregError(f"{args.root}: no such folder; make the runs with --run")
            page = reproducing_page(args.root, args.cifar10)
            fileio.atomic_write(args.out, lambda tmp: tmp.write_text(page))
    except PerceptregError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
