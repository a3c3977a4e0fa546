"""PGD image-iterations per second of perceptreg.adversarial.attacks beside torchattacks' PGD.

    pip install --no-deps torchattacks      # the bench environment only; not a dependency
    python bench/attack_throughput.py [--steps 100] [--batch 1000] [--rounds 3] [--run RUN]

Both attack the same model object (the MNIST net; a trained one with --run RUN) on the
same batch of MNIST-5k test digits with the same settings (L-inf, eps 0.2, alpha 0.005,
random start). torchattacks draws its start from the global RNG after torch.manual_seed
(seed); perceptreg from a generator seeded with the same seed, so both start from the same
point and the adversarial images are compared for equality. Rounds alternate between the
two to spread the machine's drift over both; the median round is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from perceptreg import data
from perceptreg.adversarial.attacks import PGD
from perceptreg.core import models


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000, help="images per attack call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", help="attack this run's model instead of a freshly initialised one")
    args = parser.parse_args()
    try:
        import torchattacks
    except ImportError:
        raise SystemExit("this bench compares with torchattacks: pip install --no-deps torchattacks")

    torch.manual_seed(args.seed)
    if args.run:
        from perceptreg.runs import open_run
        net = open_run(args.run).model()
    else:
        net = models.mnist().eval()
    logits_only = nn.Sequential(net.encoder, net.classifier)  # torchattacks wants logits out
    test = data.mnist5k_split()[1]
    images, labels = data.to_float(test.images[:args.batch]), test.labels[:args.batch]
    settings = dict(eps=0.2, alpha=0.005, steps=args.steps)

    def theirs():
        torch.manual_seed(args.seed)
        return torchattacks.PGD(logits_only, random_start=True, **settings)(images, labels)

    def ours():
        return PGD(net, seed=args.seed, **settings)(images, labels)

    rates = {"perceptreg.adversarial.attacks.PGD": [], "torchattacks.PGD": []}
    outputs = {}
    for _ in range(args.rounds):
        for name, attack in (("torchattacks.PGD", theirs), ("perceptreg.adversarial.attacks.PGD", ours)):
            began = time.perf_counter()
            outputs[name] = attack()
            rates[name].append(len(images) * args.steps / (time.perf_counter() - began))
    ours_rate, their_rate = (statistics.median(r) for r in rates.values())
    a, b = outputs["perceptreg.adversarial.attacks.PGD"], outputs["torchattacks.PGD"]
    same = (a == b).flatten(1).all(1)
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, {torch.get_num_threads()} threads; "
          f"PGD L-inf eps 0.2, alpha 0.005, {args.steps} steps, batch {len(images)}, median of {args.rounds} rounds")
    print(f"{'attack':<26}{'image-iterations/s':>20}{'ratio':>8}")
    print(f"{'perceptreg.adversarial.attacks.PGD':<26}{ours_rate:>20.0f}{ours_rate / their_rate:>7.2f}x")
    print(f"{'torchattacks.PGD':<26}{their_rate:>20.0f}{1:>7.2f}x")
    print(f"same adversarial images: {int(same.sum())} of {len(same)} identical, "
          f"max abs difference {(a - b).abs().max().item():.3g}")


if __name__ == "__main__":
    main()
