"""A CIFAR-style ResNet (He et al. 2016, section 4.2), in plain PyTorch: the kind of model a
user brings to `perceptreg attach`. Nothing here knows about perceptreg.

    32x32x3 -> conv1 16x32x32 -> layer1 16x32x32 -> layer2 32x16x16 -> layer3 64x8x8
            -> avgpool 64x1x1 -> fc 10 logits

It expects inputs normalized with the CIFAR-10 mean and std (CIFAR_MEAN, CIFAR_STD), as
most CIFAR training scripts feed them.
"""

import torch
from torch import nn
from torch.nn import functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:  # 1x1 projection when the shape changes
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks=(3, 3, 3), widths=(16, 32, 64), num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, in_planes = [], widths[0]
        for i, (n, planes) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(in_planes if j == 0 else planes, planes, stride if j == 0 else 1)
                                          for j in range(n)]))
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(self.avgpool(out), 1))


def resnet14(num_classes=10):
    """ResNet-14: 3 stages of 2 basic blocks, 16/32/64 channels, 0.18M parameters."""
    return CifarResNet((2, 2, 2), (16, 32, 64), num_classes)


def resnet20(num_classes=10):
    """ResNet-20: 3 stages of 3 basic blocks, 16/32/64 channels, 0.27M parameters."""
    return CifarResNet((3, 3, 3), (16, 32, 64), num_classes)
