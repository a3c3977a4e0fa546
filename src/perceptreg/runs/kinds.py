"""What a folder holds (``kind_of``) and who may write into it (``check_writable``): the one
rule every writer follows before it writes.

    check_writable(run_dir, "trained", resume=True, settings=config.to_dict())

A folder may hold one kind of thing: a run of `train` ("trained"), a run of `attach`
("attached"), a sweep, a dataset of `prepare`, or the runs of REPRODUCING.md. A writer may
write into a folder that is missing or holds nothing of ours, continue its own kind with the
same settings, or start over one of its own kind that never finished; anything else is
refused before it writes, so no run is ever replaced by another.
"""

from __future__ import annotations

from pathlib import Path

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
from perceptreg.storage.fileio import check_output_path, parse_json

KINDS = {"trained": "a run of `train`", "attached": "a run of `attach`", "sweep": "a sweep",
         "dataset": "a dataset of `prepare`", "reproducing": "the runs of REPRODUCING.md"}


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
    if (folder / LAYERS_JSON).exists() or _config_has_layers(folder) or _model_format(folder) == ATTACHED_FORMAT:
        return "attached"
    if any((folder / name).exists() for name in (CONFIG, STATE_META, MODEL_META, MODEL)) or _epoch_files(folder):
        return "trained"
    return None


def check_writable(folder: Path, kind: str, *, resume: bool = False, settings: dict | None = None,
                   free: frozenset[str] = frozenset()) -> None:
    """Refuse ``folder`` to a writer of ``kind`` unless it may write there (module docstring).
    ``settings``: the config the writer would run with, compared with the folder's config.json
    (all but the keys in ``free``) when it continues a started run. Reads only."""
    folder = check_output_path(folder)
    held = kind_of(folder)
    if held is None:
        return
    if held != kind:
        raise PerceptregError(f"{folder} holds {KINDS[held]}, not {KINDS[kind]}; choose another output folder "
                              f"(nothing was changed)")
    if kind == "trained":
        _check_trained(folder, resume, settings, free)
    elif kind == "attached" and (folder / MODEL_META).exists():
        raise PerceptregError(f"{folder} holds a finished run of `attach`; choose another output folder "
                              f"(nothing was changed)")
    elif kind == "dataset":
        raise PerceptregError(f"{folder} holds a dataset already; choose another output folder or remove it")


def _check_trained(folder: Path, resume: bool, settings: dict | None, free: frozenset[str]) -> None:
    has_model = (folder / MODEL_META).exists() or (folder / MODEL).exists() or bool(_epoch_files(folder))
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


def _config_has_layers(folder: Path) -> bool:
    return "layers" in _small_json(folder / CONFIG)


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
