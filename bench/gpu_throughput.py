"""Training images/s of the paper's CelebA network on one GPU, fp32 against bf16 autocast,
and the share of the GPU's measured matmul peak each reaches.

    python bench/gpu_throughput.py [--batch-size 128] [--steps 50] [--compile]

Runs the same step as perceptreg.training.train (channels-last, fused Adam, the summed-per-image
reconstruction loss, lambda 1e-2) on random 3x64x64 batches already on the GPU, so the
number is the model's, not the data pipeline's. The peak is measured here too: dense
matmuls of 8192x8192 in fp32 (TF32 off) and in bf16. Exits with a message where no CUDA
device is visible; nothing is estimated.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from perceptreg.core import models
from perceptreg.core.loss import perceptual_loss


def matmul_peak(dtype: torch.dtype, n: int = 8192, repeats: int = 20) -> float:
    a, b = (torch.randn(n, n, device="cuda", dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - began)


def images_per_second(batch_size: int, steps: int, bf16: bool, compile_step: bool) -> float:
    torch.manual_seed(0)
    layout = torch.contiguous_format if compile_step else torch.channels_last  # as train.py, for the same reason
    net = models.celeba().cuda().to(memory_format=layout)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    x = torch.rand(batch_size, 3, 64, 64, device="cuda").contiguous(memory_format=layout)
    y = torch.randint(0, 2, (batch_size,), device="cuda")
    forward = torch.compile(net) if compile_step else net

    def step():
        with torch.autocast("cuda", torch.bfloat16, enabled=bf16):
            logits, _, recon = forward(x)
            loss = perceptual_loss(logits, y, x, recon, 1e-2).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return batch_size * steps / (time.perf_counter() - began)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: this bench measures a GPU and estimates nothing without one")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    net = models.celeba().cuda()
    with FlopCounterMode(display=False) as counter:
        logits, _, recon = net(torch.rand(args.batch_size, 3, 64, 64, device="cuda"))
        perceptual_loss(logits, torch.zeros(args.batch_size, dtype=torch.long, device="cuda"),
                        torch.rand_like(recon), recon, 1e-2).total.backward()
    flops = counter.get_total_flops() / args.batch_size
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; CelebA network "
          f"{models.parameter_count(net):,} parameters, {flops / 1e9:.2f} GFLOP per image (forward + backward); "
          f"batch {args.batch_size}")
    print(f"{'precision':<10}{'images/s':>10}{'matmul peak TFLOP/s':>22}{'share of peak':>15}")
    for name, bf16, dtype in (("fp32", False, torch.float32), ("bf16", True, torch.bfloat16)):
        rate = images_per_second(args.batch_size, args.steps, bf16, args.compile)
        peak = matmul_peak(dtype)
        print(f"{name:<10}{rate:>10.0f}{peak / 1e12:>22.1f}{rate * flops / peak:>14.1%}")


if __name__ == "__main__":
    main()
