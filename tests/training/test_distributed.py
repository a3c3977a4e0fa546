"""Data-parallel training on CPU with gloo: 2 processes started by torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from perceptreg import data
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.training import distributed
from perceptreg.training.train import train

# Per-pixel mean reduction: with the summed error, 400 digits at lr 1e-3 collapse within
# two epochs, and Adam then turns the last-bit differences of a two-way gradient reduction
# into 1e-3 weight differences (its first steps move by lr * sign(g) for any tiny g).
# 200 test images scored per epoch (not the whole 1000): one image is 0.005 of the accuracy.
SETTINGS = ["--train-size", "400", "--batch-size", "32", "--reduction", "mean", "--eval-size", "200", "--quiet"]
SINGLE = dict(train_size=400, batch_size=32, reduction="mean", eval_size=200)  # SETTINGS, in one process


def torchrun(out, *args, processes=2):
    # one OpenMP thread per process: two processes share the two cores
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "perceptreg", "train", "--out", str(out), *SETTINGS, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    result = torchrun(out, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    return out, result


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(ddp_run, tmp_path):
    out, result = ddp_run
    single = train(TrainConfig(**SINGLE, epochs=2), tmp_path / "single", progress=False)
    a, b = weights(out), single.model.state_dict()
    assert max((a[k] - b[k].cpu()).abs().max().item() for k in a) < 1e-5
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # within one image of the 200 scored
    assert len(rows) == 2 and rows[-1]["test_accuracy"] == pytest.approx(single.history[-1]["test_accuracy"], abs=0.006)
    assert rows[0]["train_ce"] == pytest.approx(single.history[0]["train_ce"], rel=1e-5)  # reduced over ranks
    assert result.stdout.count("run folder:") == 1  # rank 0 reports, alone
    assert json.loads((out / "state.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_resume_of_a_distributed_run(ddp_run, tmp_path):
    out, _ = ddp_run
    first = torchrun(tmp_path / "r", "--epochs", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = torchrun(tmp_path / "r", "--epochs", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = weights(out), weights(tmp_path / "r")
    assert all(torch.equal(a[k], b[k]) for k in a)


GLOO_THREADS_AFTER_TRAINING = """
import os, sys
from perceptreg.core.config import TrainConfig
from perceptreg.training.train import train
train(TrainConfig(train_size=100, batch_size=25, epochs=1, eval_size=50, reduction="mean", mode=sys.argv[2]), sys.argv[1],
      progress=False)
import time
def gloo_threads():
    names = []
    for t in os.listdir("/proc/self/task"):
        try:
            names.append(open(f"/proc/self/task/{t}/comm").read().strip())
        except OSError:  # a thread that ended while we listed them
            pass
    return sum("gloo" in name for name in names)
# threads end asynchronously after the group is destroyed: give a loaded machine 10 s
deadline = time.monotonic() + 10
while gloo_threads() and time.monotonic() < deadline:
    time.sleep(0.1)
# a file per rank: the ranks' prints would interleave on torchrun's shared stdout
with open(f"{sys.argv[1]}-rank{os.environ['RANK']}.txt", "w") as out:
    out.write(f"gloo threads {gloo_threads()}")
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread names are read from /proc")
def test_no_gloo_thread_outlives_training(tmp_path):
    # A process group kept alive after training (torch._dynamo, imported after it, holds it)
    # leaves gloo threads running into interpreter exit, where they can abort a rank.
    script = tmp_path / "train_and_count.py"
    script.write_text(GLOO_THREADS_AFTER_TRAINING)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               str(script), str(tmp_path / "run"), "post-hoc"]
    result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [(tmp_path / f"run-rank{rank}.txt").read_text() for rank in (0, 1)] == ["gloo threads 0"] * 2


@pytest.mark.slow
def test_resume_with_another_number_of_processes_is_refused(ddp_run, tmp_path):
    out, _ = ddp_run
    with pytest.raises(PerceptregError, match=r"trained by 2 process\(es\); resume it with 2"):
        train(TrainConfig(**SINGLE, epochs=3), out, resume=True, progress=False)


@pytest.mark.parametrize("count, world", [(100, 2), (103, 2), (96, 3), (64, 4)])
@pytest.mark.parametrize("epoch_seed", [1, 2])
def test_shards_cover_every_index_once_per_epoch(count, world, epoch_seed):
    # each image's pixel is its own index, so the batches say which images they hold
    ds = data.ImageDataset(torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1),
                           torch.arange(count) % 10, data.DIGITS, "ids")
    seen, per_rank_batches = [], []
    for rank in range(world):
        shards = list(data.batches(ds, 32, shuffle=True, generator=torch.Generator().manual_seed(epoch_seed),
                                   rank=rank, world=world))
        per_rank_batches.append(len(shards))
        seen += [int(v) for x, _ in shards for v in (x.flatten() * 255).round().tolist()]
    assert sorted(seen) == list(range(count))
    assert per_rank_batches == [len(data.global_batch_sizes(count, 32, world))] * world


def test_a_last_batch_smaller_than_the_world_is_dropped():
    assert data.global_batch_sizes(65, 32, world=2) == [32, 32]
    assert data.global_batch_sizes(65, 32, world=1) == [32, 32, 1]


def test_no_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_backend_available", lambda name: False)
    with pytest.raises(PerceptregError, match="2 processes.*gloo"):
        distributed.join("cpu")


def test_collectives_have_a_timeout(monkeypatch):
    captured = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, timeout: captured.update(
        backend=backend, timeout=timeout))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    cluster = distributed.join("cpu")
    assert (cluster.rank, cluster.world, cluster.joined_here) == (1, 2, True)
    assert captured == {"backend": "gloo", "timeout": distributed.TIMEOUT}


def test_alone_nothing_is_joined():
    cluster = distributed.join("cpu")
    assert (cluster.rank, cluster.world, cluster.is_main) == (0, 1, True)
    assert cluster.sum(torch.tensor([2.0])).item() == 2.0
