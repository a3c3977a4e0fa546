"""Run folders of ``attach``: the user's model with decoders on its layers (the file names
and the checkpoint rules are those of ``runs``; this module adds how such a model is saved
and rebuilt from the user's file)."""

from __future__ import annotations

from pathlib import Path

import torch

from perceptreg import checkpoint, models, runs
from perceptreg import data as datasets
from perceptreg.attached import AttachedModel, attach
from perceptreg.config import AttachConfig
from perceptreg.errors import PerceptregError


def prepare_attached(run_dir: Path, config: AttachConfig) -> None:
    """Claim ``run_dir`` for an attach run; one that never finished (no model.json) starts over."""
    if (run_dir / runs.MODEL_META).exists():
        raise PerceptregError(f"{run_dir} already holds a run; choose another output folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / runs.METRICS).unlink(missing_ok=True)
    checkpoint.write_json(run_dir / runs.CONFIG, config.to_dict())


def save_attached(run_dir: Path, seen: AttachedModel, config: AttachConfig, classes: tuple[str, ...]) -> None:
    """The attached model (the user's weights, as fine-tuned in joint mode, and every decoder)
    and what rebuilds it: the config names the user's file, model.json the layers."""
    checkpoint.save_tensors(run_dir / runs.MODEL, seen.state_dict())
    runs.publish_model(run_dir, run_dir / runs.MODEL, {  # model.json last: an attach run is complete once it exists
        "format": runs.ATTACHED_FORMAT, "layers": list(seen.layers), "num_classes": seen.num_classes,
        "input_shape": list(seen.input_shape), "classes": list(classes), "dataset": config.dataset,
        "mode": config.mode, "activation_shapes": {k: list(v) for k, v in seen.activation_shapes.items()},
        "versions": runs.versions()}, datasets.digest_of(run_dir / runs.MODEL))


def load_attached(run_dir: str | Path, device: torch.device | str = "cpu") -> AttachedModel:
    """Rebuild an attach run's model from the user's file and its saved weights."""
    run_dir = Path(run_dir)
    config = runs.load_config(run_dir)
    meta = runs.model_meta(run_dir)
    seen = attach(models.build_from_file(config.model), config.layers, tuple(meta["input_shape"]),
                  normalize=config.normalize, seed=config.seed)
    path = runs.model_file(run_dir)
    checkpoint.load_weights(seen, checkpoint.load_tensors(path), path)
    seen.decoders_fitted()
    return seen.to(device).eval()
