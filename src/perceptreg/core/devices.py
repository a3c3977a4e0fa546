"""Devices: the one check of a ``device`` argument, and the mixed precision each device uses."""

from __future__ import annotations

import os

import torch

from perceptreg.core.errors import PerceptregError


def check_device_name(name: str) -> torch.device:
    """``name`` as a torch.device, if it is cpu, cuda or cuda:N; else a clear error."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise PerceptregError(f"`device` {name!r} is not a device; use cpu, cuda or cuda:N") from err
    if device.type not in ("cpu", "cuda"):
        raise PerceptregError(f"`device` {name!r} is not supported; use cpu, cuda or cuda:N")
    return device


def resolve_device(name: str) -> torch.device:
    """The device ``name`` on this machine: an error when it asks for CUDA that is not here."""
    device = check_device_name(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PerceptregError(f"`device` {name}: CUDA is not available on this machine; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PerceptregError(f"`device` {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (fp16 where bf16 is missing, with loss scaling); none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def check_memory(name: str, count: int, nbytes: int, what: str) -> None:
    """Refuse a count (the argument ``name``) whose ``nbytes`` would take more than half of
    the memory this machine has free: the allocation would fail, or swap, midway."""
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if nbytes > free // 2:
        raise PerceptregError(f"`{name}` {count}: {what} would take about {nbytes / 2**30:.1f} GiB, more than half "
                              f"of the {free / 2**30:.1f} GiB of memory free here; give a smaller `{name}`")
