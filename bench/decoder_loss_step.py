"""One joint training step with the feature and deepsim decoder losses against the paper's
pixel loss, on the same net: issue 35's goal is at most 2x the pixel step.

    python bench/decoder_loss_step.py [--arch svhn] [--batch-size 64] [--rounds 15] [--steps 10]

A step is what `train`'s loop does per batch: forward through F, C, D (and the comparator,
and the discriminator), the loss of ``core.loss.perceptual_loss``, one backward, one fused
Adam step (the discriminator in the same optimizer, as `train` puts it). The three losses
alternate round by round (``--steps`` steps each per round), so drift of this shared machine's
speed hits all alike; round 1 is warm-up. Prints each loss's median ms per step with its
spread (min..max over the rounds) and the median of the per-round ratios to pixel.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from perceptreg.core import models
from perceptreg.core.config import DecoderLoss
from perceptreg.core.loss import perceptual_loss
from perceptreg.training.comparators import decoder_objective

LOSSES = ("pixel", "feature", "deepsim")


def stepper(name: str, arch: str, batch_size: int, device: str):
    """A closure running one training step of ``arch`` under the decoder loss ``name``."""
    torch.manual_seed(0)
    net = models.build(arch, 10).to(device, memory_format=torch.channels_last)
    objective = decoder_objective(DecoderLoss(name), net.input_shape, net.encoder, device=device)
    if objective is not None:  # as `train` lays it out
        objective.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    if objective is not None and objective.discriminator is not None:
        optimizer.add_param_group({"params": list(objective.discriminator.parameters()), "betas": (0.5, 0.999)})
    images = torch.rand(batch_size, *net.input_shape, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,), device=device)

    def step():
        logits, _, recon = net(images)
        parts = perceptual_loss(logits, labels, images, recon, 1e-2, "sum", objective)
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="svhn", choices=list(models.ARCHITECTURES))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    steps = {name: stepper(name, args.arch, args.batch_size, args.device) for name in LOSSES}
    times: dict[str, list[float]] = {name: [] for name in LOSSES}
    for _ in range(args.rounds):
        for name in LOSSES:
            began = time.perf_counter()
            for _ in range(args.steps):
                steps[name]()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - began) / args.steps * 1000)
    kept = {name: values[1:] for name, values in times.items()}  # round 1: warm-up
    print(f"{args.arch} net, batch {args.batch_size}, {args.device}, {torch.get_num_threads()} threads, "
          f"{args.rounds - 1} rounds of {args.steps} steps (after 1 warm-up round)")
    for name in LOSSES:
        ratios = [t / p for t, p in zip(kept[name], kept["pixel"])]
        print(f"{name:8s} {statistics.median(kept[name]):7.1f} ms/step (spread {min(kept[name]):.1f}..."
              f"{max(kept[name]):.1f}), x{statistics.median(ratios):.2f} pixel (spread {min(ratios):.2f}..."
              f"{max(ratios):.2f})")


if __name__ == "__main__":
    main()
