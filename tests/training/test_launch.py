"""training.launch: train's settings, as the CLI and Python both resolve them."""

import json
import warnings

import pytest

from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.training.launch import fresh_run_dir, launch


def write_config(folder, **settings):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(TrainConfig(**settings).to_dict()))
    return folder


def test_settings_left_out_take_the_datasets_defaults_then_trainconfigs(tmp_path):
    config, out, resume = launch({"dataset": "celeba:Eyeglasses", "lam": 0.5, "seed": None}, tmp_path / "run")
    assert (config.arch, config.epochs, config.lr_drop_epoch) == ("celeba", 30, 20)  # the registry's schedule
    assert (config.lam, config.seed, out, resume) == (0.5, 0, tmp_path / "run", False)
    assert launch({"dataset": "celeba:Eyeglasses", "epochs": 3}, tmp_path / "run").config.epochs == 3  # given wins


def test_a_classifier_from_run_gives_its_data_and_architecture(tmp_path):
    source = write_config(tmp_path / "joint", dataset="svhn", arch="svhn", z_dim=16, data_root="d")
    config = launch({"classifier_from": str(source)}, tmp_path / "new").config
    assert (config.dataset, config.arch, config.z_dim, config.data_root, config.mode) == ("svhn", "svhn", 16, "d",
                                                                                         "post-hoc")


def test_resume_continues_the_runs_own_config_with_the_settings_given(tmp_path):
    run = write_config(tmp_path / "run", lam=0.25, epochs=2, train_size=100)
    config, out, resume = launch({"epochs": 3, "lam": None}, run, resume=True)
    assert (config.lam, config.epochs, config.train_size, out, resume) == (0.25, 3, 100, run, True)
    with pytest.raises(PerceptregError, match="`resume` needs `out`"):
        launch({}, None, resume=True)


def test_a_resume_of_a_folder_without_a_run_starts_over_with_a_warning(tmp_path):
    (tmp_path / "killed").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config, out, resume = launch({"lam": 0.5}, tmp_path / "killed", resume=True)
    assert resume is False and config.lam == 0.5
    assert [str(w.message) for w in caught] == [f"{tmp_path / 'killed'} holds no run yet (stopped before its "
                                                "config.json was written): it starts over with the options given"]


def test_no_out_is_a_fresh_folder_named_by_the_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert launch({"lam": 1e-3, "mode": "post-hoc"}).out.as_posix() == "runs/mnist5k-lam0.001-post-hoc"
    write_config(tmp_path / "runs" / "demo")
    assert fresh_run_dir("runs/demo").as_posix() == "runs/demo-2"
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(PerceptregError, match="under torchrun, give `out`"):
        launch({})
