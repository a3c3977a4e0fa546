"""CelebA aligned faces: the paper's balanced subsample, decoded once and cached."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perceptreg.core.errors import PerceptregError
from perceptreg.data.dataset import ImageDataset
from perceptreg.storage import fileio

CELEBA_HELP = ("get the aligned-and-cropped CelebA (img_align_celeba.zip or the img_align_celeba/ folder, "
               "and list_attr_celeba.txt and identity_CelebA.txt from its Anno folder) from "
               "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html")
IDENTITY_FILE = "identity_CelebA.txt"  # "000001.jpg 2880": the person in each face


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """list_attr_celeba.txt: a count, the attribute names, then "file v1 v2 ..." with +-1.
    Returns (file names, attribute names, (N, A) bool)."""
    if not path.exists():
        raise PerceptregError(f"{path} is missing; {CELEBA_HELP}")
    lines = fileio.read_text(path).splitlines()
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


def read_celeba_identities(path: Path, files: list[str]) -> torch.Tensor:
    """identity_CelebA.txt: "file identity" per line. Returns the identity of each of ``files``
    (the attribute file's order), (N,) long."""
    if not path.exists():
        raise PerceptregError(f"{path} is missing; CelebA is split by identity, so that no person is in both "
                              f"train and test; {CELEBA_HELP}")
    try:
        person = {name: int(identity) for name, identity in (line.split() for line in fileio.read_text(path).splitlines()
                                                              if line.strip())}
        return torch.tensor([person[name] for name in files])
    except ValueError as err:
        raise PerceptregError(f"{path}: not in CelebA's identity format, \"file identity\" per line ({err})") from None
    except KeyError as err:
        raise PerceptregError(f"{path}: no identity for {err.args[0]}; the file is partial, download it again") from None


def split_by_identity(identities: torch.Tensor, positive: torch.Tensor, test_positives: int,
                      test_negatives: int, generator: torch.Generator) -> torch.Tensor:
    """Which faces go to the test side (N,) bool, whole identities at a time: identities in a
    seeded random order join the test side while their faces with the attribute (``positive``)
    still fit in ``test_positives``, until it holds exactly that many and at least
    ``test_negatives`` without. Exactly: the paper's subsample uses every face with glasses,
    so each one the test side takes beyond its share would be missing from train. An identity
    with more positives than are still wanted stays on the train side."""
    people, person = torch.unique(identities, return_inverse=True)
    positives = torch.bincount(person, weights=positive.double(), minlength=len(people)).long().tolist()
    negatives = torch.bincount(person, weights=(~positive).double(), minlength=len(people)).long().tolist()
    on_test = torch.zeros(len(people), dtype=torch.bool)
    wanted, held = test_positives, 0
    for i in torch.randperm(len(people), generator=generator).tolist():  # once per dataset, then cached
        if wanted == 0 and held >= test_negatives:
            break
        if positives[i] <= wanted:
            on_test[i], wanted, held = True, wanted - positives[i], held + negatives[i]
    return on_test[person]


def _celeba_image_reader(root: Path):
    folder, archive = root / "img_align_celeba", root / "img_align_celeba.zip"
    if folder.is_dir():
        return lambda name: fileio.guarded(folder / name, fileio.IMAGE_LIMIT, folder).read_bytes()
    if archive.exists():
        import zipfile
        handle = zipfile.ZipFile(fileio.guarded(archive))
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
    validation / test partition is not used: the paper's subsample crosses it. The split is
    by identity (identity_CelebA.txt, ``split_by_identity``): no person is in both train and
    test, so the test measures faces the model has not seen, not people it has.
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
    identities = read_celeba_identities(root / IDENTITY_FILE, files)
    cache = root / "perceptreg-cache" / f"celeba-{balance_on}-{train_size}-{test_size}-{seed}-{size}-by-identity.safetensors"
    if cache.exists():
        tensors = fileio.load_tensors(cache)
    else:
        picked = _balanced_split(identities, values[:, balance], balance_on, train_size, test_size, seed)
        read = _celeba_image_reader(root)
        tensors = {}
        for split, index in picked.items():
            tensors[f"{split}.images"] = _decoded_faces(root, read, [files[i] for i in index.tolist()], size)
            tensors[f"{split}.attributes"] = values[index].to(torch.uint8)
        cache.parent.mkdir(parents=True, exist_ok=True)
        fileio.save_tensors(cache, tensors)

    def split(part: str) -> ImageDataset:
        attrs = tensors[f"{part}.attributes"].long()
        others = {n: attrs[:, i] for i, n in enumerate(names) if i != column}
        return ImageDataset(tensors[f"{part}.images"], attrs[:, column], (f"no {attribute}", attribute),
                            f"celeba-{attribute}-{part}", others)

    return split("train"), split("test")


def _balanced_split(identities, has: torch.Tensor, balance_on: str, train_size: int, test_size: int,
                    seed: int) -> dict[str, torch.Tensor]:
    """Indices of the train and test faces, half of each with ``has``, no identity in both."""
    half_train, half_test = train_size // 2, test_size // 2
    if int(has.sum()) < half_train + half_test or int((~has).sum()) < half_train + half_test:
        raise PerceptregError(f"CelebA has {int(has.sum())} faces with {balance_on} and {int((~has).sum())} "
                              f"without; a balanced {train_size} / {test_size} split needs "
                              f"{half_train + half_test} of each (choose smaller sizes)")
    generator = torch.Generator().manual_seed(seed)
    on_test = split_by_identity(identities, has, half_test, half_test, generator)
    picked = {}
    for split, side, half in (("train", ~on_test, half_train), ("test", on_test, half_test)):
        pools = [(side & has).nonzero().squeeze(1), (side & ~has).nonzero().squeeze(1)]
        if min(len(pool) for pool in pools) < half:
            raise PerceptregError(f"CelebA split by identity leaves {split} {len(pools[0])} faces with "
                                  f"{balance_on} and {len(pools[1])} without; it needs {half} of each "
                                  f"(choose smaller sizes)")
        picked[split] = torch.cat([pool[torch.randperm(len(pool), generator=generator)[:half]] for pool in pools])
    return picked


def _decoded_faces(root: Path, read, names: list[str], size: int) -> torch.Tensor:
    """The faces ``names``, DCGAN-cropped to ``size``, as one uint8 tensor (N, 3, size, size)."""
    faces = []
    for name in names:
        try:
            with Image.open(io.BytesIO(read(name))) as picture:
                faces.append(np.asarray(dcgan_crop(picture.convert("RGB"), size)))
        except (KeyError, FileNotFoundError) as err:
            raise PerceptregError(f"{root}: image {name} is missing ({err}); the image folder or "
                                  f"zip is partial, {CELEBA_HELP}") from err
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # UnidentifiedImageError too
            raise PerceptregError(f"{root}: image {name} is not a readable image ({type(err).__name__}: {err}); "
                                  f"{CELEBA_HELP}") from err
    return torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).contiguous()
