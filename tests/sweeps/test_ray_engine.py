"""The sweep's Ray engine: members as Ray tasks on a local 2-CPU Ray instance."""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from perceptreg import runs
from perceptreg.cli import main
from perceptreg.core.config import TrainConfig
from perceptreg.sweeps import ray_engine, sweep, workers
from perceptreg.training.train import train

ray = pytest.importorskip("ray")

TIMING = ("train_images_per_second", "seconds")  # the only metrics that differ between two runs


def kill_when_epoch_written(run_dir, killed: dict) -> None:
    """SIGKILL the process training ``run_dir`` once its first epoch is saved (from outside,
    as the OOM killer or a lost node would), and note whether the member was unfinished then."""
    # generous: on a loaded machine Ray's start and the first epoch took over 2 minutes (the
    # kill then fell before epoch 1 and the test failed on a timing, not on the engine)
    deadline = time.monotonic() + 600
    while runs.completed_epochs(run_dir) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    pid = int((run_dir / ".lock").read_text().split()[1])  # checkpoint.writer_lock writes "pid N"
    os.kill(pid, signal.SIGKILL)
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.update(pid=pid, epochs_then=runs.completed_epochs(run_dir))


@pytest.mark.slow
def test_a_killed_member_is_retried_and_ends_as_its_twin_that_was_not_killed(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # the engine starts (and stops) its own instance
    member = TrainConfig(dataset="mnist5k", lam=1e-2, epochs=2, train_size=200, eval_size=100)
    killed, twin, seen = tmp_path / "killed", tmp_path / "twin", {}
    killer = threading.Thread(target=kill_when_epoch_written, args=(killed, seen))
    killer.start()
    try:  # both at once, one thread each, on this machine's 2 CPUs
        ray_engine.train_all([(member, killed), (member, twin)], threads=1, progress=False)
    finally:
        killer.join()
    assert seen["epochs_then"] < member.epochs  # the kill landed mid-run
    assert (killed / ".lock").read_text().split()[1] != str(seen["pid"])  # another worker finished it
    assert not ray.is_initialized()  # the instance it started is stopped
    # Resumed from its epoch-1 checkpoint, it ends bit for bit as the uninterrupted run with
    # the same thread count: weights and every metric but the timings.
    weights, expected = load_file(str(killed / runs.MODEL)), load_file(str(twin / runs.MODEL))
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in expected)
    rows, expected_rows = ([{k: v for k, v in json.loads(line).items() if k not in TIMING}
                            for line in (run_dir / runs.METRICS).read_text().splitlines()] for run_dir in (killed, twin))
    assert len(rows) == member.epochs and rows == expected_rows
    # ... which is the member trained as the local engine trains it, with its 1 thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = train(member, tmp_path / "alone", progress=False).model.state_dict()
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(expected[k], alone[k]) for k in alone)
    # finished members are not trained again (nor is Ray started for them)
    stamps = [(run_dir / runs.MODEL).stat().st_mtime_ns for run_dir in (killed, twin)]
    ray_engine.train_all([(member, killed), (member, twin)], threads=1, address="127.0.0.1:1", progress=False)
    assert [(run_dir / runs.MODEL).stat().st_mtime_ns for run_dir in (killed, twin)] == stamps


def test_the_sweep_hands_its_members_to_ray_with_a_workers_threads(tmp_path, monkeypatch):
    handed = {}

    def engine(members, threads, address, progress):  # records, and stops the sweep before it trains
        handed.update(names=[run_dir.name for _, run_dir in members], threads=threads, address=address)
        raise InterruptedError
    monkeypatch.setattr(ray_engine, "train_all", engine)
    monkeypatch.setattr(workers, "train_all", lambda *args: pytest.fail("the local engine trained the sweep"))
    monkeypatch.setattr(workers, "available_cores", lambda: 4)
    config = sweep.SweepConfig(dataset="mnist5k", lams=(1e-2, 1.0), seeds=(0,), workers=2, engine="ray",
                               address="auto")
    with pytest.raises(InterruptedError):
        sweep.run_sweep(config, tmp_path / "s", progress=False)
    assert handed == {"names": ["lam0.01-seed0", "lam1-seed0", "post-hoc-seed0"], "threads": 2, "address": "auto"}


@pytest.mark.slow
def test_a_member_whose_worker_keeps_dying_is_one_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(ray_engine, "MAX_RETRIES", 0)  # the first death is the last
    run_dir = tmp_path / "lam0.01"
    member = TrainConfig(dataset="mnist5k", lam=1e-2, epochs=2, train_size=200, eval_size=100)
    # The caller's own Ray instance: the engine uses it, and leaves it running.
    ray.init(num_cpus=1, include_dashboard=False, logging_level="warning")
    killer = threading.Thread(target=kill_when_epoch_written, args=(run_dir, {}))
    killer.start()
    try:
        with pytest.raises(ray_engine.PerceptregError, match=f"sweep member lam0.01: its worker died 1 times .* "
                                                             f"while training {run_dir}; run the sweep again"):
            ray_engine.train_all([(member, run_dir)], threads=1, progress=False)
        assert ray.is_initialized()
    finally:
        killer.join()
        ray.shutdown()
    assert runs.completed_epochs(run_dir) == 1  # kept for the next run to resume


@pytest.mark.parametrize("setting, message", [
    (["--address", "127.0.0.1:1"], "Error: --address 127.0.0.1:1: nothing answers there"),
    (["--address", "head"], "Error: --address 'head': give HOST:PORT of the Ray head node"),
    ({"RAY_ADDRESS": "127.0.0.1:1"}, "Error: RAY_ADDRESS 127.0.0.1:1: nothing answers there"),
    (["--device", "cuda:1"], "Error: --device 'cuda:1': with --engine ray give cuda"),
])
def test_a_bad_address_is_one_line_before_anything_is_written(tmp_path, monkeypatch, setting, message):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    env = setting if isinstance(setting, dict) else {}
    args = setting if isinstance(setting, list) else []
    began = time.monotonic()
    result = CliRunner(env=env).invoke(main, ["sweep", "--quick", "--engine", "ray", "--out", str(tmp_path / "s")]
                                       + args)
    assert result.exit_code == 1 and result.output.startswith(message), result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "s").exists()
    assert time.monotonic() - began < ray_engine.CONNECT_SECONDS


def test_without_ray_installed_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result = CliRunner().invoke(main, ["sweep", "--quick", "--engine", "ray", "--out", str(tmp_path / "s")])
    assert result.exit_code == 1, result.output
    assert result.output == "Error: --engine ray needs Ray: pip install perceptreg[ray]\n"
    with pytest.raises(ray_engine.PerceptregError, match=r"pip install perceptreg\[ray\]"):
        sweep.run_sweep(sweep.SweepConfig(dataset="mnist5k", engine="ray"), tmp_path / "t")
    assert not (tmp_path / "t").exists()
    with pytest.raises(ray_engine.PerceptregError, match="`engine` must be one of local, ray, got 'dask'"):
        sweep.SweepConfig(engine="dask")


class FakeRay:
    """Ray's calls the engine makes, recorded; ``wait`` ends the sweep as ``ending`` says."""

    class exceptions:
        class RayError(Exception):
            pass

        class RayTaskError(RayError):
            cause = None

    def __init__(self, ending):
        self.ending, self.calls, self.cancelled, self.started = ending, [], [], False

    def is_initialized(self):
        return self.started

    def init(self, **kwargs):
        self.started = True

    def shutdown(self):
        self.calls.append("shutdown")
        self.started = False

    def remote(self, function):
        fake = self

        class Task:
            def options(self, **kwargs):
                return self

            def remote(self, config, run_dir, threads):
                return Path(run_dir).name
        fake.calls.append("remote")
        return Task()

    def wait(self, refs, num_returns):
        if len(refs) < 3:  # one member done: the sweep is stopped now
            if self.ending == "ctrl-c":
                raise KeyboardInterrupt
            if self.ending == "error here":
                raise MemoryError
        return refs[:1], refs[1:]

    def get(self, done):
        if self.ending == "a member fails" and done == ["m1"]:
            raise self.exceptions.RayTaskError("m1 failed")

    def cancel(self, ref, force=False):
        self.cancelled.append((ref, force))


@pytest.mark.parametrize("ending, raised", [("ctrl-c", KeyboardInterrupt), ("error here", MemoryError),
                                            ("a member fails", FakeRay.exceptions.RayTaskError)])
def test_every_exit_cancels_the_members_still_running_and_stops_ray(tmp_path, monkeypatch, ending, raised):
    fake = FakeRay(ending)
    monkeypatch.setattr(ray_engine, "_import_ray", lambda: fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    members = [(TrainConfig(epochs=1), tmp_path / f"m{i}") for i in range(4)]
    with pytest.raises(raised):
        ray_engine.train_all(members, threads=1, progress=False)
    assert fake.cancelled == [("m2", True), ("m3", True)] and fake.calls[-1] == "shutdown"  # m0, m1 ended


def test_a_sweep_that_ends_cancels_nothing(tmp_path, monkeypatch):
    fake = FakeRay("none")
    monkeypatch.setattr(ray_engine, "_import_ray", lambda: fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_engine.train_all([(TrainConfig(epochs=1), tmp_path / f"m{i}") for i in range(4)], threads=1, progress=False)
    assert fake.cancelled == [] and fake.calls == ["remote"] * 4 + ["shutdown"]
