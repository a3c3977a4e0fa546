"""Files on disk: tensors in safetensors, everything else in JSON; every write atomic (a
reader sees the old file or the new, never half), every read ``guarded`` (a regular file,
under a size limit, inside its folder). The one home of these rules: datasets, run folders,
results files and figures read and write through here. What a run folder holds, and its
writer lock, are ``runs.checkpoint``'s.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
import stat as modes
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from perceptreg.core.errors import PerceptregError


class CheckpointError(PerceptregError):
    """A checkpoint that is missing, corrupt or made for another model."""


class MissingFileError(CheckpointError, FileNotFoundError):
    """A file we were to read is not there: callers that say what its absence means (a
    partial image folder) catch it as FileNotFoundError."""


NAME_MAX = 255  # bytes in one path component (Linux); a longer name fails in the middle of a run
PATH_MAX = 4096  # bytes in a whole path (Linux), with its terminating NUL


def check_output_path(path: str | Path) -> Path:
    """``path`` if something can be written there: a name, short enough, under a folder that
    exists or can be made and is writable. Checked before any work, so a bad path costs
    one line, not a trained model that cannot be saved."""
    if str(path).strip() == "":
        raise CheckpointError("the output path is empty; give a folder or file name")
    path = Path(path)
    long = [part for part in path.parts if len(os.fsencode(part)) > NAME_MAX]
    if long:
        raise CheckpointError(f"cannot write {str(path)[:60]}...: the name {long[0][:40]}... is longer than "
                              f"{NAME_MAX} bytes; choose a shorter one")
    if len(os.fsencode(os.path.abspath(path))) >= PATH_MAX:
        raise CheckpointError(f"cannot write {str(path)[:60]}...: the path is longer than {PATH_MAX - 1} bytes; "
                              f"choose a shorter one")
    if os.path.lexists(path) and not (path.is_file() or path.is_dir()):  # a device, a pipe, a dangling link
        raise CheckpointError(f"cannot write {path}: it exists and is not a regular file or folder; choose another "
                              f"output path")
    target = path.absolute()
    parent = target if target.is_dir() else target.parent  # a folder is written into, a file beside its siblings
    while not os.path.lexists(parent):  # the nearest folder that exists: it is where the rest gets made
        parent = parent.parent
    if not parent.is_dir():
        raise CheckpointError(f"cannot write {path}: {parent} is not a folder; choose an output path inside a folder")
    # root may write almost anywhere, but not into the kernel's own file systems
    if not os.access(parent, os.W_OK | os.X_OK) or parent.resolve().parts[1:2] in (("proc",), ("sys",)):
        raise CheckpointError(f"cannot write {path}: {parent} is not writable; choose another output path")
    return path


def check_output_file_path(path: str | Path) -> Path:
    """``check_output_path`` for a file: only a regular file (or nothing) is ever replaced, a
    folder is refused too. Callers check it before their work, and ``atomic_write`` again."""
    path = check_output_path(path)
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path} exists and is not a regular file (a folder, pipe or device); remove it, or "
                              f"write to another path")
    return path


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, then rename over ``path``: a reader sees old or new, never half.
    Only a regular file (or nothing) is ever replaced: a device, folder or pipe is refused."""
    path = check_output_file_path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # the folder is missing, a file, or not writable (/proc, a read-only mount)
        raise CheckpointError(f"cannot write {path}: {err.strerror or err}") from err
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a run folder is meant to be shared
        os.replace(tmp, path)
        # rename() of a hard link onto another name of the same file does nothing and
        # leaves the link (publishing a model that is already published): remove it.
        Path(tmp).unlink(missing_ok=True)
    except (OSError, SafetensorError) as err:  # a full disk, a quota: the old file stays as it was
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path}: {getattr(err, 'strerror', None) or err}") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


# --- reading: every file we read goes through ``guarded`` -----------------------------------------

JSON_LIMIT = 64 * 2**20  # the largest JSON or JSON-lines file we read (a sweep.json is well under 1 MiB)
IMAGE_LIMIT = 256 * 2**20  # the largest image file we decode (a PNG of 8k x 8k RGB is about 200 MiB)
HEADER_LIMIT = 100 * 2**20  # a safetensors header (names, dtypes, shapes) larger than this is not ours
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1}


def guarded(path: Path, limit: int | None = None, folder: Path | None = None) -> Path:
    """``path`` if it may be read: a regular file (a FIFO or a device would block or never
    end, a folder raise), at most ``limit`` bytes, and, with ``folder``, inside it (a name
    from a file we read may not lead out with .., an absolute path or a symlink)."""
    path = Path(path)
    if folder is not None:
        folder = Path(folder)
        inside = path.is_relative_to(folder) and ".." not in path.relative_to(folder).parts
        if not inside or not path.resolve().is_relative_to(folder.resolve()):
            raise CheckpointError(f"{path}: outside {folder} (by .., an absolute path or a link); the file that "
                                  f"names it is damaged: restore it or train again")
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise MissingFileError(f"{path}: not found") from None
    except OSError as err:  # a link loop, a name too long, no permission
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not modes.S_ISREG(stat.st_mode):
        raise CheckpointError(f"{path} is not a regular file but {_what(stat.st_mode)}; replace it with the file")
    if limit is not None and stat.st_size > limit:
        raise CheckpointError(f"{path}: {stat.st_size / 2**20:.0f} MiB, more than the {limit / 2**20:.0f} MiB such a "
                              f"file can be; it is not ours, or damaged")
    return path


def _what(mode: int) -> str:
    """What a file that is not a regular one is, in words."""
    for test, words in ((modes.S_ISDIR, "a folder"), (modes.S_ISFIFO, "a FIFO (a named pipe)"),
                        (modes.S_ISCHR, "a character device"), (modes.S_ISBLK, "a block device"),
                        (modes.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "something else"


def read_text(path: Path, limit: int = JSON_LIMIT) -> str:
    """A text file, ``guarded``; bytes that are not UTF-8 are an error naming it."""
    try:
        return guarded(path, limit).read_text()
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: cannot be read, it is not UTF-8 text ({err}); the file is damaged") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err})") from None


# JSON that is valid but pathological: Python's parser recurses once per level (100,000 "["
# are a RecursionError) and refuses integers of over 4300 digits (a ValueError). Ours nest
# under 10 levels and write no number longer than a float's repr (about 25 characters).
MAX_JSON_DEPTH = 64
MAX_NUMBER_CHARS = 100
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string (its brackets and digits are text, not structure)
_LONG_NUMBER = re.compile(r"[-+.eE0-9]{%d,}" % (MAX_NUMBER_CHARS + 1))


class BadJSONError(CheckpointError):
    """A file that is not JSON, or JSON no file of ours is; ``reason`` says why, without the file."""

    def __init__(self, where, reason: str, fix: str = "the file is damaged or not ours"):
        super().__init__(f"{where}: {reason}; {fix}")
        self.reason = reason


def _refuse_constant(name: str):
    raise ValueError(f"a number is {name}")


def parse_json(text: str | bytes, where: str | Path, constants: bool = True) -> Any:
    """``text`` parsed as JSON, after checking that it nests at most MAX_JSON_DEPTH levels
    and holds no number longer than MAX_NUMBER_CHARS: the one JSON parser of every file we
    read (``where`` names it in the error). ``constants`` False: NaN and Infinity refused."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as err:
            raise BadJSONError(where, f"not UTF-8 text ({err})") from None
    structure = _STRING.sub('""', text)
    depth = _depth(structure)
    if depth > MAX_JSON_DEPTH:
        raise BadJSONError(where, f"JSON nested {depth} levels deep, more than the {MAX_JSON_DEPTH} of any file of ours")
    long = _LONG_NUMBER.search(structure)
    if long:
        raise BadJSONError(where, f"a number of {len(long.group())} characters, more than the {MAX_NUMBER_CHARS} of "
                                  f"any file of ours")
    try:
        return json.loads(text, **({} if constants else {"parse_constant": _refuse_constant}))
    except json.JSONDecodeError as err:
        raise BadJSONError(where, f"corrupt JSON ({err})") from None
    except ValueError as err:  # a NaN or Infinity refused
        raise BadJSONError(where, str(err)) from None


def _depth(structure: str) -> int:
    """How deep the brackets of ``structure`` (JSON with its strings emptied) nest, at most."""
    if not structure:
        return 0
    codes = np.frombuffer(structure.encode(), np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def read_json(path: Path) -> Any:
    """A JSON file, ``guarded`` and parsed by ``parse_json``."""
    return parse_json(read_text(path), path)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def check_header(path: Path) -> None:
    """A safetensors file's header, checked before any tensor is allocated: its length, and
    each tensor's dtype, shape and byte range within the file."""
    size = guarded(path).stat().st_size
    damaged = f"{path}: corrupt or not a safetensors file"
    with open(path, "rb") as f:  # guarded above: a regular file
        start = f.read(8)
        length = int.from_bytes(start, "little") if len(start) == 8 else -1
        if not 0 < length <= min(HEADER_LIMIT, size - 8):
            raise CheckpointError(f"{damaged} (header length {length}); restore it or train again")
        try:
            header = parse_json(f.read(length), path)
        except CheckpointError:
            raise CheckpointError(f"{damaged} (its header is not JSON); restore it or train again") from None
    for name, entry in (header.items() if isinstance(header, dict) else [("header", None)]):
        if name == "__metadata__":
            continue
        try:
            begin, end = entry["data_offsets"]
            count = math.prod(entry["shape"])
            fits = (entry["dtype"] in DTYPE_BYTES and 0 <= begin <= end <= size - 8 - length
                    and end - begin == count * DTYPE_BYTES[entry["dtype"]])
        except (TypeError, KeyError, ValueError):
            fits = False
        if not fits:
            raise CheckpointError(f"{damaged} (tensor {str(name)[:60]!r} does not fit the file); restore it or "
                                  f"train again")


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    check_header(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({err}); "
                              f"restore it or train again") from err


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Strict load that names the missing and unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(own.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - own.keys())
    mismatched = [f"{k} {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in own.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or mismatched:
        problems = [f"missing key(s) {missing[:5]}" if missing else "",
                    f"unexpected key(s) {unexpected[:5]}" if unexpected else "",
                    f"shape mismatch {mismatched[:5]}" if mismatched else ""]
        raise CheckpointError(f"{source}: weights do not fit this model: "
                              + "; ".join(p for p in problems if p))
    model.load_state_dict(tensors)
