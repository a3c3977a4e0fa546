"""Memory-mapped datasets, larger than memory: ``perceptreg prepare`` writes them once,
training reads them batch by batch and hands the pages back (``ImageDataset.release_pages``)."""

from __future__ import annotations

import json
import mmap
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from perceptreg.core.errors import PerceptregError
from perceptreg.data.dataset import ImageDataset
from perceptreg.storage.fileio import guarded
from perceptreg.storage.schema import load_model_file

MEMMAP_FORMAT = "perceptreg.memmap/1"


class _Split(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=0)
    attributes: list[str]


class MemmapMeta(BaseModel):
    """meta.json of a memory-mapped dataset."""

    model_config = ConfigDict(extra="forbid")
    format: str = Field(pattern=f"^{MEMMAP_FORMAT}$")
    name: str
    classes: list[str] = Field(min_length=1)
    image_shape: tuple[int, int, int]
    pixel_mean: list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]]
    splits: dict[str, _Split]


def memmap_meta(root: Path) -> dict:
    """The validated meta.json of the dataset in ``root``."""
    meta = load_model_file(Path(root) / "meta.json", MemmapMeta,
                           "write the dataset again with `write_memmap` (perceptreg prepare)")
    if len(meta["pixel_mean"]) != meta["image_shape"][0]:
        raise PerceptregError(f"{Path(root) / 'meta.json'}: pixel_mean has {len(meta['pixel_mean'])} values for "
                              f"{meta['image_shape'][0]} channels; write the dataset again with `write_memmap` "
                              f"(perceptreg prepare)")
    missing = {"train", "test"} - meta["splits"].keys()
    if missing:
        raise PerceptregError(f"{Path(root) / 'meta.json'}: no {' or '.join(sorted(missing))} split; "
                              f"write the dataset again with `write_memmap` (perceptreg prepare)")
    return meta


def write_memmap(out_dir: str | Path, train: ImageDataset, test: ImageDataset, chunk: int = 4096) -> Path:
    """Write both splits as .npy files (uint8 images (N, C, H, W), int64 labels and
    attributes) plus meta.json, for ``load_memmap``. Written into a temporary folder that is
    renamed at the end, so a half-written dataset never looks complete."""

    out = Path(out_dir)
    if out.exists():
        raise PerceptregError(f"{out} exists; choose another output folder or remove it")
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
    guarded(path)  # a pipe or a device would block or map without end
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
    root = Path(root)
    meta = memmap_meta(root)
    shape = tuple(meta["image_shape"])

    def split(name: str) -> ImageDataset:
        count = meta["splits"][name]["count"]
        images = _open_npy(root / f"{name}_images.npy", (count, *shape), np.uint8)
        labels = _open_npy(root / f"{name}_labels.npy", (count,), np.int64)
        attributes = {a: torch.from_numpy(np.array(_open_npy(root / f"{name}_attribute_{a}.npy", (count,), np.int64)))
                      for a in meta["splits"][name]["attributes"]}

        def release() -> None:  # the pages stay in the page cache, cheap to read again
            images._mmap.madvise(mmap.MADV_DONTNEED)

        def check_size() -> None:  # reading a page past the end of a file cut short kills us (SIGBUS)
            path, needed = root / f"{name}_images.npy", images.offset + images.nbytes
            if images._mmap.size() < needed:  # fstat of the mapped file itself, even if renamed since
                raise PerceptregError(f"{path}: cut short while in use ({images._mmap.size()} of {needed} bytes); "
                                      f"write the dataset again with `perceptreg prepare`")

        with warnings.catch_warnings():  # read-only mapping: torch warns it cannot write to it
            warnings.simplefilter("ignore", UserWarning)
            tensor = torch.from_numpy(images)
        return ImageDataset(tensor, torch.from_numpy(np.array(labels)), tuple(meta["classes"]),
                            f"{meta['name']}-{name}", attributes, release,
                            torch.tensor(meta["pixel_mean"], dtype=torch.float32), check_size)

    return split("train"), split("test")


