"""Training images/s of perceptreg.train beside a pytorch/examples-style loop, on the MNIST net.

    python bench/train_throughput.py [--epochs 4] [--batch-size 64]

Prints, in one run on the same machine:
- perceptreg.train: the library's loop (uint8 tensors gathered per batch, channels-last,
  fused Adam, no per-step syncs), timed by its own per-epoch `train_images_per_second`;
- reference: the loop of pytorch/examples' MNIST example: a Dataset converting one sample
  at a time (PIL image -> ToTensor, as torchvision's MNIST does), a DataLoader with default
  settings, default Adam, `loss.item()` every 10 batches for the log;
- the machine's dense fp32 matmul FLOP/s and the model's training FLOPs per image
  (forward + backward, counted by torch's FlopCounterMode), so each loop's share of that
  ceiling is printed.
Both train the same model, loss (lambda = 1e-2) and data (the 4000 MNIST-5k train digits);
the first epoch of each is warm-up and the median of the others is reported.
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

from perceptreg import data, models
from perceptreg.config import TrainConfig
from perceptreg.loss import perceptual_loss
from perceptreg.train import train

LAM = 1e-2


def matmul_flops_per_second(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - began)


def training_flops_per_image(batch_size: int) -> float:
    net = models.mnist()
    x = torch.rand(batch_size, 1, 28, 28)
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


def reference_images_per_second(train_set: data.ImageDataset, epochs: int, batch_size: int) -> list[float]:
    torch.manual_seed(0)
    net = models.mnist()
    net.init_output_bias(train_set.pixel_mean())
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(ExamplesStyleMNIST(train_set.images, train_set.labels),
                        batch_size=batch_size, shuffle=True)
    rates = []
    for _ in range(epochs):
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
        rates.append(len(train_set) / (time.perf_counter() - began))
    return rates


def perceptreg_images_per_second(train_set, test_set, epochs: int, batch_size: int) -> list[float]:
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(TrainConfig(epochs=epochs, batch_size=batch_size), run_dir,
                       train_data=train_set, test_data=test_set, progress=False)
    return [row["train_images_per_second"] for row in result.history]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per loop; the first is warm-up")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="the paper gives none; 64 as in pytorch/examples' MNIST")
    args = parser.parse_args()
    train_set, test_set = data.mnist5k_split()
    ceiling = matmul_flops_per_second()
    flops = training_flops_per_image(args.batch_size)
    ours = perceptreg_images_per_second(train_set, test_set, args.epochs, args.batch_size)
    reference = reference_images_per_second(train_set, args.epochs, args.batch_size)
    rows = [("perceptreg.train", statistics.median(ours[1:])),
            ("pytorch/examples loop", statistics.median(reference[1:]))]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.epochs} epochs of {len(train_set)} images (median of epochs 2..{args.epochs})")
    print(f"dense fp32 matmul: {ceiling / 1e9:.1f} GFLOP/s; MNIST net training: "
          f"{flops / 1e6:.2f} MFLOP per image (forward + backward)")
    print(f"{'loop':<24}{'images/s':>10}{'vs reference':>14}{'of matmul ceiling':>20}")
    for name, rate in rows:
        print(f"{name:<24}{rate:>10.0f}{rate / rows[1][1]:>13.2f}x{rate * flops / ceiling:>19.1%}")


if __name__ == "__main__":
    main()
