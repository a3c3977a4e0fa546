"""Peak resident memory of training on a memory-mapped dataset, against the dataset's size.

    python bench/memmap_rss.py [--images 800000] [--steps 3000] [--folder /tmp/perceptreg-memmap]

Writes a CelebA-sized dataset (--images SVHN-shaped 3x32x32 uint8 images, 2.4 GB by
default; random pixels and labels: the content does not matter here) with the same
writer `perceptreg prepare` uses, then, in a fresh process, trains the SVHN network on it
with `perceptreg.training.train` for --steps batches of 64 drawn from the whole file, and prints that
process's peak resident set size beside the dataset's size. Without the page release the
pages read would stay resident (up to the whole file); the goal is under 25 %.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from perceptreg import data

# The peak is read from /proc (VmHWM, this process's own high-water mark): getrusage's
# ru_maxrss survives exec on Linux and would report the writer's peak.
TRAIN_IN_FRESH_PROCESS = """
import re, sys, tempfile
from pathlib import Path
from perceptreg import data
from perceptreg.core.config import TrainConfig
from perceptreg.training.train import train
if sys.argv[3] == "keep":  # the comparison: pages never handed back
    data.RELEASE_EVERY = 10**12
with tempfile.TemporaryDirectory() as run:
    result = train(TrainConfig(dataset="memmap:" + sys.argv[1], arch="svhn", epochs=1, batch_size=64,
                               steps_per_epoch=int(sys.argv[2])), run, progress=False)
peak_kib = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(peak_kib * 1024, result.history[-1]["train_images_per_second"])
"""


def write_dataset(folder: Path, count: int) -> None:
    """Random images streamed through a raw memmap into `write_memmap`, never all in memory."""
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        source = np.lib.format.open_memmap(Path(scratch) / "source.npy", mode="w+", dtype=np.uint8,
                                           shape=(count, 3, 32, 32))
        generator = torch.Generator().manual_seed(0)
        for start in range(0, count, 50_000):
            stop = min(start + 50_000, count)
            source[start:stop] = torch.randint(0, 256, (stop - start, 3, 32, 32), generator=generator,
                                               dtype=torch.uint8).numpy()
        labels = torch.randint(0, 10, (count,), generator=generator)
        images = torch.from_numpy(source)
        test = count // 20
        data.write_memmap(folder, data.ImageDataset(images[test:], labels[test:], data.DIGITS, "random-train",
                                                    channel_means=torch.full((3,), 0.5)),
                          data.ImageDataset(images[:test], labels[:test], data.DIGITS, "random-test"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800_000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "perceptreg-memmap")
    args = parser.parse_args()
    if args.folder.exists():
        shutil.rmtree(args.folder)
    write_dataset(args.folder, args.images)
    size = sum(f.stat().st_size for f in args.folder.iterdir())
    print(f"dataset {size / 2**30:.2f} GiB ({args.images} images 3x32x32 on disk), {args.steps} steps of 64 "
          f"drawn from all of it; goal: peak resident memory under 25 % of the dataset")
    for pages, name in (("release", "pages handed back every RELEASE_EVERY batches"),
                        ("keep", "pages kept (the mapping left alone)")):
        out = subprocess.run([sys.executable, "-c", TRAIN_IN_FRESH_PROCESS, str(args.folder), str(args.steps), pages],
                             capture_output=True, text=True, check=True).stdout.split()
        peak, rate = int(out[-2]), float(out[-1])
        print(f"{name:<48} peak {peak / 2**20:6.0f} MiB = {peak / size:6.1%} of the dataset, {rate:.0f} images/s")
    shutil.rmtree(args.folder)


if __name__ == "__main__":
    main()
