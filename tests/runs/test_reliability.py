"""What a kill, a second writer or a bad output path must not do: lose or mix up a run."""

import json
import os
import signal
import subprocess
import sys
import warnings

import pytest
import torch
from click.testing import CliRunner
from helpers import metrics_lines, metrics_row, rewrite_state

from perceptreg import runs
from perceptreg.cli import main
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.storage.fileio import CheckpointError, atomic_write
from perceptreg.training.train import train

QUICK = dict(train_size=200, epochs=1, batch_size=50)


@pytest.mark.slow
def test_a_second_writer_is_refused_while_the_first_runs_and_allowed_after_it_died(tmp_path, small_mnist):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, pathlib\nfrom perceptreg.runs import checkpoint\n"
         "with checkpoint.writer_lock(pathlib.Path(sys.argv[1])):\n    print('locked', flush=True)\n    time.sleep(120)",
         str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(PerceptregError, match=rf"^{tmp_path}.*\b{holder.pid}\b"):
            train(TrainConfig(**QUICK), tmp_path, train_data=small_mnist[0], test_data=small_mnist[1], progress=False)
        assert not (tmp_path / runs.CONFIG).exists()  # refused before anything was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the dead writer's lock went with it
    result = train(TrainConfig(**QUICK), tmp_path, train_data=small_mnist[0], test_data=small_mnist[1], progress=False)
    assert [row["epoch"] for row in result.history] == [1]


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_killed_before_its_first_checkpoint_is_started_over(tmp_path, small_mnist, resume):
    # what a kill in epoch 1's checkpoint window leaves: a config, a metrics line, a half-written file
    (tmp_path / runs.CONFIG).write_text(json.dumps(TrainConfig(**QUICK).to_dict()))
    (tmp_path / runs.METRICS).write_text(metrics_lines(1))
    (tmp_path / ".state.safetensors.abc123.tmp").write_bytes(b"half")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(TrainConfig(**QUICK), tmp_path, train_data=small_mnist[0], test_data=small_mnist[1],
              resume=resume, progress=False)
    assert not list(tmp_path.glob(".*.tmp"))  # the killed writer's leftovers are removed
    assert [row["epoch"] for row in runs.read_metrics(tmp_path)] == [1]  # its metrics line is not kept twice
    assert runs.completed_epochs(tmp_path) == 1
    assert any("starts over at epoch 1" in str(w.message) for w in caught) == resume


def test_a_torn_last_metrics_line_is_dropped_and_other_damage_named(tmp_path):
    (tmp_path / runs.METRICS).write_text(metrics_lines(1, 2) + '{"epoch": 3, "ph')
    with pytest.warns(RuntimeWarning, match="line 3 was cut short"):
        assert runs.read_metrics(tmp_path) == [metrics_row(1), metrics_row(2)]
    for text, message in ((metrics_lines(1) + "garbage\n" + metrics_lines(3), "line 2 is not a metrics row"),
                          (metrics_lines(1) + '{"epoch": 2}\n', r"line 2 is not a metrics row \(seconds: field required"),
                          ('{"phase": "joint"}\n', "line 1 is not a metrics row"),
                          ("[1, 2]\n", "line 1 is not a metrics row"),
                          ('{"epoch": 1, "loss": NaN}\n{"epoch": 2}\n', r"line 1 is not a metrics row \(a number is NaN\)"),
                          ('{"epoch": 1, "loss": -Infinity}\n', r"line 1 is not a metrics row \(a number is -Infinity\)")):
        (tmp_path / runs.METRICS).write_text(text)
        with pytest.raises(CheckpointError, match=message):
            runs.read_metrics(tmp_path)
    (tmp_path / runs.METRICS).write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(CheckpointError, match="cannot be read"):
        runs.read_metrics(tmp_path)


def test_only_regular_files_are_replaced(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match=rf"{fifo}.*not a regular file"):
        atomic_write(fifo, lambda tmp: tmp.write_text("x"))
    assert fifo.is_fifo()
    with pytest.raises(CheckpointError, match="under-a-pipe.png"):
        atomic_write(tmp_path / "pipe.png" / "under-a-pipe.png", lambda tmp: tmp.write_text("x"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_cli_output_onto_a_device_is_one_error_line(trained_run):
    result = CliRunner().invoke(main, ["perceive", str(trained_run), "--n", "2", "--out", "/dev/full"])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "/dev/full" in result.output
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")
    result = CliRunner().invoke(main, ["train", "--out", "/proc/perceptreg-run", "--epochs", "1", "--quiet"])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "/proc/perceptreg-run" in result.output


# A child process that resumes a one-epoch run to two epochs and kills itself (SIGKILL, as
# `kill -9` would) just before write number WINDOW of epoch 2's checkpoint: no finally, no
# flush, no lock release but the one the system does.
KILL_AT_WRITE = """
import os, signal, sys, torch
from pathlib import Path
from perceptreg.storage import fileio
from perceptreg import runs
from perceptreg.core.config import TrainConfig
from perceptreg.training.train import train
run_dir, window, threads = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
real_write, real_save, writes = fileio.atomic_write, runs.save_checkpoint, []
def counting_write(path, write):
    if len(writes) == window:
        os.kill(os.getpid(), signal.SIGKILL)
    writes.append(path)
    real_write(path, write)
def save(*args, **kwargs):
    fileio.atomic_write = counting_write
    real_save(*args, **kwargs)
    fileio.atomic_write = real_write
runs.save_checkpoint = save
train(TrainConfig(**{KWARGS}), run_dir, resume=True, progress=False)
"""
KILL_CONFIG = dict(train_size=200, batch_size=50, eval_size=100)  # 100 test images scored per epoch, not 1000


@pytest.fixture(scope="module")
def one_and_two_epochs(tmp_path_factory):
    base = tmp_path_factory.mktemp("kills")
    first = train(TrainConfig(epochs=1, **KILL_CONFIG), base / "first", progress=False)
    whole = train(TrainConfig(epochs=2, **KILL_CONFIG), base / "whole", progress=False)
    return base / "first", first.model.state_dict(), whole.model.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("window", range(6))  # before each of the 5 writes of a checkpoint, and after all
def test_a_kill_9_between_any_two_checkpoint_writes_loses_nothing(window, tmp_path, one_and_two_epochs):
    import shutil

    from safetensors.torch import load_file

    first_dir, first, whole = one_and_two_epochs
    killed = tmp_path / "killed"
    shutil.copytree(first_dir, killed)
    script = KILL_AT_WRITE.replace("{KWARGS}", repr({**KILL_CONFIG, "epochs": 2}))
    child = subprocess.run([sys.executable, "-c", script, str(killed), str(window), str(torch.get_num_threads())],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == (0 if window == 5 else -signal.SIGKILL), child.stderr[-2000:]
    # whatever the moment, the run reads as epoch 1 or epoch 2, complete and consistent
    epoch = runs.completed_epochs(killed)
    loaded = runs.open_run(killed).model().state_dict()
    expected = first if epoch == 1 else whole
    assert epoch == (2 if window >= 3 else 1)  # state.json, the commit point, is the third write
    assert runs.open_run(killed).meta["epoch"] == epoch
    assert all(torch.equal(loaded[k], expected[k].cpu()) for k in expected)
    # and resuming ends where an uninterrupted run ends, bit for bit, with nothing left over
    train(TrainConfig(epochs=2, **KILL_CONFIG), killed, resume=True, progress=False)
    final = load_file(str(killed / runs.MODEL))
    assert all(torch.equal(final[k], whole[k].cpu()) for k in whole)
    assert [row["epoch"] for row in runs.read_metrics(killed)] == [1, 2]
    assert not list(killed.glob(".*.tmp")) and len(list(killed.glob("state-*.safetensors"))) == 1


@pytest.mark.parametrize("name, content, message", [
    ("state.json", '{"world_size": 1, "optimizer": {}, "checksum": "' + "0" * 64 + '"}', "state.json: field epoch"),
    ("state.json", '{"epoch": 1, "optimizer": {}}', "state.json: field checksum: field required"),
    ("state.json", "[1, 2]", "state.json: field the top level"),
    ("model.json", "{}", "model.json: field format"),
    ("model.json", "[]", "model.json: field the top level"),
    ("model.json", '{"format": "perceptreg.model/1", "num_classes": "ten", "input_shape": [1, 28, 28], "classes": ["a"]}',
     "model.json: field num_classes"),
    ("config.json", "[]", "config.json: "),
    ("config.json", '{"lam": "abc"}', "config.json: setting dataset"),
    ("metrics.jsonl", metrics_lines(1) + "not json\n" + metrics_lines(2), "metrics.jsonl: line 2 is not a metrics row"),
])
def test_a_damaged_run_file_is_one_error_line_and_nothing_changes(name, content, message, trained_run, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in trained_run.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    if name == "model.json":  # what readers take it from: the manifest's entry, else (older runs) model.json
        rewrite_state(broken, lambda state: [state.pop(key) for key in ("model", "format", "metrics_sha256")])
    (broken / name).write_text(content)
    before = {p.name: p.read_bytes() for p in broken.iterdir()}
    command = ["report", str(broken)] if name == "metrics.jsonl" else ["perceive", str(broken), "--n", "2"]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in broken.iterdir()} == before
