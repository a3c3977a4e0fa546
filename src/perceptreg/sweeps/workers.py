"""Many models trained side by side: the members of a sweep, one worker process each.

    train_all([(config, run_dir), ...], workers=2)

A small model leaves cores idle: at batch 64 oneDNN's fixed cost per call dominates, so
one process gets little from a second thread (docs/guides/sweeps.md). Workers train
different members at once, each with its share of the cores as threads, each in its own
run folder: a killed sweep resumes member by member, as with one worker.

A member's weights equal that member trained alone with the same number of threads (the
thread count sets the order of float sums, so not across thread counts).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import multiprocessing
import os
import signal
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from perceptreg import data as datasets
from perceptreg import runs
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.display import tqdm
from perceptreg.training import ensemble as ensembles
from perceptreg.training.train import train


def available_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, available_cores() // workers)


WORKERS_PER_CORE = 4  # local workers are processes (~400 MB each): beyond this they wait for a core and fill memory
MAX_RAY_WORKERS = 4_096  # Ray tasks at once, on a cluster whose cores are not counted here


def check_count(workers: int, engine: str = "local") -> None:
    """Workers from 1 to ``WORKERS_PER_CORE`` per core here (a Ray cluster: ``MAX_RAY_WORKERS``)."""
    most = MAX_RAY_WORKERS if engine == "ray" else WORKERS_PER_CORE * available_cores()
    if not 1 <= workers <= most:
        where = "Ray tasks at once" if engine == "ray" else f"{WORKERS_PER_CORE} per core, {available_cores()} cores here"
        raise PerceptregError(f"`workers` must be in [1, {most:,}] ({where}), got {workers}")


def train_all(members: list[tuple[TrainConfig, Path]], workers: int = 1, progress: bool = True,
              ensemble: bool = False) -> None:
    """Train, or resume, every member not yet complete, ``workers`` at a time. One worker
    trains in this process; more start processes with ``threads_per_worker`` threads each.
    With ``ensemble``, the joint members train as vmapped ensembles, one per worker (ensemble.py)."""
    check_count(workers)
    pending = unfinished(members)
    jobs = ensembles.jobs(pending, workers) if ensemble else [[member] for member in pending]
    if workers == 1 or len(jobs) <= 1:
        # A lone job of several workers' sweep (the rest finished) trains here with a worker's
        # threads: the same weights as in a worker, so a resumed sweep ends as an unbroken one.
        with tqdm(total=len(pending), desc="sweep", unit="model", disable=not progress) as bar, \
                _threads(threads_per_worker(workers) if workers > 1 else torch.get_num_threads()):
            for job in jobs:
                train_job(_portable(job))
                bar.update(len(job))
        return
    # spawn, not fork: a forked child inherits this process's OpenMP and torch thread state
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=start_worker,
                             initargs=(threads_per_worker(workers), os.getpid())) as pool:
        futures = {pool.submit(train_in_worker, _portable(job)): job for job in jobs}
        with tqdm(total=len(pending), desc=f"sweep ({workers} workers)", unit="model", disable=not progress) as bar:
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED)  # the bar counts each as it ends
                for future in done:
                    bar.update(len(futures[future]))
                    _raise_failure(future, ", ".join(str(d) for _, d in futures[future]), pool)
                    for category, message in future.result():  # as if this process had trained the member
                        warnings.warn(message, category, stacklevel=2)


PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def start_worker(threads: int, parent: int) -> None:
    """A worker's set-up: its share of the cores, and its end when the sweep that started it
    dies (kill -9 included), since it would go on training members for nobody and hold their
    folders' locks against the rerun. Linux sends the signal itself (prctl); the watch on
    the parent's pid covers other systems and a parent that died before prctl was called."""
    torch.set_num_threads(threads)
    with contextlib.suppress(OSError, AttributeError):  # no prctl outside Linux: the watch alone
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="perceptreg-parent-watch").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is handed to another process (init, a subreaper)
        time.sleep(1)
    os._exit(1)  # at once: a member keeps its last complete epoch, and the rerun's lock removes the rest


@contextlib.contextmanager
def _threads(count: int):
    """torch's intra-op threads set to ``count`` inside, and back after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def unfinished(members: list[tuple[TrainConfig, Path]]) -> list[tuple[TrainConfig, Path]]:
    """The members whose run folder holds fewer epochs than their config asks (a sweep resumes these)."""
    return [(config, Path(run_dir)) for config, run_dir in members
            if runs.completed_epochs(Path(run_dir)) < config.total_epochs]


def _raise_failure(future, run_dirs: str, pool: ProcessPoolExecutor) -> None:
    error = future.exception()
    if error is None:
        return
    pool.shutdown(wait=True, cancel_futures=True)  # members already running finish: their work is kept
    if isinstance(error, BrokenProcessPool):
        raise PerceptregError(f"a sweep worker died (killed, or out of memory) while training {run_dirs}; "
                              f"run the sweep again: finished members are kept, started ones resume") from None
    raise error


def _portable(job: list[tuple[TrainConfig, Path]]) -> list[tuple[dict, str]]:
    """A job as plain dicts and strings, which pickle into a worker process."""
    return [(config.to_dict(), str(run_dir)) for config, run_dir in job]


def train_in_worker(job: list[tuple[dict, str]]) -> list[tuple[type[Warning], str]]:
    """``train_job`` in a worker process, its warnings (a collapsed decoder) handed back for
    the sweep to give as its own: the CLI says them as "Warning:" lines, where the worker
    would print them in Python's file:line format."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        warnings.simplefilter("always", UserWarning)
        train_job(job)
    return [(warning.category, str(warning.message)) for warning in caught]


def train_job(job: list[tuple[dict, str]]) -> None:
    """One member alone, or several as one vmapped ensemble (ensemble.py)."""
    if len(job) == 1:
        train_member(*job[0])
        return
    configs = [TrainConfig.from_dict(config) for config, _ in job]
    train_data, test_data = load_dataset_once(configs[0].dataset, configs[0].data_root,
                                              datasets.image_shape_for(configs[0].dataset, configs[0].arch))
    ensembles.train_ensemble([(config, Path(run_dir)) for config, (_, run_dir) in zip(configs, job)],
                             train_data, test_data)


def train_member(config: dict, run_dir: str) -> None:
    """One member, trained as `perceptreg train --resume` would: same data, same seed."""
    config = TrainConfig.from_dict(config)
    train_data, test_data = load_dataset_once(config.dataset, config.data_root,
                                              datasets.image_shape_for(config.dataset, config.arch))
    train(config, run_dir, train_data=train_data, test_data=test_data,
          resume=runs.completed_epochs(Path(run_dir)) > 0, progress=False)


@functools.lru_cache(maxsize=1)
def load_dataset_once(name: str, root: str | None, shape: tuple[int, int, int]):
    """``data.load_dataset``, kept for the next call: a worker trains several members of one
    dataset, and the sweep measures them on it, so it is loaded (or generated) once per process."""
    return datasets.load_dataset(name, root, shape)
