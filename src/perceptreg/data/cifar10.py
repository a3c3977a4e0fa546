"""CIFAR-10 from its canonical binary version (no pickle): ``cifar-10-binary.tar.gz``.

Each of ``data_batch_1.bin`` .. ``data_batch_5.bin`` (training) and ``test_batch.bin``
holds fixed-size records: 1 label byte, then 3072 pixel bytes (the red, green and blue
32x32 planes, rows top to bottom); ``batches.meta.txt`` names the classes, one a line.

- ``load_cifar10(root)``: the 50000 / 10000 split from an existing copy in ``root``: the
  archive, the extracted ``cifar-10-batches-bin`` folder, or that folder itself;
- ``load_cifar10(root, download_missing=True)``: the same, downloading the archive into
  ``root`` first (resumable, MD5-checked) and extracting it there once.

Each batch file, from the archive or a folder, is checked against its SHA-256
(``BATCH_SHA256``) and the class names against CIFAR-10's (``CLASSES``): random bytes in the
right layout are refused, as is an extracted folder edited since. Toronto publishes only the
archive's MD5; the per-file digests of the binary version are those torchvision-ruby checks
(ankane/torchvision-ruby, lib/torchvision/datasets/cifar10.rb; torchvision's own per-file
MD5s are of the Python version's pickles, which we do not read). Tests, whose fixtures are
a few records per batch, set ``BATCH_SHA256`` to their fixtures' digests
(tests/data/test_cifar10.py), as they set ``CIFAR10_MD5`` to their archive's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from perceptreg.core.errors import PerceptregError
from perceptreg.data.dataset import ImageDataset
from perceptreg.data.download import digest_of, download
from perceptreg.storage import fileio

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # the published one: only an MD5 is given
ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"  # the archive's one folder
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
BATCH_SHA256 = {
    "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FILES = (*TRAIN_FILES, TEST_FILE, META_FILE)
SHAPE = (3, 32, 32)
RECORD = 1 + 3 * 32 * 32  # label byte + pixel bytes
NUM_CLASSES = 10
BATCH_LIMIT = 32 * 2**20  # a batch file is 30,730,000 bytes; a larger one is not CIFAR-10's


def load_cifar10(root: str | Path, download_missing: bool = False) -> tuple[ImageDataset, ImageDataset]:
    """CIFAR-10's training records (50000) and test records (10000) from the copy in ``root``.

    ``root`` may be the archive, a folder holding it or the extracted ``cifar-10-batches-bin``
    folder, or that folder itself. With ``download_missing`` (the data cache), a folder
    without either gets the archive downloaded and extracted into it; otherwise that is an
    error that says what to put there.
    """
    root = Path(root).expanduser()
    folder = _extracted_folder(root)
    if folder is not None:
        return _datasets({name: fileio.guarded(folder / name, BATCH_LIMIT).read_bytes() for name in FILES}, folder)
    archive = root if root.is_file() else root / ARCHIVE
    if not archive.is_file():
        if not download_missing:
            raise PerceptregError(
                f"{root}: no CIFAR-10 batch files ({', '.join(FILES)}) and no {ARCHIVE}; put the archive "
                f"(from {CIFAR10_URL}) or its extracted {FOLDER} folder there, or leave out `data_root` "
                f"to download it into the data cache")
        download([CIFAR10_URL], archive, f"md5:{CIFAR10_MD5}", timeout=60)
    contents = read_archive(archive)
    splits = _datasets(contents, Path(f"{archive}:{FOLDER}"))  # checked before anything is written
    if download_missing:  # the data cache: extract once, so later runs skip the decompression
        _write_folder(archive.parent / FOLDER, contents)
    return splits


def _extracted_folder(root: Path) -> Path | None:
    """The folder with the batch files: ``root``/cifar-10-batches-bin or ``root`` itself;
    None when neither holds any. A folder with some of them but not all is an error. A name
    that is there but no regular file (a FIFO, a folder, a link to /dev/zero) counts as
    there: reading it says what it is."""
    for folder in (root / FOLDER, root):
        present = [name for name in FILES if os.path.lexists(folder / name)]
        if len(present) == len(FILES):
            return folder
        if present:
            missing = [name for name in FILES if name not in present]
            raise PerceptregError(f"{folder}: {', '.join(missing)} missing; extract {ARCHIVE} "
                                  f"(from {CIFAR10_URL}) there again, or delete the folder to download it anew")
    return None


def read_archive(archive: Path) -> dict[str, bytes]:
    """The batch files in ``archive``, by name, after checking its published MD5."""
    redo = f"delete {archive} and download it again from {CIFAR10_URL}"
    contents = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # read by name only: nothing in the archive chooses a path
                name = member.name.removeprefix(f"{FOLDER}/")
                if name in FILES and member.isfile():
                    contents[name] = tar.extractfile(member).read()
            while tar.fileobj.read(1 << 20):  # to the end: gzip checks its length and CRC only there
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise PerceptregError(f"{archive}: truncated or corrupt archive ({type(err).__name__}: {err}); {redo}") from err
    md5 = digest_of(archive, "md5")
    if md5 != CIFAR10_MD5:
        raise PerceptregError(f"{archive}: MD5 {md5} is not the published {CIFAR10_MD5} (a damaged or "
                              f"another file); {redo}")
    missing = [name for name in FILES if name not in contents]
    if missing:
        raise PerceptregError(f"{archive}: no {FOLDER}/{', '.join(missing)} in the archive; {redo}")
    return contents


def read_records(raw: bytes, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file's records as uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    redo = f"it is truncated or not CIFAR-10's binary version: replace it with a fresh copy from {CIFAR10_URL}"
    if not raw or len(raw) % RECORD:
        raise PerceptregError(f"{where}: {len(raw)} bytes is not a whole number of {RECORD}-byte records "
                              f"(1 label byte, 3072 pixel bytes); {redo}")
    records = np.frombuffer(raw, np.uint8).reshape(-1, RECORD)  # (N, 3073)
    labels = records[:, 0]
    if labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise PerceptregError(f"{where}: record {bad} has label {labels[bad]}; labels lie in 0..9, so the "
                              f"records are not {RECORD} bytes each; {redo}")
    images = torch.from_numpy(records[:, 1:].copy()).view(-1, *SHAPE)  # planes R, G, B: (N, 3, 32, 32)
    return images, torch.from_numpy(labels.astype(np.int64))


def read_classes(raw: bytes, where: str) -> tuple[str, ...]:
    names = tuple(line.strip() for line in raw.decode("ascii", "replace").splitlines() if line.strip())
    if len(names) != NUM_CLASSES:
        raise PerceptregError(f"{where}: {len(names)} class names, CIFAR-10 has {NUM_CLASSES} (one a line); "
                              f"replace it with a fresh copy from {CIFAR10_URL}")
    if names != CLASSES:
        raise PerceptregError(f"{where}: class names {', '.join(names)}, not CIFAR-10's {', '.join(CLASSES)}; "
                              f"replace it with a fresh copy from {CIFAR10_URL}")
    return names


def check_digest(raw: bytes, name: str, where: str) -> None:
    """A batch file's bytes against its published SHA-256 (module docstring)."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != BATCH_SHA256[name]:
        raise PerceptregError(f"{where}: SHA-256 {digest} is not CIFAR-10's {BATCH_SHA256[name]} (a damaged, "
                              f"edited or another file); replace it with a fresh copy from {CIFAR10_URL}")


def _datasets(contents: dict[str, bytes], where: Path) -> tuple[ImageDataset, ImageDataset]:
    classes = read_classes(contents[META_FILE], str(where / META_FILE))
    parts = [_batch(contents[name], name, where) for name in TRAIN_FILES]
    test_images, test_labels = _batch(contents[TEST_FILE], TEST_FILE, where)
    train = ImageDataset(torch.cat([i for i, _ in parts]), torch.cat([l for _, l in parts]), classes, "cifar10-train")
    return train, ImageDataset(test_images, test_labels, classes, "cifar10-test")


def _batch(raw: bytes, name: str, where: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file's records, its layout checked first (the clearer error), then its bytes."""
    records = read_records(raw, str(where / name))
    check_digest(raw, name, str(where / name))
    return records


def _write_folder(folder: Path, contents: dict[str, bytes]) -> None:
    """The batch files into ``folder``, written under a temporary name and renamed when
    complete: a killed extraction leaves no folder that looks whole."""
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name in FILES:
            (staging / name).write_bytes(contents[name])
        os.rename(staging, folder)
    except OSError:  # another process extracted it first, or the disk is full: reading worked anyway
        shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

