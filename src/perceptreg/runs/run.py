"""A run folder opened once: its config, checkpoint manifest, model metadata and metrics,
read and validated together, handed to every command that looks at the run.

    run = perceptreg.open_run("runs/demo")
    model = run.model()                # the trained model (of an attach run: its deepest layer)
    train_data, test_data = run.data()  # what it was trained and evaluated on
    run.metrics[-1]["test_accuracy"], run.kind  # "trained" or "attached"

Two kinds of run share one folder layout (``runs.files``): a run of `train` holds a
PerceptionNet; a run of `attach` holds a user's model with decoders on its layers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from pydantic import BaseModel

from perceptreg import data as datasets
from perceptreg.core import models
from perceptreg.core.attached import AttachedModel, attach
from perceptreg.core.config import AttachConfig, TrainConfig
from perceptreg.core.devices import resolve_device
from perceptreg.core.errors import PerceptregError
from perceptreg.runs import files, manifest, sources, user_models
from perceptreg.storage import fileio
from perceptreg.storage.fileio import CheckpointError
from perceptreg.storage.schema import load_sealed_file

READ_ATTEMPTS = 3  # state.json read again this often when a training run commits under a reader


class Run:
    """A run folder as read when it was opened; ``kind`` says what it holds."""

    kind = "run"

    def __init__(self, path: Path, config: TrainConfig | AttachConfig, state: dict | None,
                 meta: dict | None, metrics: list[dict]):
        self.path, self.config, self.state, self.meta = path, config, state, meta
        self.metrics = tuple(metrics)
        self._data = None
        self._results: dict[str, dict] = {}  # results files other commands wrote, read once

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, epochs={self.completed_epochs})"

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def completed_epochs(self) -> int:
        """The last epoch whose checkpoint was written (0 if none)."""
        return self.state["epoch"] if self.state is not None else 0

    @property
    def decoder_collapsed(self) -> bool:
        """Whether the run's final model was flagged with a collapsed decoder."""
        return bool(self.meta and (self.meta.get("metrics") or {}).get("decoder_collapsed"))

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self._model_meta()["classes"])

    @property
    def num_classes(self) -> int:
        return int(self._model_meta()["num_classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self._model_meta()["input_shape"])

    def data(self) -> tuple[datasets.ImageDataset, datasets.ImageDataset]:
        """The (train, test) data the run was trained and evaluated on; loaded once."""
        if self._data is None:
            shape = tuple(self.meta["input_shape"]) if self.meta is not None else None
            self._data = datasets.load_dataset(self.config.dataset, self.config.data_root, shape)
        return self._data

    def output_layer(self, layer: str | None = None) -> str | None:
        """The layer that a command's output files (``files.for_layer``) and figure titles
        name, given its ``--layer``: of a run of `attach`, ``layer`` or the deepest; of a run
        of `train` None (its one latent z)."""
        return None

    def has(self, name: str) -> bool:
        """Whether the run folder holds the file ``name`` (one of ``runs.files``' names)."""
        return os.path.lexists(self.path / name)  # a link to nowhere is there, to be read and named

    def read_json(self, name: str, schema: type[BaseModel], fix: str) -> dict:
        """The results file ``name`` (written by a command into the run folder, sealed),
        validated by ``schema`` (a ``storage.schema.Sealed``) and its seal; read once per run object."""
        if name not in self._results:
            self._results[name] = load_sealed_file(self.path / name, schema, fix)
        return self._results[name]

    def weights_file(self) -> Path:
        """The model's weights, checked against their recorded SHA-256."""
        self._model_meta()
        return self._weights()[0]

    def _weights(self) -> tuple[Path, dict[str, torch.Tensor]]:
        """The committed model's file and tensors. A run still training may commit an epoch
        (and remove the previous one's files) between our reading state.json and the file:
        then state.json is read again, so a reader always gets the last complete epoch.
        The caller has checked that there is a model (``_model_meta``)."""
        for attempt in range(READ_ATTEMPTS):
            try:
                path = manifest.model_file(self.path, self.state, self.meta)
                return path, fileio.load_tensors(path)
            except CheckpointError:
                fresh = manifest.read_state(self.path) if self.state is not None else None
                if attempt == READ_ATTEMPTS - 1 or fresh is None or fresh == self.state:
                    raise  # not a newer commit: the file is really missing or damaged
                self.state, self.meta = fresh, manifest.model_meta(self.path, fresh)

    def _model_meta(self) -> dict:
        if self.meta is None:
            raise PerceptregError(f"{self.path}: no model yet (no {files.MODEL_META}): its training stopped "
                                  f"before the first checkpoint; continue it with `resume`")
        return self.meta


class TrainedRun(Run):
    """A run of `train`: a PerceptionNet F, C, D with its one latent z."""

    kind = "trained"

    def model(self, device: torch.device | str = "cpu", layer: str | None = None,
              net: models.PerceptionNet | None = None) -> models.PerceptionNet:
        """The trained model on ``device``. ``net``: the untrained network, for a run of a
        custom architecture built in Python (a paper architecture or a FILE.py is rebuilt)."""
        device = resolve_device(str(device))
        if layer is not None:
            raise PerceptregError(f"`layer` {layer!r}: {self.path} is a run of `train`, its one latent is z; "
                                  f"layers are chosen in runs of `attach`")
        meta = self._model_meta()
        if net is None:
            net = self._rebuild(meta)
        path, tensors = self._weights()
        fileio.load_weights(net, tensors, path)
        return net.to(device).eval()

    def copy_parts(self, net: models.PerceptionNet, parts: tuple[str, ...]) -> None:
        """Copy the named parts ("encoder", "classifier", "decoder") of the run's model into ``net``."""
        self._model_meta()
        path, weights = self._weights()
        for part in parts:
            taken = {k[len(part) + 1:]: v for k, v in weights.items() if k.startswith(part + ".")}
            fileio.load_weights(getattr(net, part), taken, path)

    def _rebuild(self, meta: dict) -> models.PerceptionNet:
        if self.config.model is not None:  # the user's code (given to `train --model`, or to save_run)
            return user_models.build_perception_net(sources.source_spec(self.config.source, self.config.model,
                                                                        self.path))
        if meta["arch"] in models.ARCHITECTURES:
            return models.build(meta["arch"], meta["num_classes"], self.config.z_dim, self.config.decoder_width)
        raise PerceptregError(f"{self.path} holds a custom model built in Python; pass it: run.model(net=...), "
                              f"or save the run with perceptreg.save_run(result, source='FILE.py:FUNCTION') so "
                              f"that it can be rebuilt")


class AttachedRun(Run):
    """A run of `attach`: a user's model with a decoder on each chosen layer."""

    kind = "attached"

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.config.layers)

    @property
    def completed_epochs(self) -> int:
        """The epochs its decoders (or, in joint mode, the model) were fitted: an attach run
        keeps no training state, its metrics.jsonl has a line per epoch."""
        return self.metrics[-1]["epoch"] if self.metrics else 0

    def attached_model(self, device: torch.device | str = "cpu") -> AttachedModel:
        """The user's model, rebuilt from its file, with its saved weights and decoders."""
        device = resolve_device(str(device))
        spec = sources.source_spec(self.config.source, self.config.model, self.path)
        seen = attach(user_models.build(spec, self.config.model_kwargs), self.config.layers, self.input_shape,
                      normalize=self.config.normalize, seed=self.config.seed,
                      decoder_params=self.config.decoder_params)
        recorded = self._model_meta()["activation_shapes"]
        shapes = {layer: list(shape) for layer, shape in seen.activation_shapes.items()}
        if shapes != recorded:  # the decoders were made for these: other shapes, other decoders
            layer = next(k for k in shapes if shapes[k] != recorded.get(k))
            raise CheckpointError(f"{self.path / files.MODEL_META}: activation shape of {layer} {recorded.get(layer)}, "
                                  f"but the model gives {shapes[layer]}; {manifest.DAMAGED}")
        path, tensors = self._weights()
        fileio.load_weights(seen, tensors, path)
        seen.decoders_fitted()
        return seen.to(device).eval()

    def output_layer(self, layer: str | None = None) -> str | None:
        return layer or self.layers[-1]

    def model(self, device: torch.device | str = "cpu", layer: str | None = None):
        """The user's model seen through ``layer`` (default: the deepest)."""
        return self.attached_model(device).at(layer)


def open_run(path: str | Path | Run) -> TrainedRun | AttachedRun:
    """Read and validate the run folder at ``path`` once; its kind follows its config. A run
    already opened is handed back as it is, so every call that takes a run takes a folder too."""
    if isinstance(path, Run):
        return path
    path = Path(path)
    if not os.path.lexists(path / files.CONFIG):  # one that is not a file is named by the reader
        what = (" it is a sweep folder: open one of its models (a subfolder)"
                if (path / files.SWEEP_JSON).exists() else "")
        raise PerceptregError(f"{path}: no {files.CONFIG}; is this a run folder written by `perceptreg train` "
                              f"or `perceptreg attach`?{what}")
    config = files.read_config(path)
    state = manifest.read_state(path)
    meta = manifest.model_meta(path, state)
    if isinstance(config, TrainConfig):
        manifest.check_arch(path, config.arch, meta, files.MODEL_META)
    elif meta is not None and list(meta.get("layers", ())) != list(config.layers):
        raise CheckpointError(f"{path / files.MODEL_META}: layers {meta.get('layers')}, but {files.CONFIG} attaches "
                              f"{list(config.layers)}; {manifest.DAMAGED}")
    metrics = manifest.committed_metrics(path, state, meta)
    kind = AttachedRun if isinstance(config, AttachConfig) else TrainedRun
    return kind(path, config, state, meta, metrics)
