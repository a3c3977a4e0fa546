"""What the one-pass fit of an attached model costs: decoders on 4 layers fitted together
(the frozen model runs once per batch) beside each layer's decoder fitted alone.

    python bench/attach_fit.py [--rounds 5] [--train-size 4000]

The model is the residual CNN of tests/user_net.py (BatchNorm, Dropout, its normalization
inside), trained here with cross-entropy alone for 5 epochs on the 4000 MNIST-5k training
digits. Each round times one epoch of the one-pass fit and one epoch of each single-layer
fit, interleaved, because this machine's speed drifts between runs; the median and the
spread (min-max) over rounds are printed, with the one-pass time as a multiple of the
single layers' mean and of their sum (what fitting them one after another costs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from perceptreg import data
from perceptreg.attaching.fitting import fit_decoders
from perceptreg.core.attached import attach

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from user_net import build  # noqa: E402  (the user's model, written outside the library)

LAYERS = ["stem", "block1", "block2", "fc1"]


def trained_net(train: data.ImageDataset, epochs: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build()
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for epoch in range(epochs):
        net.train()
        for x, y in data.batches(train, 64, shuffle=True, generator=torch.Generator().manual_seed(epoch)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    return net.eval()


def one_epoch(net, layers, train) -> float:
    seen = attach(net, layers, (1, 28, 28))
    began = time.perf_counter()
    fit_decoders(seen, train, epochs=1, progress=False)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=4000)
    args = parser.parse_args()
    train = data.training_subset(data.mnist5k_split()[0], args.train_size, 0)
    net = trained_net(train)
    runs = {"one pass, 4 layers": LAYERS, **{f"{name} alone": [name] for name in LAYERS}}
    times: dict[str, list[float]] = {name: [] for name in runs}
    one_epoch(net, LAYERS, train)  # warm-up
    for _ in range(args.rounds):
        for name, layers in runs.items():  # interleaved, round by round
            times[name].append(one_epoch(net, layers, train))
    print(f"seconds per epoch of {len(train)} images, median (min-max) over {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads:")
    for name, values in times.items():
        print(f"  {name:<20} {statistics.median(values):6.2f}  ({min(values):.2f}-{max(values):.2f})")
    singles = [statistics.median(times[f"{name} alone"]) for name in LAYERS]
    together = statistics.median(times["one pass, 4 layers"])
    print(f"one pass / mean single layer: {together / statistics.mean(singles):.2f}x; "
          f"one pass / the four fitted one after another: {together / sum(singles):.2f}x")


if __name__ == "__main__":
    main()
