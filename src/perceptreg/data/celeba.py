"""CelebA aligned faces: the paper's balanced subsample, decoded once and cached."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perceptreg.core import checkpoint
from perceptreg.core.errors import PerceptregError
from perceptreg.data.dataset import ImageDataset

CELEBA_HELP = ("get the aligned-and-cropped CelebA (img_align_celeba.zip or the img_align_celeba/ folder, "
               "and list_attr_celeba.txt) from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html")


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """list_attr_celeba.txt: a count, the attribute names, then "file v1 v2 ..." with +-1.
    Returns (file names, attribute names, (N, A) bool)."""
    if not path.exists():
        raise PerceptregError(f"{path} is missing; {CELEBA_HELP}")
    lines = checkpoint.read_text(path).splitlines()
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
        return lambda name: checkpoint.guarded(folder / name, checkpoint.IMAGE_LIMIT, folder).read_bytes()
    if archive.exists():
        import zipfile
        handle = zipfile.ZipFile(archive)
        return lambda name: handle.read(f"img_align_celeba/{name}")
    raise PerceptregError(f"{root}: neither img_align_celeba/ nor img_align_celeba.zip is there; {CELEBA_HELP}")


def dcgan_crop(picture, size: int = 64):
    """Resize the shorter side to ``size``, then crop the centre ``size`` x ``size`` (DCGAN's CelebA)."""
    width, height = picture.size
    scale = size / min(width, height)
    picture = picture.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                             Image.Resampling.BILINEAR)
    left, top = (picture.size[0] - size) // 2, (picture.size[1] - size) // 2
    return picture.crop((left, top, left + size, top + size))


def load_celeba(root: str | Path, attribute: str = "Eyeglasses", train_size: int = 20000,
                test_size: int = 6386, seed: int = 0, size: int = 64,
                balance_on: str | None = "Eyeglasses") -> tuple[ImageDataset, ImageDataset]:
    """The paper's CelebA subsample, labelled with one binary ``attribute``.

    ``train_size`` and ``test_size`` faces, half with the attribute ``balance_on`` in each,
    drawn with ``seed``. The paper (its Fig. 16) draws one subsample balanced on Eyeglasses,
    20000 / 6386, which takes every one of CelebA's 13193 faces with glasses, and trains
    every attribute on it (Smiling is then 44.72 % positive, Male 59.6 %): the default.
    ``balance_on=None`` balances on ``attribute`` itself instead. CelebA's own train /
    validation / test partition is not used: the paper's subsample crosses it.
    Faces are DCGAN-cropped to ``size``; the other 39 attributes are kept for probes.
    The decoded tensors are cached in ``root``/perceptreg-cache, so JPEGs are decoded once.
    """
    root = Path(root)
    files, names, values = read_celeba_attributes(root / "list_attr_celeba.txt")
    balance_on = balance_on or attribute
    for name in {attribute, balance_on}:
        if name not in names:
            raise PerceptregError(f"unknown CelebA attribute {name!r}; choose one of {', '.join(names)}")
    column, balance = names.index(attribute), names.index(balance_on)
    cache = root / "perceptreg-cache" / f"celeba-{balance_on}-{train_size}-{test_size}-{seed}-{size}.safetensors"
    if cache.exists():
        tensors = checkpoint.load_tensors(cache)
    else:
        positive, negative = values[:, balance].nonzero().squeeze(1), (~values[:, balance]).nonzero().squeeze(1)
        half_train, half_test = train_size // 2, test_size // 2
        if len(positive) < half_train + half_test or len(negative) < half_train + half_test:
            raise PerceptregError(f"CelebA has {len(positive)} faces with {balance_on} and {len(negative)} "
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
