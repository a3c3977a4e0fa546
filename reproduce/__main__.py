"""The command line of REPRODUCING.md, run from the repository root (``reproduce`` is not
installed with perceptreg; it imports it):

    python -m reproduce reproduce/runs --run --out REPRODUCING.md

The page's own runs live in ``reproduce/runs``, where git keeps the results files the page
reads (its ``.gitignore``: no checkpoints), so that ``python -m reproduce reproduce/runs``
rebuilds the page from a clone, and ``--run`` on a fresh machine makes only what they lack.

``--run`` first makes the run folders the page reads (``steps.mnist_steps``, inside the given
folder; a step whose output exists is skipped, so an interrupted run continues; several hours
on 2 CPU cores: the two 11,000-step sweeps, and three MNIST models (``--seeds``), each attacked
with 5 restarts, the adaptive search and its convergence curve), each by the library call of
the command the table quotes. ``--smoke`` makes the MNIST model steps at a tiny scale instead
(minutes), to check that they work. With ``--natural`` it also makes those of the natural-image table
(``steps.natural_steps``, then the decoder-loss study's ``from_decoder_losses.decoder_loss_steps``:
the CIFAR-10 download and many CPU hours), whose commands read
CIFAR-10 as ``--cifar10 SPEC`` gives it (default: the spec the natural sweep under the root was
made with, else ``cifar10``, the download; e.g. ``memmap:PATH``). With
``--robust``, those of the robust-model rows (``from_robust.robust_steps``: hours).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perceptreg import runs
from perceptreg.core.errors import PerceptregError, warnings_as_lines
from perceptreg.storage import fileio
from reproduce.document import natural_spec, reproducing_page
from reproduce.reading import RunFiles
from reproduce.from_decoder_losses import decoder_loss_steps
from reproduce.from_robust import robust_steps
from reproduce.steps import MODEL_SEEDS, SMOKE, Scale, make_runs, mnist_steps, natural_steps


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reproduce", description="Write REPRODUCING.md from run folders.")
    parser.add_argument("root", type=Path, help="the folder of the runs (made there with --run)")
    parser.add_argument("--run", action="store_true", help="first make the MNIST runs that are missing (hours)")
    parser.add_argument("--natural", action="store_true",
                        help="with --run, also make the natural-image (CIFAR-10) runs (many CPU hours)")
    parser.add_argument("--robust", action="store_true",
                        help="with --run, also make the robust-model study's runs (reproduce.robust_study, hours)")
    parser.add_argument("--cifar10", metavar="SPEC",
                        help="the CIFAR-10 dataset the natural steps read, e.g. memmap:PATH (default: the one the "
                             "natural sweep under the root was made with, else cifar10)")
    parser.add_argument("--seeds", default=",".join(map(str, MODEL_SEEDS)), metavar="LIST",
                        help="the seeds of the MNIST models attacked, edited and given noise (default: %(default)s; "
                             "below 3 their rows say \"one model\")")
    parser.add_argument("--smoke", action="store_true",
                        help="with --run, make every MNIST model step at a tiny scale, without the sweeps (minutes): "
                             "to check the steps work; its numbers mean nothing")
    parser.add_argument("--out", default="REPRODUCING.md")  # a str: Path("") would be ".", not empty
    return parser.parse_args(argv)


def write(args: argparse.Namespace) -> Path:
    """Make the runs asked for, then write the page; the path written."""
    for flag in ("natural", "robust"):
        if getattr(args, flag) and not args.run:
            raise PerceptregError(f"--{flag} makes runs: give it with --run")
    out = fileio.check_output_path(args.out)  # before an hour of runs
    try:
        seeds = tuple(int(seed) for seed in args.seeds.split(","))
    except ValueError:
        raise PerceptregError(f"--seeds {args.seeds!r}: give seeds as integers, comma-separated, e.g. 0,1,2") from None
    mnist = mnist_steps(seeds, SMOKE if args.smoke else Scale())
    if args.run:
        runs.check_writable(args.root, "reproducing")
        make_runs(args.root, mnist)
        if args.natural:
            cifar10 = natural_spec(RunFiles(args.root), args.cifar10)
            make_runs(args.root, natural_steps(cifar10))
            make_runs(args.root, decoder_loss_steps(cifar10))
        if args.robust:
            make_runs(args.root, robust_steps())
    elif not args.root.is_dir():
        raise PerceptregError(f"{args.root}: no such folder; make the runs with --run")
    page = reproducing_page(args.root, args.cifar10, mnist)
    fileio.atomic_write(out, lambda tmp: tmp.write_text(page))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        with warnings_as_lines(lambda line: print(line, file=sys.stderr)):  # before the Error line
            out = write(args)
    except PerceptregError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
