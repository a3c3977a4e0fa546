"""Training images/s of perceptreg.training.train beside a pytorch/examples-style loop, on the MNIST net.

    python bench/train_throughput.py [--rounds 5] [--batch-size 64]

Prints, in one run on the same machine:
- perceptreg.training.train: the library's loop (uint8 tensors gathered per batch, channels-last,
  fused Adam, no per-step syncs), timed by its own per-epoch `train_images_per_second`;
- reference: the loop of pytorch/examples' MNIST example: a Dataset converting one sample
  at a time (PIL image -> ToTensor, as torchvision's MNIST does), a DataLoader with default
  settings, default Adam, `loss.item()` every 10 batches for the log;
- the machine's dense fp32 matmul FLOP/s and the model's training FLOPs per image
  (forward + backward, counted by torch's FlopCounterMode), so each loop's share of that
  ceiling is printed.
Both train the same model, loss (lambda = 1e-2) and data (the 4000 MNIST-5k train digits).
The two loops alternate epoch by epoch (round by round), so drift of this machine's speed
hits both alike; round 1 is warm-up, and the median of the other rounds is reported with
its spread, as is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from perceptreg import data
from perceptreg.core import models
from perceptreg.core.config import TrainConfig
from perceptreg.core.loss import perceptual_loss
from perceptreg.training.train import train

LAM = 1e-2


def matmul_flops_per_second(n: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    """Dense fp32 matmul FLOP/s on ``device`` (TF32 off, as training's fp32 layers)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    if a.is_cuda:
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if a.is_cuda:
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - began)


def training_flops_per_image(batch_size: int, arch: str = "mnist") -> float:
    """FLOPs of one joint training step (forward and backward of F, C and D) per image."""
    net = models.build(arch, 10)
    x = torch.rand(batch_size, *net.input_shape)
    with FlopCounterMode(display=False) as counter:
        logits, _, recon = net(x)
        perceptual_loss(logits, torch.zeros(batch_size, dtype=torch.long), x, recon, LAM).total.backward()
    return counter.get_total_flops() / batch_size


class ExamplesStyleMNIST(Dataset):
    """As torchvision's MNIST + ToTensor(): one PIL image per sample, converted to float."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images[:, 0].numpy(), labels.numpy()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        picture = Image.fromarray(self.images[index], mode="L")
        tensor = torch.from_numpy(np.array(picture, np.uint8, copy=True)).view(28, 28, 1)
        return tensor.permute(2, 0, 1).contiguous().float().div(255), int(self.labels[index])


def reference_epochs(train_set: data.ImageDataset, batch_size: int):
    """Yields the images/s of each further epoch of one reference model."""
    torch.manual_seed(0)
    net = models.mnist()
    net.init_output_bias(train_set.pixel_mean())
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(ExamplesStyleMNIST(train_set.images, train_set.labels),
                        batch_size=batch_size, shuffle=True)
    while True:
        net.train()
        began = time.perf_counter()
        for batch_idx, (images, target) in enumerate(loader):
            optimizer.zero_grad()
            logits, _, recon = net(images)
            loss = perceptual_loss(logits, target, images, recon, LAM).total
            loss.backward()
            optimizer.step()
            if batch_idx % 10 == 0:  # log_interval in pytorch/examples
                loss.item()
        yield len(train_set) / (time.perf_counter() - began)


def perceptreg_epoch(train_set, test_set, batch_size: int) -> float:
    """Images/s of one epoch of perceptreg.training.train (its own timing: the training loop alone)."""
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(TrainConfig(epochs=1, batch_size=batch_size), run_dir,
                       train_data=train_set, test_data=test_set, progress=False)
    return result.history[0]["train_images_per_second"]


def spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    return (f"median {statistics.median(values):.{digits}f}{unit} "
            f"(min {min(values):.{digits}f}{unit}, max {max(values):.{digits}f}{unit})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="epochs per loop, alternating; round 1 is warm-up")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="the paper gives none; 64 as in pytorch/examples' MNIST")
    args = parser.parse_args()
    train_set, test_set = data.mnist5k_split()
    ceiling = matmul_flops_per_second()
    flops = training_flops_per_image(args.batch_size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.rounds} rounds of one epoch of {len(train_set)} images per loop (round 1: warm-up)")
    print(f"dense fp32 matmul: {ceiling / 1e9:.1f} GFLOP/s; MNIST net training: "
          f"{flops / 1e6:.2f} MFLOP per image (forward + backward)")
    reference = reference_epochs(train_set, args.batch_size)
    rates: dict[str, list[float]] = {"perceptreg.training.train": [], "pytorch/examples loop": []}
    for round_ in range(1, args.rounds + 1):
        ours, theirs = perceptreg_epoch(train_set, test_set, args.batch_size), next(reference)
        print(f"round {round_}: perceptreg.training.train {ours:7.0f} img/s, reference {theirs:7.0f} img/s, "
              f"ratio {ours / theirs:.2f}x" + (" (warm-up)" if round_ == 1 else ""))
        if round_ > 1:
            rates["perceptreg.training.train"].append(ours)
            rates["pytorch/examples loop"].append(theirs)
    for name, values in rates.items():
        shares = [rate * flops / ceiling * 100 for rate in values]
        print(f"{name:<22} images/s {spread(values)}; of matmul ceiling {spread(shares, ' %', 1)}")
    ratios = [a / b for a, b in zip(*rates.values())]
    print(f"perceptreg.training.train / reference: {spread(ratios, 'x', 2)}")


if __name__ == "__main__":
    main()
