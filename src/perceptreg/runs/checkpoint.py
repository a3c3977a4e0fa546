"""A run's checkpoint, the run folder's own part of it: one writer per folder
(``writer_lock``), and the optimizer's state laid out as flat tensors + JSON. The files
themselves are written and read by ``storage.fileio``.

A run folder holds
- ``model.safetensors`` + ``model.json``: the weights and what built them (architecture,
  lambda, dataset, versions); what ``load_model`` needs.
- ``state.safetensors`` + ``state.json``: what ``--resume`` needs: weights, optimizer
  moments, RNG states and the epoch reached. The weights are kept here too so one rename
  makes the whole state consistent, whatever moment a kill comes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import torch

from perceptreg.storage.fileio import CheckpointError, check_output_path

# --- optimizer state: nested dicts of tensors and numbers -> flat tensors + JSON -----------

def flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            key = f"optim.{index}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value
            else:
                scalars[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    items = [(k, v) for k, v in tensors.items() if k.startswith("optim.")]
    for key, value in items + list(meta["scalars"].items()):
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each moment tensor its parameter's memory layout (channels-last for convs).

    Saved moments come back contiguous; the fused Adam kernel walks a parameter and its
    moments as flat memory, so mismatched layouts would pair the wrong elements.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            slots = optimizer.state.get(param, {})
            for name, value in slots.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    slots[name] = torch.empty_like(param).copy_(value)


@contextlib.contextmanager
def writer_lock(run_dir: Path, name: str = ".lock"):
    """One writer per folder: an exclusive lock on ``run_dir``/``name`` while the block runs.
    The system drops the lock when its process dies, so a killed writer leaves none behind.
    Temporary files a killed writer left are removed once the lock is held. A folder this
    call created is removed again when the block fails before writing anything into it."""
    created = not check_output_path(run_dir).exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / name, "a+")
    except OSError as err:  # under a file, under /proc, read-only
        raise CheckpointError(f"cannot write the run folder {run_dir}: {err.strerror or err}") from err
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise CheckpointError(f"{run_dir} is being written by another process ({handle.read().strip() or 'pid unknown'}); "
                                  f"wait for it to end or choose another output folder") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        # ours (.NAME.XXXX.tmp) and safetensors' own (.tmpXXXXXX, the Rust tempfile crate's names)
        for leftover in [*run_dir.glob(".*.tmp"), *run_dir.glob(".tmp??????")]:
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
        try:
            yield
        except BaseException:
            if created and [p.name for p in run_dir.iterdir()] == [name]:
                (run_dir / name).unlink()
                run_dir.rmdir()
            raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
