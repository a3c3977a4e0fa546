"""A sweep's members trained one after another beside the same members in worker processes.

    python bench/sweep_throughput.py [--rounds 3] [--epochs 2] [--train-size 4000]

Each round trains the members of a small MNIST sweep (one per lambda) twice, in turn:
- sequential: one after another in this process, with every core as a thread (what
  `perceptreg sweep --workers 1` does);
- workers: the same members in `--workers` processes with cores / workers threads each
  (`perceptreg sweep --workers N`).
The two alternate round by round, so drift of this machine's speed hits both alike; the
median ratio over rounds is printed with its spread. Images/s counts every member's
training images over the wall time of the whole sweep (process start-up included).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from perceptreg import workers
from perceptreg.config import TrainConfig


def sweep_seconds(members: list[TrainConfig], worker_count: int, folder: Path) -> float:
    began = time.perf_counter()
    workers.train_all([(config, folder / f"m{i}") for i, config in enumerate(members)], worker_count, progress=False)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--lams", default="1e-4,1e-3,1e-2,1,100")
    parser.add_argument("--workers", type=int, default=workers.available_cores())
    args = parser.parse_args()
    members = [TrainConfig(dataset="mnist5k", lam=float(lam), epochs=args.epochs, train_size=args.train_size)
               for lam in args.lams.split(",")]
    images = len(members) * args.epochs * args.train_size
    torch.set_num_threads(workers.available_cores())
    print(f"{len(members)} members x {args.epochs} epochs x {args.train_size} images; "
          f"{workers.available_cores()} cores; workers: {args.workers} x {workers.threads_per_worker(args.workers)} thread(s)")
    rates: dict[str, list[float]] = {"sequential": [], "workers": []}
    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as tmp:
            rates["sequential"].append(images / sweep_seconds(members, 1, Path(tmp) / "seq"))
            rates["workers"].append(images / sweep_seconds(members, args.workers, Path(tmp) / "par"))
        print(f"round {round_}: sequential {rates['sequential'][-1]:7.0f} img/s, "
              f"workers {rates['workers'][-1]:7.0f} img/s, ratio {rates['workers'][-1] / rates['sequential'][-1]:.2f}x")
    ratios = [p / s for p, s in zip(rates["workers"], rates["sequential"])]
    for name, values in rates.items():
        print(f"{name:>10}: median {statistics.median(values):7.0f} img/s (min {min(values):.0f}, max {max(values):.0f})")
    print(f"workers / sequential: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
