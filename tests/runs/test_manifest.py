"""state.json and model.json as read back: names confined to the run folder, every field
checked, one error naming the file instead of a traceback."""

import json
import os
import shutil

import pytest
import torch
from helpers import rewrite_state

from perceptreg import runs
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import build

STATE_DAMAGE = {  # a change to state.json -> the words of the error
    "files naming ../config.json": (lambda s: s["files"].update(model="../config.json"), "files.model"),
    "files naming /etc/passwd": (lambda s: s["files"].update(model="/etc/passwd"), "files.model"),
    "files without a model": (lambda s: s["files"].pop("model"), "files.model"),
    "num_classes 1e9": (lambda s: s["model"].update(num_classes=10**9), "model.num_classes"),
}


@pytest.fixture
def run(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def damage(run, change):
    rewrite_state(run, change)


@pytest.mark.parametrize("case", STATE_DAMAGE)
def test_a_damaged_state_json_is_one_error_naming_it(run, case):
    change, field = STATE_DAMAGE[case]
    damage(run, change)
    with pytest.raises(PerceptregError, match=rf"{runs.STATE_META}: field {field}"):
        runs.open_run(run).model()


@pytest.mark.parametrize("where", ['"epoch": ', '"model-000002.safetensors": "', '"num_classes": 1', '"lam": '])
def test_a_flipped_bit_in_state_json_names_state_json(run, where):
    """A bit flipped in a digit of state.json (the epoch, a file's SHA-256, what built the model)
    is still valid JSON of the right types: its checksum (or its schema, where the bit broke a
    range: 11 classes of 10 names) names state.json, not the model file."""
    text = (run / runs.STATE_META).read_bytes()
    at = text.index(where.encode()) + len(where)
    changed = text[at] ^ 1 if chr(text[at]).isdigit() else ord("0")  # a hex letter a..f: f ^ 1 is no hex digit
    (run / runs.STATE_META).write_bytes(text[:at] + bytes([changed]) + text[at + 1:])
    with pytest.raises(PerceptregError, match=rf"{runs.STATE_META}: (.*checksum|field model: .*class names)"):
        runs.open_run(run).model()


@pytest.mark.parametrize("content", ["[]", "null", '{"format": 1}'])
def test_a_damaged_model_json_is_one_error_naming_it(run, content):
    damage(run, lambda s: s.update(files=None))  # an old run: model.json is what describes its model
    (run / runs.MODEL_META).write_text(content)
    with pytest.raises(PerceptregError, match=runs.MODEL_META):
        runs.open_run(run).model()


def test_a_state_json_whose_optimizer_is_empty_is_refused_on_resume(run):
    damage(run, lambda s: s.update(optimizer={}))
    config = runs.read_config(run)
    model = build(config.arch, 10)
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(PerceptregError, match=rf"{runs.STATE_META}: field param_groups"):
        runs.load_state(run, model, optimizer, torch.amp.GradScaler("cpu", enabled=False), world=1)
    assert isinstance(config, TrainConfig)


def test_a_checkpoint_file_linked_out_of_the_run_is_refused(run, tmp_path):
    state = json.loads((run / runs.STATE_META).read_text())
    target = run / state["files"]["model"]
    shutil.copy(target, tmp_path / "elsewhere.safetensors")
    target.unlink()
    target.symlink_to(tmp_path / "elsewhere.safetensors")
    with pytest.raises(PerceptregError, match="outside"):
        runs.open_run(run).model()


def test_settle_refuses_a_damaged_committed_model_and_republishes_a_missing_one(run):
    """A resume with nothing left to train does not call a damaged run finished."""
    (run / runs.MODEL).unlink()  # the published copy only: put back from the committed epoch
    runs.settle(run)
    assert (run / runs.MODEL).read_bytes() == runs.open_run(run).weights_file().read_bytes()
    (run / runs.MODEL).unlink()
    (run / runs.MODEL).mkdir()  # not a file: named, not left in place by a resume that says it is done
    with pytest.raises(PerceptregError, match=rf"{run / runs.MODEL} exists and is not a regular file"):
        runs.settle(run)
    committed = runs.open_run(run).weights_file()
    committed.unlink()
    os.mkfifo(committed)  # the epoch's own file: read, it would block; refused before
    with pytest.raises(PerceptregError, match=rf"{committed} is not a regular file"):
        runs.settle(run)


def test_settle_removes_epoch_files_the_manifest_does_not_name(run):
    (run / "model-000099.safetensors").write_bytes(b"an epoch a kill left behind")
    named = set(json.loads((run / runs.STATE_META).read_text())["files"].values())
    runs.settle(run)
    assert {p.name for p in run.glob("*-" + "[0-9]" * 6 + ".safetensors")} == named
