"""The source of a run's model, kept in the run folder so that the run travels.

A run of `attach`, of `train --model`, or one saved by `save_run` names a function in the
user's code. The run keeps a copy of that function's file in RUN/source/ with its SHA-256
(and, for an importable name, the installed version of its distribution), recorded in
config.json (``with_source``, what every writer of a run calls). Reopened anywhere, the
model is rebuilt from the copy; a changed or moved original is said, not used.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import warnings
from importlib import metadata
from pathlib import Path

from perceptreg.core.errors import PerceptregError
from perceptreg.data import digest_of
from perceptreg.runs.user_models import is_file_spec, load_factory
from perceptreg.storage import fileio

SOURCE_DIR = "source"


def with_source(config, run_dir: Path):
    """``config`` (a TrainConfig or AttachConfig) with its model's source kept in ``run_dir``
    and recorded (``keep_source``); as it is when it names no code of the user's (a paper
    architecture). Kept again when a run is resumed: the code that trains on is recorded."""
    if config.model is None:
        return config
    return dataclasses.replace(config, source=keep_source(config.model, run_dir))


def keep_source(spec: str, run_dir: Path) -> dict:
    """Copy the file of ``spec``'s function into ``run_dir``/source; returns what
    ``source_spec`` needs: the spec as given, the original's path, the copy and its SHA-256,
    and for an importable name its distribution's version."""
    if is_file_spec(spec):  # the file itself: running it again to find it would repeat its work
        original, record = Path(spec.rpartition(":")[0]).expanduser().resolve(), {"spec": spec}
    else:  # the module that defines the function (imported already: no code runs again)
        module = load_factory(spec).__module__
        original, record = _module_file(module), {"spec": spec, "versions": _versions(module)}
    if original is None:  # a compiled or namespace module: nothing to copy
        return record
    (run_dir / SOURCE_DIR).mkdir(parents=True, exist_ok=True)
    copy = run_dir / SOURCE_DIR / original.name
    fileio.atomic_write(copy, lambda tmp: shutil.copyfile(original, tmp))
    return {**record, "original": str(original), "copy": f"{SOURCE_DIR}/{original.name}", "sha256": digest_of(copy)}


def _module_file(module_name: str) -> Path | None:
    path = Path(getattr(sys.modules.get(module_name), "__file__", None) or "")
    return path.resolve() if path.suffix == ".py" and path.is_file() else None


def _versions(module_name: str) -> dict:
    top = module_name.partition(".")[0]
    found = {}
    for name in metadata.packages_distributions().get(top, [top]):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def source_spec(source: dict | None, spec: str, run_dir: Path) -> str:
    """The spec that rebuilds a run's model. A file: the run's own copy, checked against its
    SHA-256. An importable name: the name itself (its package's own imports need it), with a
    warning when its file or version differs from the run's. Runs from before sources were
    kept (``source`` None) use ``spec`` as it is."""
    if source is None:
        return spec
    copy = run_dir / source["copy"] if "copy" in source else None
    if copy is not None and is_file_spec(spec) and (not copy.is_file() or digest_of(copy) != source["sha256"]):
        raise PerceptregError(f"{copy}: the run's copy of its model's source is missing or changed (its SHA-256 is "
                              f"recorded in {run_dir / 'config.json'}); restore it, or make the run again")
    uses = (f"the run uses its own copy {copy}, as it was" if is_file_spec(spec)
            else "the model is rebuilt from the code installed now")
    original = Path(source["original"]) if "original" in source else None
    if original is not None and not original.is_file():
        _warn(f"the model's source {original} has moved or gone since the run was made; {uses}")
    elif original is not None and digest_of(original) != source["sha256"]:
        _warn(f"the model's source {original} has changed since the run was made; {uses}")
    if not is_file_spec(spec):
        now = _versions(spec.rpartition(":")[0])
        if source.get("versions") and now != source["versions"]:
            _warn(f"the model {spec} was made with {source['versions']}; this machine has {now}; {uses}")
        return spec
    return f"{copy}:{spec.rpartition(':')[2]}"


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)
