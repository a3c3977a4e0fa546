"""The cost of an adversarial training epoch: perceptreg's against a plain PyTorch PGD-training
loop and against a standard epoch of the same net (issue 36's goal: at most steps + 1.2 times
a standard epoch).

    python bench/adversarial_epoch.py [--rounds 4] [--steps 10] [--train-size 1000] [--device cpu]

Each round trains one epoch of each, in turn, so drift of the machine's speed hits all alike:
- standard: ``train`` without adversarial training (CE + lambda * reconstruction);
- perceptreg: ``train`` with PGD training (``AdversarialConfig(eps=0.3, steps=STEPS)``, D on x);
- plain: the loop of a Madry-style PGD trainer written in plain PyTorch: per batch the model
  in eval mode, a uniform random start, STEPS signed-gradient steps projected on the ball,
  then the same objective (CE on x_adv + lambda * ||x - D(F(x))||^2) and an Adam step.
Seconds are of the training pass alone (``train_images_per_second`` of ``train``'s rows; the
evaluations after an epoch are not counted). Round 1 is warm-up; the median of the others is
printed with its spread (min-max), and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from perceptreg import data
from perceptreg.core import models
from perceptreg.core.config import AdversarialConfig, TrainConfig
from perceptreg.core.loss import reconstruction_error
from perceptreg.training.train import train

EPS, LAM, BATCH = 0.3, 1e-2, 64


def library_epoch(train_data, test_data, steps: int | None, device: str) -> float:
    """Seconds of one training pass of ``train`` (adversarial with ``steps``, else standard)."""
    threat = AdversarialConfig(eps=EPS, steps=steps) if steps else None
    config = TrainConfig(epochs=1, eval_size=100, adversarial=threat, device=device, batch_size=BATCH)
    with tempfile.TemporaryDirectory() as folder:
        row = train(config, Path(folder) / "run", train_data=train_data, test_data=test_data,
                    progress=False).history[0]
    return len(train_data) / row["train_images_per_second"]


def plain_epoch(images: torch.Tensor, labels: torch.Tensor, steps: int, device: str) -> float:
    """Seconds of one epoch of the plain PyTorch PGD-training loop."""
    torch.manual_seed(0)
    model = models.build("mnist", 10).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    alpha = 2.5 * EPS / steps
    order = torch.randperm(len(images))
    began = time.perf_counter()
    for batch in order.split(BATCH):
        x, y = images[batch].to(device), labels[batch].to(device)
        model.eval()
        adv = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
        for _ in range(steps):
            adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model.classify(adv), y), adv)
            adv = (x + (adv.detach() + alpha * grad.sign() - x).clamp(-EPS, EPS)).clamp(0, 1)
        model.train()
        loss = F.cross_entropy(model.classify(adv), y) + LAM * reconstruction_error(x, model.decoder(model.encoder(x)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - began


def summary(name: str, values: list[float]) -> str:
    return f"{name:>10}: median {statistics.median(values):7.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    train_data, test_data = data.mnist5k_split(seed=0)
    train_data = data.training_subset(train_data, args.train_size, 0)
    images, labels = data.to_float(train_data.images), train_data.labels
    times = {"standard": [], "perceptreg": [], "plain": []}
    for round_ in range(args.rounds):
        measured = {"standard": library_epoch(train_data, test_data, None, args.device),
                    "perceptreg": library_epoch(train_data, test_data, args.steps, args.device),
                    "plain": plain_epoch(images, labels, args.steps, args.device)}
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in measured.items())
              + (" (warm-up)" if round_ == 0 else ""), flush=True)
        if round_ > 0 or args.rounds == 1:
            for key, value in measured.items():
                times[key].append(value)
    print(f"PGD-{args.steps} training at eps {EPS}, {args.train_size} MNIST digits, batch {BATCH}, {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    for key, values in times.items():
        print(summary(key, values))
    per_round = [a / s for a, s in zip(times["perceptreg"], times["standard"])]
    against_plain = [a / p for a, p in zip(times["perceptreg"], times["plain"])]
    print(f"perceptreg / standard: median {statistics.median(per_round):.2f}x (min {min(per_round):.2f}, "
          f"max {max(per_round):.2f}); goal at most steps + 1.2 = {args.steps + 1.2:.1f}x")
    print(f"perceptreg / plain loop: median {statistics.median(against_plain):.2f}x (min {min(against_plain):.2f}, "
          f"max {max(against_plain):.2f})")


if __name__ == "__main__":
    main()
