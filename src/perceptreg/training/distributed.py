"""Data-parallel training across processes with torch.distributed, launched by torchrun.

    torchrun --nproc-per-node 2 -m perceptreg train --out runs/ddp ...

``join`` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...),
joins the process group (NCCL on CUDA, gloo on CPU) with a timeout on every collective,
and returns who this process is. Without torchrun it returns rank 0 of 1 and touches
nothing, so the single-process path stays as it is.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from perceptreg.core.errors import PerceptregError

# A rank that died or hangs makes the others fail after this long instead of waiting forever.
TIMEOUT = timedelta(seconds=float(os.environ.get("PERCEPTREG_COLLECTIVE_TIMEOUT", "600")))


@dataclass(frozen=True)
class Cluster:
    rank: int
    world: int
    device: torch.device
    joined_here: bool = False  # whether join() opened the process group (and so closes it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``tensor`` over all ranks (itself when alone)."""
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def wrap(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` in DistributedDataParallel (gradients averaged over ranks) when there are several."""
        if self.world == 1:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids,
                                                   find_unused_parameters=find_unused_parameters)

    def leave(self) -> None:
        if self.joined_here and dist.is_initialized():
            dist.destroy_process_group()


def join(device: str) -> Cluster:
    """This process's place among torchrun's workers, or rank 0 of 1 without torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    wanted = torch.device(device)
    if world == 1:
        return Cluster(0, 1, wanted)
    backend = "nccl" if wanted.type == "cuda" else "gloo"
    if not dist.is_available() or not dist.is_backend_available(backend):
        raise PerceptregError(f"torchrun started {world} processes, but this torch has no {backend} "
                              f"backend for `device` {device}; run without torchrun or install a torch with it")
    if wanted.type == "cuda":
        wanted = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(wanted)
    joined_here = not dist.is_initialized()
    if joined_here:
        # torch._dynamo (imported lazily by the first optimizer step or DDP forward) keeps
        # references to a process group that exists when it is imported, so
        # destroy_process_group cannot free it: gloo's threads then run into interpreter
        # exit, where they aborted a process now and then (SIGABRT after training had
        # finished). Imported first, it holds none.
        importlib.import_module("torch._dynamo")
        dist.init_process_group(backend, timeout=TIMEOUT)
    return Cluster(dist.get_rank(), dist.get_world_size(), wanted, joined_here)
