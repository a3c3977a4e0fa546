"""The run folder: file names in one place, reading what train wrote, resumability."""

import json

import pytest

from helpers import metrics_row

from perceptreg import runs
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.storage.schema import sealed


def test_a_trained_run_reads_back(trained_run):
    config = runs.read_config(trained_run)
    assert config.train_size == 500 and config.epochs == 2
    rows = runs.read_metrics(trained_run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert runs.completed_epochs(trained_run) == 2
    assert runs.open_run(trained_run).meta["format"] == runs.MODEL_FORMAT
    model = runs.open_run(trained_run).model()
    assert not model.training and model.input_shape == (1, 28, 28)
    train_data, test_data = runs.open_run(trained_run).data()
    assert len(test_data) == 1000 and len(train_data) == 4000  # the data, not the 500-image subset


def test_completed_epochs_follows_the_state_not_the_metrics(trained_run, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in (runs.CONFIG, runs.METRICS):
        (copy / name).write_bytes((trained_run / name).read_bytes())
    assert runs.completed_epochs(copy) == 0  # metrics without a checkpoint: nothing to trust
    (copy / runs.STATE_META).write_text(json.dumps(sealed({"epoch": 1, "optimizer": {}})))
    assert runs.completed_epochs(copy) == 1


def test_history_up_to_drops_later_epochs(tmp_path):
    for epoch in (1, 2, 3):
        runs.append_metrics(tmp_path, metrics_row(epoch))
    assert runs.history_up_to(tmp_path, 2) == [metrics_row(1), metrics_row(2)]
    assert runs.read_metrics(tmp_path) == [metrics_row(1), metrics_row(2)]


def test_prepare_refuses_a_changed_resume(tmp_path):
    runs.prepare(tmp_path, TrainConfig(lam=0.1), resume=False)
    (tmp_path / runs.STATE_META).write_text(json.dumps(sealed({"epoch": 1, "optimizer": {}})))
    runs.append_metrics(tmp_path, metrics_row(1))
    with pytest.raises(PerceptregError, match="was trained with lam 0.1 .asked 0.2."):
        runs.prepare(tmp_path, TrainConfig(lam=0.2), resume=True)
    runs.prepare(tmp_path, TrainConfig(lam=0.1, epochs=30), resume=True)  # longer is fine
    with pytest.raises(PerceptregError, match="already holds a run"):
        runs.prepare(tmp_path, TrainConfig(lam=0.1), resume=False)


def test_load_model_checks_the_device(trained_run):
    with pytest.raises(PerceptregError, match="`device` 'gpu0' is not a device"):
        runs.open_run(trained_run).model("gpu0")
