"""The MNIST model judge of REPRODUCING.md: a CNN of another design than the paper's MNIST
network it judges (Appendix B: 4x4 convolutions, strided, no pooling, a 32-number latent).

A judge of the judged model's own architecture reads x_adv as the adversarial class because the
attack transfers to its twin, not because of how the image looks (issue 37: the twin read x_adv
as adversarial 87 % of the time); ``judges.run_judge`` refuses one. This one has 3x3
convolutions with max pooling, twice as wide, and a 128-number latent. Trained with lam 0, it
is a classifier of real digits only: its decoder is never trained and never read.

    perceptreg train --model reproduce/mnist_judge.py:mnist_judge --lam 0 --seed 1 --out judge
"""

from torch import nn

from perceptreg.core.models import PerceptionNet


def mnist_judge() -> PerceptionNet:
    """1x28x28 -> 32x14x14 -> 64x7x7 -> 128 (F); 128 -> 10 (C); a linear D back to 1x28x28."""
    encoder = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
    decoder = nn.Sequential(nn.Linear(128, 28 * 28), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))
    return PerceptionNet(encoder, nn.Linear(128, 10), decoder, (1, 28, 28))
