"""Sweep members as Ray tasks: this machine's cores, or a cluster's.

    train_all([(config, run_dir), ...], threads=1, address="HEAD:6379")

Each member is one task asking Ray for ``threads`` CPUs (and a GPU when it trains on
CUDA); it runs `workers.train_member`, as the local engine does, so its run folder holds
the same files. Ray starts a task again when its worker process dies (killed, out of
memory, its node lost), up to MAX_RETRIES times; the new attempt resumes from the last
epoch the run folder holds. So every node must see the run folders at the same path: a
shared filesystem (docs/guides/scale.md).

Ray is an optional dependency (`pip install perceptreg[ray]`), imported only here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

import torch

from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.display import tqdm
from perceptreg.sweeps import workers

MAX_RETRIES = 3  # restarts of a member whose worker died; a member failing with an error is not retried
CONNECT_SECONDS = 10  # how long to wait for a cluster's address to answer: Ray itself retries for minutes


def check(address: str | None, device: str) -> None:
    """Fail now, before the sweep writes or measures anything, if Ray is missing, ``address``
    (or RAY_ADDRESS) does not answer, or ``device`` names one GPU (Ray assigns them)."""
    _import_ray()
    if device.startswith("cuda:"):
        raise PerceptregError(f"`device` {device!r}: with `engine` ray give cuda; Ray gives each member its GPU")
    _check_listening(address)


def train_all(members: list[tuple[TrainConfig, Path]], threads: int, address: str | None = None,
              progress: bool = True) -> None:
    """Train, or resume, every member not yet complete, each as a Ray task with ``threads``
    CPUs. ``address``: a cluster's (HOST:PORT or ray://HOST:PORT); default RAY_ADDRESS, else
    a Ray instance on this machine, started for these members and stopped after them."""
    pending = workers.unfinished(members)
    if not pending:
        return
    ray = _import_ray()
    with _connected(ray, address):
        refs = {_submit(ray, config, run_dir.resolve(), threads): run_dir for config, run_dir in pending}
        remaining = list(refs)
        try:
            with tqdm(total=len(refs), desc="sweep (ray)", unit="model", disable=not progress) as bar:
                while remaining:
                    done, remaining = ray.wait(remaining, num_returns=1)
                    try:
                        ray.get(done)
                    except ray.exceptions.RayError as error:
                        raise _failure(ray, error, refs[done[0]]) from None
                    bar.update(len(done))
        finally:
            # On every exit (a failed member, Ctrl-C, any error) no task trains on: force
            # kills its worker, also on a cluster or the caller's own instance that outlive
            # us. A stopped member keeps its last epoch; a rerun resumes it.
            for ref in remaining:
                ray.cancel(ref, force=True)


def _submit(ray, config: TrainConfig, run_dir: Path, threads: int):
    task = ray.remote(_train_member).options(
        num_cpus=threads, num_gpus=1 if config.device.startswith("cuda") else 0,
        max_retries=MAX_RETRIES, retry_exceptions=False, name=f"perceptreg {run_dir.name}")
    return task.remote(config.to_dict(), str(run_dir), threads)


def _train_member(config: dict, run_dir: str, threads: int) -> None:
    # Ray sets OMP_NUM_THREADS from num_cpus; torch's own pool is set here too, as the local
    # engine does, since the thread count decides the order of float sums (and the weights).
    torch.set_num_threads(threads)
    workers.train_member(config, run_dir)


def _failure(ray, error: Exception, run_dir: Path) -> Exception:
    """The error to show for a member's task: its own error as raised in the task, or one
    line naming the member when its worker died after every retry."""
    if isinstance(error, ray.exceptions.RayTaskError):
        return error.cause if isinstance(error.cause, PerceptregError) else error
    return PerceptregError(f"sweep member {run_dir.name}: its worker died {MAX_RETRIES + 1} times (killed, out of "
                           f"memory, or its node lost: {type(error).__name__}) while training {run_dir}; run the "
                           f"sweep again: finished members are kept, started ones resume")


@contextlib.contextmanager
def _connected(ray, address: str | None):
    """A connection to ``address``, or a Ray instance of this machine's cores for "local"; an
    existing connection of this process (the caller's own `ray.init`) is used and kept."""
    if ray.is_initialized():
        yield
        return
    _check_listening(address)
    address = _address(address)
    local = dict(num_cpus=workers.available_cores()) if address == "local" else {}
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, **local)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise PerceptregError(f"`address` {address}: Ray could not connect ({error}); start the cluster with "
                              f"`ray start --head` (docs/guides/scale.md)") from None
    try:
        yield
    finally:
        ray.shutdown()


def _address(address: str | None) -> str:
    return address or os.environ.get("RAY_ADDRESS") or "local"


def _check_listening(given: str | None) -> None:
    """Refuse an address (``given``, else RAY_ADDRESS) where nothing listens: Ray would keep
    retrying it for minutes."""
    address = _address(given)
    if address in ("local", "auto"):
        return
    source = "`address`" if given else "RAY_ADDRESS"
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise PerceptregError(f"{source} {address!r}: give HOST:PORT of the Ray head node, e.g. 10.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise PerceptregError(f"{source} {address}: nothing answers there ({error.strerror or error}); start "
                              f"the head node with `ray start --head`, or leave out the address (and RAY_ADDRESS) "
                              f"for a Ray instance on this machine") from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise PerceptregError("`engine` ray needs Ray: pip install perceptreg[ray]") from None
    return ray
