"""Tiny models and datasets whose numbers can be worked out by hand, shared by the tests."""

import torch
from torch import nn

from perceptreg import data, models


def tiny_dataset():
    # 4 images of 1x1x2: pixel values 0 or 255, labels 0/1
    images = torch.tensor([[0, 255], [255, 0], [255, 255], [0, 0]], dtype=torch.uint8).reshape(4, 1, 1, 2)
    return data.ImageDataset(images, torch.tensor([0, 1, 0, 0]), ("a", "b"), "tiny")


def net_with_decoder(decoder):
    # z = the two pixels; C says "b" when the first pixel is bright
    classifier = nn.Linear(2, 2)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        classifier.bias.copy_(torch.tensor([0.5, -0.5]))
    return models.PerceptionNet(nn.Flatten(), classifier, decoder, (1, 1, 2))



def linear_perception_net(decoder):
    net = net_with_decoder(decoder)
    with torch.no_grad():
        net.classifier.weight.copy_(torch.eye(2))
        net.classifier.bias.zero_()
    return net  # logits = the two pixels


def reference_set():
    # 1x1x2 images; class 0 brighter on the left (as the linear nets read), class 1 on the right
    pixels = torch.tensor([[0, 255], [10, 245], [255, 0], [245, 10], [128, 128]], dtype=torch.uint8)
    return data.ImageDataset(pixels.reshape(5, 1, 1, 2), torch.tensor([1, 1, 0, 0, 0]), ("a", "b"), "ref")


def pixels(rows, labels):
    images = torch.tensor(rows).mul(255).round().to(torch.uint8).reshape(-1, 1, 1, 2)
    return data.ImageDataset(images, torch.tensor(labels), ("a", "b"), "tiny")
