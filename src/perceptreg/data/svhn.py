"""SVHN cropped digits from its .mat files (downloaded from ufldl.stanford.edu)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from perceptreg.core.errors import PerceptregError
from perceptreg.data.dataset import DIGITS, ImageDataset
from perceptreg.data.download import download

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
# Only MD5 digests are published for these files (torchvision and others check the same).
SVHN_FILES = {"train_32x32.mat": "md5:e26dedcc434d2e4c54c9b2d4a06d8373",
              "test_32x32.mat": "md5:eb5a983be6a315427106f1b164d9cef3"}


def read_svhn_mat(path: str | Path, name: str) -> ImageDataset:
    """One SVHN cropped-digits .mat file: X (32, 32, 3, N) uint8, y (N, 1) with 10 for digit 0."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        content = loadmat(path)
    except (OSError, ValueError, TypeError, EOFError, IndexError, KeyError) as err:  # scipy's parse errors
        raise PerceptregError(f"{path}: not a readable .mat file ({err}); download it again") from err
    missing = [k for k in ("X", "y") if k not in content]
    if missing:
        found = sorted(k for k in content if not k.startswith("__"))
        raise PerceptregError(f"{path}: no {' or '.join(missing)} array (found {found}); "
                              f"expected SVHN's cropped-digit format with X and y")
    images, labels = content["X"], content["y"].reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise PerceptregError(f"{path}: X must be uint8 of shape (32, 32, 3, N), found {images.dtype} {images.shape}")
    if images.shape[3] != len(labels):
        raise PerceptregError(f"{path}: {images.shape[3]} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        raise PerceptregError(f"{path}: labels must lie in 1..10 (10 is digit 0), found {labels.min()}..{labels.max()}")
    tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))  # (N, 3, 32, 32)
    return ImageDataset(tensor, torch.from_numpy((labels % 10).astype(np.int64)), DIGITS, name)


def load_svhn(root: str | Path, download_missing: bool = True) -> tuple[ImageDataset, ImageDataset]:
    """SVHN cropped digits (73257 train / 26032 test) from ``root``, downloaded if missing."""
    root = Path(root)
    for name, checksum in SVHN_FILES.items():
        if not (root / name).exists():
            if not download_missing:
                raise PerceptregError(f"{root / name} is missing; get it from {SVHN_URL}{name}")
            download([SVHN_URL + name], root / name, checksum, timeout=60)
    return read_svhn_mat(root / "train_32x32.mat", "svhn-train"), read_svhn_mat(root / "test_32x32.mat", "svhn-test")
