"""The default sweep's members trained sequentially, in worker processes, and as vmapped ensembles.

    python bench/sweep_throughput.py [--rounds 3] [--epochs 2] [--train-size 4000] [--workers 2]

The members are those of `perceptreg sweep` (MNIST-strips, 4 lambdas x 2 seeds, plus post-hoc
per seed), scaled down by --epochs and --train-size. Each round trains all of them once in
every arrangement, in turn:
- sequential: one after another in this process, every core a thread (`--workers 1`);
- workers: in `--workers` processes of cores / workers threads (`--workers N`);
- ensemble: the joint members as one vmapped ensemble in this process, then the post-hoc
  members alone (`--ensemble`);
- ensemble+workers: one ensemble per worker process (`--ensemble --workers N`).
The arrangements alternate round by round (the first of a round rotates), so drift of this
machine's speed hits all alike; each is reported as the median over rounds with its spread.

images/s: every member's training images (epochs x images, the post-hoc decoder phase
included) over the wall time of the whole training (worker start-up and data loading
included); per member: that divided by the number of members. Ratio: to sequential in the
same round, median over rounds. Ceiling: the dense fp32 matmul FLOP/s of this machine
(a 2048 x 2048 matmul on every core, measured each round); the share is images/s times the
joint net's training FLOPs per image (forward + backward of F, C and D, by torch's
FlopCounterMode) over it. Post-hoc phases run part of the net per image, so their share is
slightly overstated.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from train_throughput import matmul_flops_per_second, training_flops_per_image

from perceptreg.sweeps import workers
from perceptreg.sweeps.sweep import SweepConfig

# name -> (worker processes, as ensembles); None: --workers
ARRANGEMENTS = {"sequential": (1, False), "workers": (None, False), "ensemble": (1, True),
                "ensemble+workers": (None, True)}


def sweep_seconds(members, worker_count: int, ensemble: bool, folder: Path) -> float:
    began = time.perf_counter()
    workers.train_all([(config, folder / name) for name, config in members], worker_count, progress=False,
                      ensemble=ensemble)
    return time.perf_counter() - began


def spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    return (f"{statistics.median(values):.{digits}f}{unit} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=workers.available_cores())
    parser.add_argument("--only", default=",".join(ARRANGEMENTS),
                        help="arrangements to compare, comma-separated (sequential is always run)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (on CUDA, compare sequential and ensemble)")
    args = parser.parse_args()
    # Short trainings leave decoders collapsed, and every member would warn of it, here and in the workers
    os.environ["PYTHONWARNINGS"] = "ignore::RuntimeWarning"
    warnings.simplefilter("ignore", RuntimeWarning)
    sweep = SweepConfig(epochs=args.epochs, train_size=args.train_size, device=args.device)
    members = sweep.variants()
    images = sum(config.total_epochs * args.train_size for _, config in members)
    flops = training_flops_per_image(sweep.batch_size, members[0][1].arch)
    names = ["sequential"] + [n for n in args.only.split(",") if n in ARRANGEMENTS and n != "sequential"]
    torch.set_num_threads(workers.available_cores())
    print(f"{len(members)} members of {sweep.dataset} ({images} training images in all), {args.epochs} epochs "
          f"x {args.train_size} images; {workers.available_cores()} cores; workers: {args.workers} x "
          f"{workers.threads_per_worker(args.workers)} thread(s); {flops / 1e6:.1f} MFLOP per image")
    rates: dict[str, list[float]] = {name: [] for name in names}
    shares: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        ceiling = matmul_flops_per_second(device=args.device)
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        with tempfile.TemporaryDirectory() as tmp:
            for name in order:
                count, ensemble = ARRANGEMENTS[name]
                rate = images / sweep_seconds(members, count or args.workers, ensemble, Path(tmp) / name)
                rates[name].append(rate)
                shares[name].append(rate * flops / ceiling * 100)
        print(f"round {round_ + 1} (matmul {ceiling / 1e9:.0f} GFLOP/s): " + ", ".join(
            f"{name} {rates[name][-1]:.0f} img/s" for name in names), flush=True)
    print(f"{'arrangement':<18}{'images/s':>18}{'per member':>18}{'vs sequential':>22}{'of ceiling':>22}")
    for name in names:
        ratios = [r / s for r, s in zip(rates[name], rates["sequential"])]
        print(f"{name:<18}{spread(rates[name]):>18}{spread([r / len(members) for r in rates[name]]):>18}"
              f"{spread(ratios, 'x', 2):>22}{spread(shares[name], ' %', 1):>22}")


if __name__ == "__main__":
    main()
