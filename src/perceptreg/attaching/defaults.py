"""attach's sizes by dataset: an AttachConfig whose epochs, training and evaluation sizes
are the dataset's where the user gives none (``data.registry.attach_sizes``): on digits the
full measure, on natural images a first look (``registry.FIRST_LOOK_ATTACH``)."""

from __future__ import annotations

from perceptreg.core.config import AttachConfig
from perceptreg.data import registry

SIZES = ("epochs", "train_size", "eval_size")  # of AttachConfig; attack_images is run_attach's


def attach_config(**given) -> AttachConfig:
    """``AttachConfig(**given)`` with ``epochs``, ``train_size`` and ``eval_size`` the dataset's
    (``registry.attach_sizes``) where not given or None; ``train_size`` 0 is the whole
    training split (the default on digits), as ``eval_size`` 0 is the whole test split."""
    dataset = given.get("dataset") or AttachConfig.dataset
    sizes = registry.attach_sizes(dataset, _channels(dataset, given.get("input_shape")))
    chosen = {**{k: sizes[k] for k in SIZES}, **{k: v for k, v in given.items() if v is not None}}
    if chosen["train_size"] == 0:
        chosen["train_size"] = None
    return AttachConfig(**chosen)


def attack_images_for(dataset: str, channels: int) -> int:
    """How many test images attach attacks where the user gives no number."""
    return registry.attach_sizes(dataset, channels)["attack_images"]


def _channels(dataset: str, input_shape) -> int:
    return input_shape[0] if input_shape else registry.image_channels(dataset)


def work_line(config: AttachConfig, train_images: int, scored_images: int, attack_images: int, channels: int) -> str:
    """What the run will do, said before it starts, and on natural images how to refine a first look."""
    line = (f"the work: {config.epochs} epoch{'s' * (config.epochs != 1)} of the decoders on {train_images:,} "
            f"training images, each scored on {scored_images:,} test images; then {attack_images:,} test images "
            f"attacked")
    full = registry.FULL_ATTACH
    if registry.natural_images(config.dataset, channels) and (
            config.epochs < full["epochs"] or attack_images < full["attack_images"] or config.train_size):
        line += (f". A first look: refine it with `epochs` {full['epochs']}, `train_size` 0 (all), `eval_size` 0 "
                 f"(all), `attack_images` {full['attack_images']}")
    return line
