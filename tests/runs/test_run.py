"""The run object: a run folder read and validated once, its two kinds, and the route an
evaluation takes through it."""

import collections
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import route
from safetensors.torch import load_file

from perceptreg import runs
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.run_attacks import evaluate_run
from perceptreg.core.errors import PerceptregError
from perceptreg.runs import AttachedRun, TrainedRun, open_run


@pytest.fixture
def json_reads(monkeypatch):
    """How often each JSON file is read, by name."""
    reads = collections.Counter()
    real = Path.read_text

    def counting(self, *args, **kwargs):
        if self.suffix in (".json", ".jsonl"):
            reads[self.name] += 1
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Path, "read_text", counting)
    return reads


def test_a_run_is_read_once_and_says_what_it_holds(trained_run, json_reads):
    run = open_run(trained_run)
    assert isinstance(run, TrainedRun) and run.kind == "trained" and run.path == trained_run
    assert run.config.dataset == "mnist5k" and run.config.train_size == 500
    assert [row["epoch"] for row in run.metrics] == [1, 2] and run.completed_epochs == 2
    assert run.classes == tuple(str(d) for d in range(10)) and run.input_shape == (1, 28, 28)
    assert run.num_classes == 10 and run.meta["format"] == runs.MODEL_FORMAT
    assert dict(json_reads) == {"config.json": 1, "state.json": 1, "metrics.jsonl": 1}


def test_the_model_and_data_come_from_the_opened_run(trained_run):
    run = open_run(trained_run)
    model = run.model()
    train_data, test_data = run.data()
    assert run.data()[1] is test_data  # loaded once
    assert len(test_data) == 1000 and train_data.image_shape == (1, 28, 28)
    assert not model.training and model.input_shape == (1, 28, 28)
    saved = load_file(str(run.weights_file()))
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_an_evaluation_follows_the_run_in_at_most_ten_stops_and_reads_each_json_once(trained_run, json_reads):
    run = open_run(trained_run)
    stops = route(lambda: evaluate_run(run, AttackSettings(steps=2), images=10), run, trained_run)
    assert stops[0] == "perceptreg.adversarial.run_attacks.evaluate_run"
    assert len(stops) <= 10, stops
    assert max(json_reads.values()) == 1, json_reads


def test_a_layer_is_refused_for_a_run_of_train(trained_run):
    with pytest.raises(PerceptregError, match="a run of `train`, its one latent is z"):
        open_run(trained_run).model(layer="block1")


def test_a_folder_without_a_config_is_refused_naming_it(tmp_path):
    with pytest.raises(PerceptregError, match=f"{tmp_path}: no config.json"):
        open_run(tmp_path)
    (tmp_path / runs.SWEEP_JSON).write_text("{}")
    with pytest.raises(PerceptregError, match="a sweep folder: open one of its models"):
        open_run(tmp_path)
    (tmp_path / runs.CONFIG).mkdir()  # there, but not a file: said so, not "no config.json"
    with pytest.raises(PerceptregError, match=f"{tmp_path / runs.CONFIG} is not a regular file"):
        open_run(tmp_path)


def test_a_run_stopped_before_its_first_checkpoint_has_no_model_yet(trained_run, tmp_path):
    started = tmp_path / "started"
    started.mkdir()
    shutil.copy(trained_run / runs.CONFIG, started / runs.CONFIG)
    run = open_run(started)
    assert run.completed_epochs == 0 and run.metrics == () and run.meta is None
    with pytest.raises(PerceptregError, match="no model yet"):
        run.model()


def test_a_damaged_state_file_is_one_error_naming_it(trained_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    (copy / runs.STATE_META).write_text(json.dumps({"epoch": "two"}))
    with pytest.raises(PerceptregError, match="state.json: field"):
        open_run(copy)


def test_an_attach_run_is_the_other_kind(digits, tmp_path):
    from helpers import USER_NET

    from perceptreg.attaching.attach_run import AttachResult, run_attach
    from perceptreg.core.config import AttachConfig

    result = run_attach(AttachConfig(model=f"{USER_NET}:build", layers=("stem", "fc1"), train_size=100, epochs=1,
                                     random_weights=True),
                        tmp_path / "a", AttackSettings(steps=2), attack_images=10, progress=False)
    assert isinstance(result, AttachResult) and "<td>stem</td>" in result._repr_html_()  # a table in Jupyter
    assert result.run_dir == tmp_path / "a" and result.accuracy == result.layers.accuracy > 0
    run = open_run(tmp_path / "a")
    assert isinstance(run, AttachedRun) and run.kind == "attached" and run.layers == ("stem", "fc1")
    assert run.model().layer == "fc1" and run.model(layer="stem").layer == "stem"
    assert run.attached_model().layers == ("stem", "fc1")


def test_a_run_opened_while_it_trains_reads_the_last_complete_epoch(tmp_path, small_mnist):
    from perceptreg.core.config import TrainConfig
    from perceptreg.training.train import train

    config = TrainConfig(train_size=200, epochs=1, batch_size=50)
    train(config, tmp_path, train_data=small_mnist[0], test_data=small_mnist[1], progress=False)
    run = open_run(tmp_path)  # state.json names epoch 1's files
    train(dataclasses.replace(config, epochs=2), tmp_path, train_data=small_mnist[0], test_data=small_mnist[1],
          resume=True, progress=False)  # the writer commits epoch 2 and removes epoch 1's files
    assert not (tmp_path / "model-000001.safetensors").exists()
    run.model()  # was "model-000001.safetensors is missing"
    assert run.completed_epochs == 2


def test_open_run_hands_back_a_run_already_opened(trained_run):
    run = runs.open_run(trained_run)
    assert runs.open_run(run) is run  # every call that takes a run takes its folder too, opened once
