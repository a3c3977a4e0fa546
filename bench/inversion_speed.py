"""What inversion costs: 100 CIFAR-10-sized images (3x32x32) inverted at one layer, on 2 CPU
threads, by ``core.inversion.invert_images`` with its default settings (200 steps).

    python bench/inversion_speed.py [--rounds 3] [--images 100] [--threads 2] [--steps 200] [--data-root DIR]

The goal (issue 35): under 60 s on 2 quiet CPU cores. Three models, each inverted at the layer
the study inverts:
- svhn z 256: the paper's SVHN net with the latent the CIFAR-10 docs recommend, at z;
- vgg: perceptreg's VGG-style net (batch norm: the DeepInversion prior is on), at z;
- resnet layer3: the CIFAR ResNet of examples/cifar_resnet.py attached at its deepest
  convolutional layer (batch norm; the whole network runs each step, as attach reads it).
The weights are as built (the cost does not depend on them). The images are CIFAR-10's test
images where --data-root holds them, else the offline 32x32 colour strips (same shape, same
cost). The machine's load average is printed before and after: on a shared machine the
wall time is the machine's, not the method's, so the process's CPU time is printed too (on
two quiet cores the wall time is about half of it, at most all of it); the median of the
rounds is reported with its range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from perceptreg import data
from perceptreg.core import models
from perceptreg.core.attached import attach
from perceptreg.core.inversion import invert_images, searched_module
from perceptreg.core.inversion_settings import InversionSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from cifar_resnet import CIFAR_MEAN, CIFAR_STD, resnet20  # noqa: E402  (a user's model, outside the library)


def test_images(count: int, root: str | None) -> torch.Tensor:
    test = data.load_cifar10(Path(root))[1] if root else data.mnist_strips_split()[1]
    return data.to_float(test.images[data.spread_over_classes(test.labels, count)])


def views() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    resnet = attach(resnet20(), ["layer3"], (3, 32, 32), normalize=(CIFAR_MEAN, CIFAR_STD)).at("layer3")
    return {"svhn z 256 at z": models.svhn(z_dim=256), "vgg at z": models.vgg(), "resnet20 at layer3": resnet}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=InversionSettings.steps,
                        help="fewer on a loaded machine: the time is then also scaled to the default steps")
    parser.add_argument("--data-root", help="a folder holding CIFAR-10 (cifar-10-batches-bin)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = test_images(args.images, args.data_root)
    settings = InversionSettings(steps=args.steps)
    scale = InversionSettings.steps / args.steps  # each step costs the same: the default's time, extrapolated
    print(f"{len(images)} images {tuple(images.shape[1:])}, {settings.steps} steps, {args.threads} threads; "
          f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    nets = views()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in nets}
    for _ in range(args.rounds):  # interleaved: drift of the machine's speed hits every model alike
        for name, net in nets.items():
            began, cpu = time.perf_counter(), time.process_time()
            invert_images(net.encoder, images, settings, searched_module(net))
            times[name].append((time.perf_counter() - began, time.process_time() - cpu))
            print(f"{name:22s} wall {times[name][-1][0]:6.1f} s, CPU {times[name][-1][1]:6.1f} s", flush=True)
    for name, measured in times.items():
        wall, cpu = [m[0] for m in measured], [m[1] for m in measured]
        print(f"{name:22s} median wall {statistics.median(wall):6.1f} s (range {min(wall):.1f}-{max(wall):.1f}), "
              f"CPU {statistics.median(cpu):6.1f} s, {len(measured)} rounds; at {InversionSettings.steps} steps: "
              f"wall {scale * statistics.median(wall):.1f} s, CPU {scale * statistics.median(cpu):.1f} s")
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
