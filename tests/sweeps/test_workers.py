"""Sweep members trained side by side in worker processes."""

import shutil
import time
import warnings

import pytest
import torch
from safetensors.torch import load_file

from perceptreg import runs
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.sweeps import workers
from perceptreg.training.train import train


def member(lam, dataset="mnist5k"):  # 100 test images scored per epoch, not the whole 1000
    return TrainConfig(dataset=dataset, lam=lam, epochs=1, train_size=200, batch_size=50, eval_size=100)


@pytest.mark.slow
def test_members_trained_by_two_workers_equal_each_trained_alone(tmp_path):
    members = [(member(1e-2), tmp_path / "a"), (member(1.0), tmp_path / "b")]
    with warnings.catch_warnings(record=True) as said_by_workers:
        warnings.simplefilter("always")
        workers.train_all(members, workers=2, progress=False)
    in_workers = [load_file(str(run_dir / runs.MODEL)) for _, run_dir in members]
    # alone, with the thread count a worker had (it sets the order of float sums)
    threads = torch.get_num_threads()
    torch.set_num_threads(workers.threads_per_worker(2))
    try:
        with warnings.catch_warnings(record=True) as said_alone:
            warnings.simplefilter("always")
            alone = [train(config, tmp_path / f"alone-{run_dir.name}", progress=False).model.state_dict()
                     for config, run_dir in members]
    finally:
        torch.set_num_threads(threads)
    # a worker's warnings (a collapsed decoder) are the sweep's own, as if trained here, not printed by the worker
    assert sorted(str(w.message) for w in said_by_workers) == sorted(str(w.message) for w in said_alone)
    for parallel, single in zip(in_workers, alone):
        assert all(torch.equal(parallel[k], single[k]) for k in single)
    assert not torch.equal(in_workers[0]["encoder.0.weight"], in_workers[1]["encoder.0.weight"])  # two lambdas
    # a finished member is not trained again
    stamps = [(run_dir / runs.MODEL).stat().st_mtime_ns for _, run_dir in members]
    workers.train_all(members, workers=2, progress=False)
    assert [(run_dir / runs.MODEL).stat().st_mtime_ns for _, run_dir in members] == stamps
    # the one member left trains in this process, with a worker's threads: the same weights
    shutil.rmtree(members[1][1])
    workers.train_all(members, workers=2, progress=False)
    retrained = load_file(str(members[1][1] / runs.MODEL))
    assert all(torch.equal(retrained[k], in_workers[1][k]) for k in retrained)
    assert torch.get_num_threads() == threads  # and this process's own count is back


def test_a_worker_hands_its_warnings_back_instead_of_printing_them(monkeypatch, capsys):
    monkeypatch.setattr(workers, "train_job", lambda job: warnings.warn("the decoder has collapsed", RuntimeWarning))
    assert workers.train_in_worker([]) == [(RuntimeWarning, "the decoder has collapsed")]
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_a_failing_member_is_reported_by_name(tmp_path):
    members = [(member(1e-2), tmp_path / "fine"), (member(1e-2, dataset="folder:/nonexistent"), tmp_path / "bad")]
    with pytest.raises(PerceptregError, match="/nonexistent: not a folder"):
        workers.train_all(members, workers=2, progress=False)
    with pytest.raises(PerceptregError, match=r"`workers` must be in \[1, "):
        workers.train_all(members, workers=0)


def test_workers_are_capped_at_four_per_core_here_and_a_fixed_count_on_ray(monkeypatch):
    monkeypatch.setattr(workers, "available_cores", lambda: 2)
    workers.check_count(8)
    with pytest.raises(PerceptregError, match=r"^`workers` must be in \[1, 8\] \(4 per core, 2 cores here\), got 9$"):
        workers.check_count(9)
    workers.check_count(4096, "ray")  # a cluster's cores are not counted here
    with pytest.raises(PerceptregError, match=r"^`workers` must be in \[1, 4,096\] \(Ray tasks at once\), got 4097$"):
        workers.check_count(4097, "ray")


@pytest.mark.slow
def test_the_progress_bar_counts_each_member_as_it_ends(tmp_path, monkeypatch):
    counted = []

    class Bar:  # tqdm's interface, recording when each member was counted
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *args):
            pass

        def update(self, n):
            counted.append(time.time())

    monkeypatch.setattr(workers, "tqdm", Bar)
    short = (member(1e-2), tmp_path / "short")
    long = (TrainConfig(lam=1.0, epochs=8, train_size=200, batch_size=50), tmp_path / "long")
    workers.train_all([short, long], workers=2)
    long_ended = (tmp_path / "long" / runs.MODEL).stat().st_mtime
    assert len(counted) == 2 and counted[0] < long_ended - 0.5  # the short one, while the long one trained


PARENT = """
import sys
from pathlib import Path
from perceptreg.core.config import TrainConfig
from perceptreg.sweeps import workers
members = [(TrainConfig(lam=lam, epochs=50, train_size=200, batch_size=50, eval_size=100), Path(sys.argv[1]) / name)
           for lam, name in ((1e-2, "a"), (1.0, "b"))]
workers.train_all(members, workers=2, progress=False)
"""


def _children(pid):
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def _alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


@pytest.mark.slow
def test_workers_die_with_a_killed_sweep_and_the_rerun_is_not_locked_out(tmp_path):
    import signal
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)])
    try:
        deadline = time.monotonic() + 300
        # both workers are training once each has written its member's config.json
        while not all((tmp_path / name / runs.CONFIG).exists() for name in "ab"):
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        children = _children(parent.pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert len(children) >= 2  # the two workers (and multiprocessing's resource tracker)
    deadline = time.monotonic() + 5  # dead within 5 s, and no fixed wait when they go at once
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in children if _alive(pid)] == []
    # the members' locks went with their workers: a rerun continues them
    rerun = [(TrainConfig(lam=lam, epochs=max(1, runs.completed_epochs(tmp_path / name)), train_size=200,
                          batch_size=50, eval_size=100), tmp_path / name) for lam, name in ((1e-2, "a"), (1.0, "b"))]
    workers.train_all(rerun, workers=1, progress=False)
    assert all(runs.completed_epochs(run_dir) >= 1 for _, run_dir in rerun)
