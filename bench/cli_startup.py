"""Startup of the CLI: `perceptreg --help` (and one command's --help) beside a bare
`python -c "import torch"`, each a fresh interpreter.

    python bench/cli_startup.py [--rounds 7]

Interleaved round by round, because this machine's speed drifts; the median and the spread
(min-max) over rounds are printed, and each --help as a fraction of the torch import. The
goal: --help under 0.5 s, a small fraction of importing torch (which the CLI does only when
a command runs).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "perceptreg --help": [sys.executable, "-m", "perceptreg", "--help"],
    "perceptreg train --help": [sys.executable, "-m", "perceptreg", "train", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def seconds(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the file cache
        seconds(command)
    times = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    torch = statistics.median(times["python -c 'import torch'"])
    print(f"seconds, median (min-max) over {args.rounds} interleaved rounds")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<28} {median:6.2f}  ({min(values):.2f}-{max(values):.2f})  {median / torch:5.1%} of import torch")


if __name__ == "__main__":
    main()
