"""Where a command may write: the one rule every command applies to its outputs before any
work, in Python as on the command line.

    check_writable(run_dir, "trained", resume=True, settings=config.to_dict())  # a run folder
    check_output_file(out, owned=(PERCEPTION,), run=run.path)                   # a figure, a report
    check_output_folder(out, reads=(run.path,))                                 # a folder of figures

- A run folder (of `train`, `attach`, `sweep`, `prepare`) is written only where the folder is
  missing, empty, or holds a run of the same kind that the writer may continue
  (``kinds.check_continue``). A folder with other files is refused, the current folder
  included; `/` and the system's folders (/etc, /usr, ...) are refused even when empty.
- An output file is never a file the command reads, nor a file inside a run folder that the
  command does not own: it goes into no run but the one it is about, and there it replaces only
  a file named as the command's own output (``owned``, written again on each call); a new name
  of the user's is a figure there, never one that would pass for the run's data (config,
  state, model, metrics, results files, the copy of its source).
- A folder of outputs is never `/`, a system folder, or the folder of another run.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from perceptreg.core.errors import PerceptregError
from perceptreg.runs.kinds import KINDS, check_continue, kind_of
from perceptreg.storage.fileio import check_output_path

# folders that are the system's: never a run folder or an output, even when empty
SYSTEM_FOLDERS = frozenset({"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
                            "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys",
                            "/tmp", "/usr", "/var"})
# ... and the ones whose whole tree is the system's
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys",
                "/usr")
# what a run folder keeps that a figure must never replace: our data is in these files (config,
# state, model, metrics, results, datasets, the source copy), the rest are figures and pages
DATA_SUFFIXES = (".json", ".jsonl", ".safetensors", ".npy", ".py", ".pt", ".pth", ".lock", ".tmp")
# what a killed writer of ours leaves in a folder it had just made: the folder is still empty
LEFTOVERS = (".lock", ".*.tmp", ".tmp??????")


def check_writable(folder: str | Path, kind: str, *, resume: bool = False, settings: dict | None = None,
                   free: frozenset[str] = frozenset()) -> Path:
    """Refuse ``folder`` to a writer of ``kind`` (one of ``kinds.KINDS``) unless it is missing,
    empty, or holds a run of ``kind`` it may continue (``kinds.check_continue``: ``resume``,
    ``settings``, ``free``). Reads only; returns the folder."""
    folder = check_output_path(folder)
    _refuse_system(folder, "a run folder")
    held = kind_of(folder)
    if held is None:
        # `python -m reproduce`'s runs and a sweep's members are folders of their own, each checked as a run
        others = [] if kind == "reproducing" else [name for name in _other_files(folder)
                                                   if kind != "sweep" or not (folder / name).is_dir()]
        if others:
            raise PerceptregError(f"`out` {folder} holds files that are not {KINDS[kind]} ({', '.join(others[:3])}"
                                  f"{', ...' if len(others) > 3 else ''}); a run is written only into a folder that "
                                  f"is missing or empty: choose another output folder (nothing was changed)")
        return folder
    if held != kind:
        raise PerceptregError(f"`out` {folder} holds {KINDS[held]}, not {KINDS[kind]}; choose another output folder "
                              f"(nothing was changed)")
    check_continue(folder, kind, resume, settings, free)
    return folder


def check_output_file(path: str | Path, *, owned: tuple[str, ...] = (), run: str | Path | None = None,
                      reads=()) -> Path:
    """Refuse ``path`` as a command's output file unless it may be written (module docstring).
    ``owned``: the names (glob patterns) the command writes into ``run``, the run folder its
    outputs belong to; ``reads``: the other files and run folders it reads (a judge's run: read,
    never written into). Returns the path."""
    reads = (*reads, *([run] if run is not None else []))
    path = check_output_path(path)
    _refuse_system(path, "an output file")
    if path.is_dir():
        raise PerceptregError(f"{path} is a folder; give a file name for the output")
    if any(_same(path, read) for read in reads if Path(read).is_file()):
        raise PerceptregError(f"{path} is a file this command reads; write the output to another file")
    folder = _run_folder_of(path)
    if folder is None:
        return path
    if run is None or not _same(folder, run):
        raise PerceptregError(f"{path} is inside {KINDS[kind_of(folder)]} in {folder}, not the run this command "
                              f"writes about: its files are that run's; write the output outside that folder")
    if any(fnmatch.fnmatch(path.name, own) for own in owned):
        return path  # the command's own output in the run it reads
    if (path.exists() or path.is_symlink() or path.name.startswith(".") or path.name.endswith(DATA_SUFFIXES)
            or path.parent.name == "source"):
        raise PerceptregError(f"{path} is a file of the run in {folder}, or would pass for one: write the output "
                              f"to a new file name, or outside that run folder")
    return path


def check_output_folder(folder: str | Path, *, reads=()) -> Path:
    """Refuse ``folder`` as a command's folder of outputs if it is `/`, a system folder, or the
    folder of a run other than those in ``reads``. Returns the folder. (Unlike a run folder, it
    may hold the user's own files: figures beside the image they edited.)"""
    folder = check_output_path(folder)
    _refuse_system(folder, "an output folder")
    held = kind_of(folder) if folder.is_dir() else None
    if held is not None and not any(_same(folder, read) for read in reads):
        raise PerceptregError(f"`out` {folder} holds {KINDS[held]}; the outputs would be taken for its own: choose "
                              f"another output folder, or the run's own")
    return folder


def _refuse_system(path: Path, what: str) -> None:
    where = os.path.realpath(path)
    in_root = what == "an output file" and os.path.dirname(where) == "/"  # a file among the system's folders
    if in_root or where in SYSTEM_FOLDERS or any(where.startswith(tree + "/") for tree in SYSTEM_TREES):
        raise PerceptregError(f"{path} is among the system's own folders ({where}), not a place for {what}; "
                              f"choose a folder of your own")


def _other_files(folder: Path) -> list[str]:
    """The names in ``folder`` that no writer of ours left there (none: a missing folder)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not any(fnmatch.fnmatch(p.name, left) for left in LEFTOVERS))


def _run_folder_of(path: Path) -> Path | None:
    """The folder of ours (a run, a sweep, a dataset) that holds ``path``: its folder, or the
    one above (a run's source/ copy, a sweep's member)."""
    for folder in (path.parent, path.parent.parent):
        if folder.is_dir() and kind_of(folder) is not None:
            return folder
    return None


def _same(path: Path, other) -> bool:
    return os.path.realpath(path) == os.path.realpath(other)
