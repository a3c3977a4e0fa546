"""A user's classifier, written outside the library: a small residual CNN with BatchNorm,
Dropout and its input normalization inside. ``build`` is what `perceptreg attach --model
tests/user_net.py:build` calls."""

import torch
from torch import nn


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class Tripwire(nn.Module):
    """Raises when armed: a forward that fails half-way."""
    armed = False

    def forward(self, x):
        if self.armed:
            raise RuntimeError("tripwire")
        return x


class SmallNet(nn.Module):
    """1x28x28 -> stem 16x14x14 -> block1 16x14x14 -> block2 32x7x7 -> fc1 64 -> fc2 10."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.register_buffer("mean", torch.tensor(0.13))  # normalizes inside, as many models do
        self.register_buffer("std", torch.tensor(0.31))
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = Residual(16)
        self.trip = Tripwire()
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Sequential(nn.Linear(32 * 7 * 7, hidden), nn.ReLU())
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        x = self.trip(self.block1(self.stem((x - self.mean) / self.std)))
        return self.fc2(self.fc1(self.drop(self.block2(x).flatten(1))))


def net() -> SmallNet:
    torch.manual_seed(0)
    model = SmallNet()
    with torch.no_grad():  # running statistics that are not the defaults, so a change shows
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return model


def build() -> SmallNet:
    """The untrained net, as a factory for `--model` (weights come from `--weights`)."""
    return SmallNet()


def build_sized(hidden: int = 64) -> SmallNet:
    """The untrained net with fc1 of ``hidden`` units: a factory with a keyword argument."""
    return SmallNet(hidden)


def build_with_unused() -> SmallNet:
    """The net with a module that its forward never calls."""
    model = SmallNet()
    model.unused = nn.Linear(3, 3)
    return model


def build_not_a_classifier() -> nn.Module:
    """A forward that returns (B, 2, 5), not logits (B, classes)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Unflatten(1, (2, 5)))


def build_perception_net():
    """F, C and D of one's own, for `perceptreg train --model`: an MLP on 28x28 digits."""
    from perceptreg.core.models import PerceptionNet

    return PerceptionNet(
        encoder=nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU()),
        classifier=nn.Linear(64, 10),
        decoder=nn.Sequential(nn.Linear(64, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28))),
        input_shape=(1, 28, 28))
