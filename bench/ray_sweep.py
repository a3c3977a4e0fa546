"""A sweep's members trained by the local engine beside the same members as Ray tasks.

    python bench/ray_sweep.py [--rounds 3] [--epochs 2] [--train-size 1000] [--workers 2]

Each round, in turn:
- ray start: a local Ray instance of this machine's cores started and stopped, alone (what
  `--engine ray` pays before its first member);
- local: the members in `--workers` processes with cores / workers threads each
  (`perceptreg sweep --workers N`);
- ray: the same members as Ray tasks of cores / workers CPUs on a local instance started for
  them (`perceptreg sweep --engine ray --workers N`), its start and stop included.
They alternate round by round, so drift of this machine's speed hits all alike; medians are
printed with their spread. Wall times cover training only, not the sweep's measurements.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray

from perceptreg.core.config import TrainConfig
from perceptreg.sweeps import ray_engine, workers


def seconds(run) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def ray_start_stop() -> None:
    ray.init(address="local", num_cpus=workers.available_cores(), include_dashboard=False, logging_level="warning")
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--lams", default="1e-4,1e-3,1e-2,1,100")
    parser.add_argument("--workers", type=int, default=workers.available_cores())
    args = parser.parse_args()
    os.environ.pop("RAY_ADDRESS", None)  # always a local instance
    members = [TrainConfig(dataset="mnist5k", lam=float(lam), epochs=args.epochs, train_size=args.train_size)
               for lam in args.lams.split(",")]
    threads = workers.threads_per_worker(args.workers)
    print(f"{len(members)} members x {args.epochs} epochs x {args.train_size} images; {workers.available_cores()} "
          f"cores; {args.workers} workers / Ray tasks at once, {threads} thread(s) each")
    times: dict[str, list[float]] = {"ray start": [], "local": [], "ray": []}
    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as tmp:
            def runs(name):
                return [(config, Path(tmp) / name / f"m{i}") for i, config in enumerate(members)]
            times["ray start"].append(seconds(ray_start_stop))
            times["local"].append(seconds(lambda: workers.train_all(runs("local"), args.workers, progress=False)))
            times["ray"].append(seconds(lambda: ray_engine.train_all(runs("ray"), threads, progress=False)))
        print(f"round {round_}: " + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in times.items()))
    for name, values in times.items():
        print(f"{name:>9}: median {statistics.median(values):6.1f} s (min {min(values):.1f}, max {max(values):.1f})")
    ratios = [r / local for r, local in zip(times["ray"], times["local"])]
    print(f"ray / local wall time: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, "
          f"max {max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
