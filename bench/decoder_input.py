"""Which input should D learn from in adversarial training: x, x_adv or both? The measurement
behind ``AdversarialConfig.decoder_input``'s default (docs/guides/adversarial-training.md).

    python bench/decoder_input.py [--method fgsm-rs] [--eps 0.1] [--train-size 1000] [--pretrain-epochs 4] [--epochs 1]

A standard model (lambda 1e-2, batch 32) is trained first, so that C and D work; then a copy of
it is trained on adversarially (``--epochs``) once per decoder input, same seed and data, and
for each the script prints: clean and PGD-10 robust accuracy at the training eps (the last
epoch's, on its evaluation sample), the MSE per pixel of P(x) against x and of P(x_adv)
against x_adv for PGD-10 examples of 500 test digits, and the median seconds of an epoch's
training pass.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path

import torch

from perceptreg import data
from perceptreg.core.config import AdversarialConfig, TrainConfig
from perceptreg.core.config import DECODER_INPUTS
from perceptreg.training.adversarial_training import Adversary
from perceptreg.training.train import train


def reconstruction_mse(model, images: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(images)[2] - images).square().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="fgsm-rs")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--pretrain-epochs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    train_data, test_data = data.mnist5k_split(seed=0)
    sample = data.evaluation_subset(test_data, 500)
    images, labels = data.to_float(sample.images), sample.labels
    print(f"{args.method} training, eps {args.eps:g}, lambda 1e-2, {args.train_size} digits, {args.epochs} epochs")
    print(f"{'decoder input':>13} | clean acc | PGD-10 robust | MSE P(x) vs x | MSE P(x_adv) vs x_adv | s/epoch")
    common = dict(train_size=args.train_size, batch_size=32, eval_size=500)
    with tempfile.TemporaryDirectory() as folder:
        standard = train(TrainConfig(**common, epochs=args.pretrain_epochs), Path(folder) / "standard",
                         train_data=train_data, test_data=test_data, progress=False).model
    print(f"standard start: {args.pretrain_epochs} epochs, MSE P(x) vs x {reconstruction_mse(standard, images):.4f}")
    for decoder_input in DECODER_INPUTS:
        threat = AdversarialConfig(eps=args.eps, method=args.method, decoder_input=decoder_input)
        config = TrainConfig(**common, epochs=args.epochs, init_output_bias=False, adversarial=threat)
        with tempfile.TemporaryDirectory() as folder:
            result = train(config, Path(folder) / "run", model=copy.deepcopy(standard), train_data=train_data,
                           test_data=test_data, progress=False)
        model, last = result.model.eval(), result.history[-1]
        adv = Adversary(AdversarialConfig(eps=args.eps, steps=10), seed=0).attack(model, 0)(images, labels)
        seconds = statistics.median(args.train_size / row["train_images_per_second"] for row in result.history)
        print(f"{decoder_input:>13} | {last['test_accuracy']:9.3f} | {last['test_robust_accuracy']:13.3f} | "
              f"{reconstruction_mse(model, images):13.4f} | {reconstruction_mse(model, adv):21.4f} | {seconds:7.1f}")


if __name__ == "__main__":
    main()
