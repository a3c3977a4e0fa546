"""examples/train_cifar_resnet.py, the plain PyTorch loop REPRODUCING.md's ResNet steps run: on a
perceptreg dataset spec (or a bare memmap folder), saving resnet.pt each epoch; run again, it
resumes after the last finished epoch, so a finished training is left as it is."""

import runpy
from pathlib import Path

import pytest
import torch

from perceptreg import data
from perceptreg.data.dataset import ImageDataset

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_cifar_resnet.py"


@pytest.fixture
def tiny_cifar(tmp_path):
    """A memmap CIFAR-10-shaped dataset: 256 training and 100 test 32x32 colour images."""
    generator = torch.Generator().manual_seed(0)

    def split(n: int, name: str) -> ImageDataset:
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
        return ImageDataset(images, torch.arange(n) % 10, tuple(str(c) for c in range(10)), name)
    return data.write_memmap(tmp_path / "cifar", split(256, "tiny-train"), split(100, "tiny-test"))


def test_it_trains_on_a_spec_and_a_second_run_resumes_with_nothing_left(tiny_cifar, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    main = runpy.run_path(str(SCRIPT))["main"]
    main([f"memmap:{tiny_cifar}", "--epochs", "1", "--batch-size", "128"])
    first = torch.load("resnet.pt", weights_only=True)
    assert torch.load("ckpt.pt", weights_only=True)["epoch"] == 1 and "epoch 1/1: train loss" in capsys.readouterr().out
    main([str(tiny_cifar), "--epochs", "1", "--batch-size", "128"])  # a bare folder; nothing left to train
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert all(torch.equal(first[k], v) for k, v in torch.load("resnet.pt", weights_only=True).items())
