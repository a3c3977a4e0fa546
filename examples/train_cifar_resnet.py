"""Train examples/cifar_resnet.py's ResNet-14 on CIFAR-10, as any PyTorch user would: a plain
loop, SGD with a one-cycle learning rate, random crops and flips written by hand, and
`torch.save(model.state_dict(), "resnet.pt")` at the end of every epoch.

    python train_cifar_resnet.py memmap:folder/of/cifar10 --epochs 4

The images come from perceptreg's data API only because it reads CIFAR-10 in the forms we
keep (the canonical download, `cifar10`, or a memory-mapped copy, `memmap:FOLDER`, from
`perceptreg prepare`): `perceptreg.data.load_dataset` gives two torch Datasets of (image float
in [0, 1], label), which any DataLoader takes. ckpt.pt holds the
optimizer too: run the same command again and it resumes after the last finished epoch.
"""

import argparse
import os
import sys
import time

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

import perceptreg.data

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar_resnet import CIFAR_MEAN, CIFAR_STD, resnet14  # noqa: E402

MEAN, STD = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)


def augment(x):
    """Random horizontal flips and random 32x32 crops of the image padded by 4 zeros, per image."""
    n = len(x)
    x = torch.where(torch.rand(n, 1, 1, 1) < 0.5, x.flip(3), x)
    padded = F.pad(x, (4, 4, 4, 4))
    rows = torch.randint(0, 9, (n, 1)) + torch.arange(32)  # the crop's rows per image, (n, 32)
    cols = torch.randint(0, 9, (n, 1)) + torch.arange(32)
    return padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(3).view(1, 3, 1, 1),
                  rows.view(n, 1, 32, 1), cols.view(n, 1, 1, 32)]


@torch.no_grad()
def accuracy(model, loader):
    model.eval()
    right = total = 0
    for x, y in loader:
        right += (model((x - MEAN) / STD).argmax(1) == y).sum().item()
        total += len(y)
    return right / total


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("data", help="CIFAR-10 as a perceptreg dataset: cifar10, or memmap:FOLDER (meta.json, "
                                     "*_images.npy); a bare FOLDER is read as memmap:FOLDER")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.2)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    spec = f"memmap:{args.data}" if os.path.isdir(args.data) else args.data
    train_set, test_set = perceptreg.data.load_dataset(spec)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True)
    test_loader = DataLoader(test_set, batch_size=500)
    model = resnet14()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * len(train_loader))
    start = 0
    if os.path.exists("ckpt.pt"):  # resume after the last finished epoch
        ckpt = torch.load("ckpt.pt", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start = ckpt["epoch"]
        torch.set_rng_state(ckpt["rng"])
        print(f"resuming after epoch {start}", flush=True)

    for epoch in range(start, args.epochs):
        model.train()
        began, seen, loss_sum, right = time.time(), 0, 0.0, 0
        for step, (x, y) in enumerate(train_loader):
            logits = model((augment(x) - MEAN) / STD)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(y)
            loss_sum += loss.item() * len(y)
            right += (logits.argmax(1) == y).sum().item()
            if step % 50 == 0:
                print(f"epoch {epoch + 1} step {step}/{len(train_loader)} loss {loss.item():.3f} "
                      f"{seen / (time.time() - began):.0f} img/s", flush=True)
        train_time = time.time() - began
        test_acc = accuracy(model, test_loader)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {loss_sum / seen:.3f}, train accuracy {right / seen:.1%}, "
              f"test accuracy {test_acc:.1%}, {train_time:.0f} s training, {time.time() - began:.0f} s with the test",
              flush=True)
        torch.save(model.state_dict(), "resnet.pt")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "rng": torch.get_rng_state()}, "ckpt.pt")


if __name__ == "__main__":
    main()
