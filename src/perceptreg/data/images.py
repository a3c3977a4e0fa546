"""Image files: the one decoder every image we read goes through, and ImageFolder trees.

``decode_image`` turns PNG/JPEG/... bytes or a file into uint8 (C, H, W) of a model's input
shape: converted to grayscale or RGB (transparency flattened onto black, the background of
the digit datasets), resized with Pillow's antialiasing bilinear filter, and for 1x28x28
models optionally fitted as MNIST's digits were (``fit_digit``). Training folders, ``--from-file``
edits and the explorer's uploads all use it, so one image is perceived the same everywhere.
"""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from perceptreg.core.errors import PerceptregError
from perceptreg.data.dataset import ImageDataset, check_memory, stratified_split
from perceptreg.storage.fileio import IMAGE_LIMIT, guarded

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# Larger images are refused before their pixels are decoded (Pillow's own bomb check
# only warns below twice its limit).
MAX_PIXELS = 4096 * 4096
DIGIT_SHAPE = (1, 28, 28)
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # Pillow's modes of one grey channel (LA: with alpha)


class ImageDecodeError(PerceptregError):
    """Bytes or a file that are not a readable image, or one too large to decode."""


class ImageTooLargeError(ImageDecodeError):
    """An image with more pixels than we decode."""


def decode_image(source: bytes | Path, image_shape: tuple[int, int, int], fit_digit: bool = False,
                 max_pixels: int = MAX_PIXELS) -> tuple[torch.Tensor, bool]:
    """One image as uint8 (C, H, W) of ``image_shape``, and whether it had to be resized."""
    name = str(source) if isinstance(source, Path) else "the image"
    channels, height, width = image_shape
    try:
        opened = guarded(source, IMAGE_LIMIT) if isinstance(source, Path) else io.BytesIO(source)
        with Image.open(opened) as picture:
            if picture.width * picture.height > max_pixels:
                raise ImageTooLargeError(f"{name} has {picture.width}x{picture.height} pixels; at most "
                                       f"{max_pixels} are read")
            picture = _flatten_alpha(picture).convert("L" if channels == 1 else "RGB")
            if fit_digit and image_shape == DIGIT_SHAPE:
                picture = as_mnist_digit(picture)
            resized = picture.size != (width, height)
            if resized:
                picture = picture.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(picture, dtype=np.uint8).reshape(height, width, channels)
    except ImageDecodeError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"{name} is not a readable image ({type(err).__name__}: {err})") from err
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous(), resized


def _flatten_alpha(picture: Image.Image) -> Image.Image:
    """Transparent pixels become paper that the ink stands out from: black under light ink
    (the datasets' own look), white under dark ink (black ink on transparent paper would
    otherwise vanish into black)."""
    if picture.mode in ("RGBA", "LA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64)
        ink = (np.asarray(rgba.convert("L"), dtype=np.float64) * alpha).sum() / max(alpha.sum(), 1.0)
        paper = (255, 255, 255, 255) if ink < 128 else (0, 0, 0, 255)
        return Image.alpha_composite(Image.new("RGBA", rgba.size, paper), rgba).convert("RGB")
    return picture


def as_mnist_digit(picture: Image.Image) -> Image.Image:
    """Prepare a digit as MNIST's were: light on dark, the ink's bounding box scaled to fit
    20x20, placed in 28x28 with its centre of mass at the centre."""
    pixels = np.asarray(picture.convert("L"), dtype=np.float32)
    if pixels.mean() > 127:  # dark ink on a light page: invert
        pixels = 255 - pixels
    ink = np.argwhere(pixels > 30)
    if len(ink) == 0:
        return Image.new("L", (28, 28), 0)
    (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
    crop = Image.fromarray(pixels[top:bottom, left:right].astype(np.uint8))
    scale = 20 / max(crop.size)
    crop = crop.resize((max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale))),
                       Image.Resampling.LANCZOS)
    weights = np.asarray(crop, dtype=np.float64)
    rows, cols = np.indices(weights.shape)
    mass = weights.sum() or 1.0
    centre_row, centre_col = (rows * weights).sum() / mass, (cols * weights).sum() / mass
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(crop, (int(round(14 - centre_col)), int(round(14 - centre_row))))
    return canvas


def load_image_files(path: str | Path, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """One image file, or every image file in a folder (sorted by name), as uint8
    (N, C, H, W) of ``image_shape``; digits for a 1x28x28 model are fitted as MNIST's."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise PerceptregError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return _read_images(files, image_shape, fit_digit=True)[0]


def _read_images(files: Sequence[Path], image_shape: tuple[int, int, int],
                 fit_digit: bool = False) -> tuple[torch.Tensor, int]:
    """The files as uint8 (N, C, H, W) of ``image_shape``, and how many had to be resized."""
    decoded = [decode_image(file, image_shape, fit_digit) for file in files]
    return torch.stack([image for image, _ in decoded]), sum(resized for _, resized in decoded)


def scan(read: Callable) -> Callable:
    """``read(root, ...)``, a function that walks the folder tree ``root``, with a file or
    folder that vanished during the walk (a tree that changes under it, /proc) said as one
    error naming the tree, not as the OSError of the one file."""
    @functools.wraps(read)
    def scanned(root, *args, **kwargs):
        try:
            return read(root, *args, **kwargs)
        except (FileNotFoundError, NotADirectoryError) as err:
            raise PerceptregError(f"{root}: {err.filename} vanished while the folder was read (it changes under "
                                  f"us); give a folder of images that stays as it is") from err
    return scanned


@scan
def load_image_folder(root: str | Path, image_shape: tuple[int, int, int], seed: int = 0,
                      test_fraction: float = 0.2) -> tuple[ImageDataset, ImageDataset]:
    """An ImageFolder-style tree, root/<class>/<image>, for users' own data.

    With root/train/ and root/test/ the split is theirs; otherwise a stratified seeded one.
    Images are converted and resized to ``image_shape`` (with a warning when any needs it).
    """
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


@scan
def image_folder_shape(root: str | Path) -> tuple[int, int, int]:
    """The shape the images of a folder tree (as ``load_image_folder`` reads it) share:
    (1, H, W) when every image is grey, else (3, H, W). Reads the files' headers only.
    Images of several sizes are an error: which size to train at is the user's choice."""
    root = Path(root)
    splits = [root / "train", root / "test"] if (root / "train").is_dir() and (root / "test").is_dir() else [root]
    if not all(split.is_dir() for split in splits):
        raise PerceptregError(f"{root}: not a folder; expected root/<class>/<image files>")
    first: dict[tuple[int, int], Path] = {}  # size -> the first file of that size
    grey = True
    for split in splits:
        for folder, files in class_folders(split):
            for file in files:
                size, mode = image_header(file)
                grey = grey and mode in GREY_MODES
                first.setdefault(size, file)
                if len(first) > 1:
                    (a, a_file), (b, b_file) = first.items()
                    raise PerceptregError(
                        f"{root}: images of several sizes ({a_file} is {a[0]}x{a[1]}, {b_file} is {b[0]}x{b[1]}); "
                        f"give `arch` to resize them all to its input, or resize them to one size first")
    if not first:
        raise PerceptregError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in its class folders; "
                              f"expected root/<class>/<image files>")
    (width, height), = first
    return (1 if grey else 3, height, width)


def image_header(file: Path) -> tuple[tuple[int, int], str]:
    """An image file's (width, height) and Pillow mode, from its header alone; ``guarded``
    (a FIFO would block the probe), and at most MAX_PIXELS."""
    try:
        with Image.open(guarded(file, IMAGE_LIMIT)) as picture:
            size, mode = picture.size, picture.mode
    except PerceptregError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"{file} is not a readable image ({type(err).__name__}: {err})") from err
    if size[0] * size[1] > MAX_PIXELS:
        raise ImageTooLargeError(f"{file} has {size[0]}x{size[1]} pixels; at most {MAX_PIXELS} are read")
    return size, mode


def class_folders(root: Path) -> list[tuple[Path, list[Path]]]:
    """root/<class>/ folders by name, each with its image files by name. A class folder
    with no images (a class no image teaches), or one that is a link out of ``root`` (a
    tree that is not what it looks like), is refused, naming it."""
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        listed = [(folder, sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
                  for folder in folders]
    except OSError as err:  # unreadable, or removed while we looked
        raise PerceptregError(f"{root}: cannot be listed ({err.strerror or err}); expected "
                              f"root/<class>/<image files>") from None
    inside = root.resolve()
    for folder, files in listed:
        if not folder.resolve().is_relative_to(inside):
            raise PerceptregError(f"{folder}: a class folder that links out of {root} (to {folder.resolve()}); "
                                  f"copy the images into {root}, or remove the link")
        if not files:
            raise PerceptregError(f"{folder}: a class folder with no image files ({', '.join(IMAGE_SUFFIXES)}); "
                                  f"put its images there, or remove the folder")
    return listed


def load_image_folder_split(root: Path, image_shape: tuple[int, int, int],
                            classes: Sequence[str] | None = None) -> ImageDataset:
    if not root.is_dir():
        raise PerceptregError(f"{root}: not a folder; expected root/<class>/<image files>")
    folders = class_folders(root)
    defines_classes = classes is None  # a test split may lack some of the training classes
    classes = tuple(classes) if classes is not None else tuple(folder.name for folder, _ in folders)
    check_memory(sum(len(files) for _, files in folders), image_shape, str(root))
    images, labels, resized = [], [], 0
    for folder, files in folders:
        if folder.name not in classes:
            raise PerceptregError(f"{folder}: class {folder.name!r} is not among the training classes {classes}")
        tensor, count = _read_images(files, image_shape)
        images.append(tensor)
        resized += count
        labels += [classes.index(folder.name)] * len(files)
    if not images:
        raise PerceptregError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in its class folders; "
                              f"expected root/<class>/<image files>")
    present = sorted({classes[label] for label in set(labels)})
    if defines_classes and len(present) < 2:  # one class is 100 % accuracy and says nothing
        raise PerceptregError(f"{root}: images of {len(present)} class(es) ({', '.join(present)}); a classifier "
                              f"needs at least 2, each in its own folder root/<class>/<image files>")
    if resized:
        warnings.warn(f"{root}: {resized} image(s) resized to {image_shape[2]}x{image_shape[1]}", stacklevel=3)
    return ImageDataset(torch.cat(images), torch.tensor(labels), classes, root.name)
