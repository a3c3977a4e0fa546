"""The training schedule: what each epoch of a ``TrainConfig`` trains, in batches of what
size, at what learning rate. ``train`` and ``train_ensemble`` follow it epoch by epoch.

    for group in optimizer.param_groups:
        group["lr"] = schedule.lr_at(config, epoch)
"""

from __future__ import annotations

from perceptreg.core.config import TrainConfig


def phase(config: TrainConfig, epoch: int) -> str:
    """What epoch ``epoch`` (1-based) trains: "joint", "classifier" or "decoder"."""
    if config.mode == "joint":
        return "joint"
    return "classifier" if epoch <= config.classifier_epochs else "decoder"


def batch_size_at(config: TrainConfig, epoch: int) -> int:
    if phase(config, epoch) == "decoder" and config.decoder_batch_size:
        return config.decoder_batch_size
    return config.batch_size


def lr_at(config: TrainConfig, epoch: int) -> float:
    first = 1 if phase(config, epoch) != "decoder" else config.classifier_epochs + 1
    dropped = bool(config.lr_drop_epoch) and epoch - first >= config.lr_drop_epoch
    return config.lr * (config.lr_drop_factor if dropped else 1.0)
