"""What a folder holds (``kind_of``) and whether a writer may continue the run of its own kind
there (``check_continue``); ``outputs.check_writable``, the rule every writer follows, asks both.

    kind_of(Path("runs/demo"))  # "trained"

A folder may hold one kind of thing: a run of `train` ("trained"), a run of `attach`
("attached"), a sweep or a dataset of `prepare`. A writer may continue its own kind with the
same settings, or start over one of its own kind that never finished; anything else is
refused before it writes, so no run is ever replaced by another.
A config.json is a run's only when its keys are a config's (a project's own config.json is not).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from perceptreg.core.config import AttachConfig, TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.runs import manifest
from perceptreg.runs.files import (
    ATTACHED_FORMAT,
    CONFIG,
    LAYERS_JSON,
    MODEL,
    MODEL_META,
    STATE_META,
    SWEEP_CONFIG,
    SWEEP_JSON,
    read_config,
)
from perceptreg.storage.fileio import parse_json

CONFIG_KEYS = {f.name for config in (TrainConfig, AttachConfig) for f in dataclasses.fields(config)}
# Each kind of writer ``outputs.check_writable`` knows, in the words of its messages: the kinds
# ``kind_of`` finds in a folder, and "reproducing", the root folder of `python -m reproduce`
# (the paper's runs, each in a subfolder of its own kind; the root itself is never one).
KINDS = {"trained": "a run of `train`", "attached": "a run of `attach`", "sweep": "a sweep",
         "dataset": "a dataset of `prepare`", "reproducing": "the runs of `python -m reproduce`"}


def kind_of(folder: Path) -> str | None:
    """What ``folder`` holds (one of KINDS), or None when it holds nothing of ours."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise PerceptregError(f"{folder} exists and is not a folder; choose another output folder")
    if (folder / SWEEP_CONFIG).exists() or (folder / SWEEP_JSON).exists():
        return "sweep"
    if (folder / "meta.json").exists() and (folder / "train_images.npy").exists():
        return "dataset"
    config = _small_json(folder / CONFIG)
    ours = set(config) <= CONFIG_KEYS and "dataset" in config  # a config.json of someone else's is not a run
    if (folder / LAYERS_JSON).exists() or (ours and "layers" in config) or _model_format(folder) == ATTACHED_FORMAT:
        return "attached"
    if ours or any((folder / name).exists() for name in (STATE_META, MODEL_META, MODEL)) or _epoch_files(folder):
        return "trained"
    return None


def check_continue(folder: Path, kind: str, resume: bool, settings: dict | None, free: frozenset[str]) -> None:
    """Refuse ``folder``, which holds a run of ``kind``, to a writer of ``kind`` unless it may
    continue it (module docstring). ``settings``: the config the writer would run with,
    compared with the folder's config.json (all but the keys in ``free``) when it continues a
    started run. Reads only; ``outputs.check_writable`` calls it."""
    if kind == "trained":
        _check_trained(folder, resume, settings, free)
    elif kind == "attached" and (folder / MODEL_META).exists():
        raise PerceptregError(f"{folder} holds a finished run of `attach`; choose another output folder "
                              f"(nothing was changed)")
    elif kind == "dataset":
        raise PerceptregError(f"{folder} holds a dataset already; choose another output folder or remove it")


def _check_trained(folder: Path, resume: bool, settings: dict | None, free: frozenset[str]) -> None:
    # a kill while the first checkpoint was written leaves epoch 1's files without state.json:
    # not a model yet, the run starts over; a later epoch's file is one
    has_model = ((folder / MODEL_META).exists() or (folder / MODEL).exists()
                 or any(not path.name.endswith(f"-{1:06d}.safetensors") for path in _epoch_files(folder)))
    if not (folder / STATE_META).exists():
        if has_model:  # the checkpoint's commit point is gone: resuming would start over and delete the model
            raise PerceptregError(f"{folder} holds a model but no {STATE_META}; restore {STATE_META}, or choose "
                                  f"another output folder (nothing was changed)")
        return  # stopped before its first checkpoint: it starts over
    if manifest.completed_epochs(folder) == 0:
        return
    if not resume:
        raise PerceptregError(f"{folder} already holds a run; continue it with `resume` or choose another "
                              f"output folder")
    if settings is None or not (folder / CONFIG).exists():
        return
    saved = read_config(folder).to_dict()
    changed = [f"{key} {saved[key]!r} (asked {settings.get(key)!r})" for key in saved
               if key not in free and saved[key] != settings.get(key)]
    if changed:
        raise PerceptregError(f"{folder} was trained with {', '.join(changed)}; resume it with the settings it was "
                              f"started with, or choose another output folder")


def _model_format(folder: Path) -> str | None:
    return _small_json(folder / MODEL_META).get("format")


def _small_json(path: Path) -> dict:
    """A JSON object of at most 1 MiB in a regular file, else {}: enough to tell a kind apart
    (a FIFO or a device would block or never end; the writer names a damaged file itself)."""
    try:
        if not path.is_file() or path.stat().st_size > 2**20:
            return {}
        values = parse_json(path.read_text(), path)
    except (OSError, ValueError, PerceptregError):
        return {}
    return values if isinstance(values, dict) else {}


def _epoch_files(folder: Path) -> list[Path]:
    return list(folder.glob("*-[0-9][0-9][0-9][0-9][0-9][0-9].safetensors"))
