"""One rule for every writer (`runs.check_writable`): a folder that holds another kind of run,
a finished run or a model without its state.json is refused, before anything on disk changes."""

import json
import os
import sys

import pytest
from click.testing import CliRunner
from helpers import USER_NET, metrics_lines

from perceptreg import runs
from perceptreg.cli import main
from perceptreg.core.config import AttachConfig, TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.storage.schema import sealed

TRAIN = TrainConfig(train_size=300, epochs=2).to_dict()
ATTACH = AttachConfig(model=f"{USER_NET}:build", layers=("fc1",)).to_dict()
RAW_STATE = {"epoch": 1, "optimizer": {}, "files": {"state": "state-000001.safetensors",
                                                    "model": "model-000001.safetensors"}, "sha256": {}}
STATE = sealed(RAW_STATE)  # state.json's checksum is required

# what a folder may hold: file name -> content, as each writer leaves it
FOLDERS = {
    "empty": {},
    "trained, stopped before its first checkpoint": {runs.CONFIG: TRAIN},
    "trained": {runs.CONFIG: TRAIN, runs.STATE_META: STATE, runs.MODEL_META: {"format": runs.MODEL_FORMAT},
                "model-000001.safetensors": b"x", runs.MODEL: b"x", runs.METRICS: metrics_lines(1).encode()},
    "trained, state.json lost": {runs.CONFIG: TRAIN, runs.MODEL_META: {"format": runs.MODEL_FORMAT},
                                 "model-000003.safetensors": b"x", runs.MODEL: b"x"},
    "attached, unfinished": {runs.CONFIG: ATTACH},
    "attached": {runs.CONFIG: ATTACH, runs.MODEL_META: {"format": runs.ATTACHED_FORMAT}, runs.LAYERS_JSON: {},
                 runs.MODEL: b"x"},
    "sweep": {runs.SWEEP_CONFIG: {}, "lam0.01-seed0/config.json": TRAIN},
    "dataset": {"meta.json": {}, "train_images.npy": b"x"},
    # a kill at each write of the first checkpoint (issue 38): epoch 1's files without state.json
    "trained, killed writing state-000001": {runs.CONFIG: TRAIN, runs.METRICS: b"", ".state-000001.safetensors.x.tmp": b"x"},
    "trained, killed before writing model-000001": {runs.CONFIG: TRAIN, runs.METRICS: b"",
                                                    "state-000001.safetensors": b"x"},
    "trained, killed before writing state.json": {runs.CONFIG: TRAIN, runs.METRICS: b"",
                                                  "state-000001.safetensors": b"x", "model-000001.safetensors": b"x"},
    # folders that hold no run of ours: never written into
    "another project's config.json": {runs.CONFIG: {"name": "my other project"}},
    "other files": {"notes.txt": b"mine"},
    "a killed writer's lock alone": {".lock": b"pid 1"},
}
STARTS_OVER = {"trained, stopped before its first checkpoint", "trained, killed writing state-000001",
               "trained, killed before writing model-000001", "trained, killed before writing state.json"}
# writer -> the folders it may take; every other folder is refused
WRITERS = {
    ("trained", False): {"empty", "a killed writer's lock alone", *STARTS_OVER},
    ("trained", True): {"empty", "a killed writer's lock alone", *STARTS_OVER, "trained"},
    ("attached", False): {"empty", "a killed writer's lock alone", "attached, unfinished"},
    ("sweep", False): {"empty", "a killed writer's lock alone", "sweep"},
    ("dataset", False): {"empty", "a killed writer's lock alone"},
    # its runs are folders of their own (run steps of REPRODUCING.md), so other files are no bar
    ("reproducing", False): {"empty", "a killed writer's lock alone", "another project's config.json", "other files"},
}


def make(folder, files):
    folder.mkdir()
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return folder


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("held", FOLDERS)
@pytest.mark.parametrize("kind, resume", WRITERS)
def test_every_writer_takes_only_what_it_may_continue(tmp_path, held, kind, resume):
    folder = make(tmp_path / "out", FOLDERS[held])
    if held in WRITERS[kind, resume]:
        runs.check_writable(folder, kind, resume=resume)
    else:
        with pytest.raises(PerceptregError, match=str(folder)):
            runs.check_writable(folder, kind, resume=resume)


@pytest.mark.parametrize("changed, refused", [({}, False), ({"epochs": 5}, False),  # epochs may grow on resume
                                              ({"train_size": 400}, True), ({"lam": 1.0}, True),
                                              ({"epochs": 0 + 1}, False)])
def test_a_run_continues_only_with_its_own_settings(tmp_path, changed, refused):
    folder = make(tmp_path / "run", FOLDERS["trained"])
    config = TrainConfig.from_dict({**TRAIN, **changed})
    if refused:
        with pytest.raises(PerceptregError, match=f"was trained with {next(iter(changed))}"):
            runs.check_writable_for_training(folder, config, resume=True)
    else:
        runs.check_writable_for_training(folder, config, resume=True)


@pytest.mark.parametrize("metrics", {
    "a folder": lambda path: path.mkdir(),
    "a link to nowhere": lambda path: path.symlink_to(path.parent / "gone.jsonl"),
    "a link to itself": lambda path: path.symlink_to(path),
    "a FIFO": os.mkfifo,
}.items(), ids=lambda item: item[0] if isinstance(item, tuple) else "")
def test_a_resume_before_the_first_checkpoint_refuses_a_metrics_file_it_cannot_append_to(tmp_path, metrics):
    folder = make(tmp_path / "run", FOLDERS["trained, stopped before its first checkpoint"])
    metrics[1](folder / runs.METRICS)  # no epoch done: no history read, the epochs would be appended to it
    with pytest.raises(PerceptregError, match=f"^{folder / runs.METRICS}"):
        runs.check_writable_for_training(folder, TrainConfig.from_dict(TRAIN), resume=True)


def test_a_resume_may_not_cut_a_run_shorter_than_it_is(tmp_path):
    folder = make(tmp_path / "run", {**FOLDERS["trained"], runs.STATE_META: sealed({**RAW_STATE, "epoch": 3})})
    with pytest.raises(PerceptregError, match="has 3 epochs; `epochs` must be at least 3"):
        runs.check_writable_for_training(folder, TrainConfig.from_dict({**TRAIN, "epochs": 1}), resume=True)


def run_cli(args):
    return CliRunner().invoke(main, args)


# each writer, from the command line, pointed at a folder of another kind
COMMANDS = {
    "train": lambda out: run_cli(["train", "--epochs", "1", "--out", str(out), "--quiet"]),
    "train --resume": lambda out: run_cli(["train", "--resume", "--out", str(out), "--quiet"]),
    "attach": lambda out: run_cli(["attach", "--model", f"{USER_NET}:build", "--layers", "fc1", "--out", str(out)]),
    "sweep": lambda out: run_cli(["sweep", "--quick", "--out", str(out)]),
    "prepare": lambda out: run_cli(["prepare", "--dataset", "mnist5k", "--out", str(out)]),
}


@pytest.mark.parametrize("command, held", [("train", "attached"), ("train", "sweep"), ("train --resume", "attached"),
                                           ("train --resume", "trained, state.json lost"),
                                           ("train", "trained, state.json lost"), ("attach", "trained"),
                                           ("attach", "sweep"), ("sweep", "trained"), ("sweep", "attached"),
                                           ("prepare", "trained")])
def test_each_command_refuses_another_kind_with_one_line_and_changes_nothing(tmp_path, command, held):
    folder = make(tmp_path / "out", FOLDERS[held])
    before = snapshot(folder)
    result = COMMANDS[command](folder)
    assert result.exit_code == 1, result.output
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output, result.output
    assert snapshot(folder) == before


@pytest.mark.parametrize("out, message", [("", "is empty"), ("x" * 300, "longer than 255 bytes"),
                                          ("/proc/run", "not writable"), (sys.executable + "/run", "not a folder")])
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(out, message):
    result = run_cli(["train", "--out", out, "--quiet"])
    assert result.exit_code in (1, 2) and message in result.output, result.output
    assert "Traceback" not in result.output
