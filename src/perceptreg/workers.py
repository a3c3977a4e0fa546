"""Many models trained side by side: the members of a sweep, one worker process each.

    train_all([(config, run_dir), ...], workers=2)

A small model leaves cores idle: at batch 64 oneDNN's fixed cost per call dominates, so
one process gets little from a second thread (README, 'The lambda sweep'). Workers train
different members at once, each with its share of the cores as threads, each in its own
run folder: a killed sweep resumes member by member, as with one worker.

A member's weights equal that member trained alone with the same number of threads (the
thread count sets the order of float sums, so not across thread counts).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch
from tqdm.auto import tqdm

from perceptreg import data as datasets
from perceptreg import runs
from perceptreg.config import TrainConfig
from perceptreg.errors import PerceptregError
from perceptreg.train import train


def available_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, available_cores() // workers)


def check_count(workers: int) -> None:
    if workers < 1:
        raise PerceptregError(f"`workers` must be >= 1, got {workers}")


def train_all(members: list[tuple[TrainConfig, Path]], workers: int = 1, progress: bool = True) -> None:
    """Train, or resume, every member not yet complete, ``workers`` at a time. One worker
    trains in this process; more start processes with ``threads_per_worker`` threads each."""
    check_count(workers)
    pending = unfinished(members)
    if workers == 1 or len(pending) <= 1:
        for config, run_dir in tqdm(pending, desc="sweep", unit="model", disable=not progress):
            train_member(config.to_dict(), str(run_dir))
        return
    # spawn, not fork: a forked child inherits this process's OpenMP and torch thread state
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(pending)), mp_context=context,
                             initializer=torch.set_num_threads, initargs=(threads_per_worker(workers),)) as pool:
        futures = {pool.submit(train_member, config.to_dict(), str(run_dir)): run_dir for config, run_dir in pending}
        with tqdm(total=len(futures), desc=f"sweep ({workers} workers)", unit="model", disable=not progress) as bar:
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_EXCEPTION)
                bar.update(len(done))
                for future in done:
                    _raise_failure(future, futures[future], pool)


def unfinished(members: list[tuple[TrainConfig, Path]]) -> list[tuple[TrainConfig, Path]]:
    """The members whose run folder holds fewer epochs than their config asks (a sweep resumes these)."""
    return [(config, Path(run_dir)) for config, run_dir in members
            if runs.completed_epochs(Path(run_dir)) < config.total_epochs]


def _raise_failure(future, run_dir: Path, pool: ProcessPoolExecutor) -> None:
    error = future.exception()
    if error is None:
        return
    pool.shutdown(wait=True, cancel_futures=True)  # members already running finish: their work is kept
    if isinstance(error, BrokenProcessPool):
        raise PerceptregError(f"a sweep worker died (killed, or out of memory) while training {run_dir}; "
                              f"run the sweep again: finished members are kept, started ones resume") from None
    raise error


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
