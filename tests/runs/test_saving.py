"""runs.saving: a model made in Python saved as a run folder that the CLI opens."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from user_net import SmallNet, build_perception_net, net

import perceptreg
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError

SRC = str(Path(__file__).resolve().parents[2] / "src")
USER_NET = str(Path(__file__).resolve().parents[1] / "user_net.py")

pytestmark = pytest.mark.usefixtures("one_thread")


def cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "perceptreg", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_an_attached_model_fitted_in_python_opens_in_the_cli_from_another_folder(digits, tmp_path):
    train = digits[0].subset(torch.arange(100))
    seen = perceptreg.attach(net(), ["stem", "fc1"], (1, 28, 28), decoder_params=20_000)
    loader = DataLoader(TensorDataset(train.images, train.labels), batch_size=50)
    history = perceptreg.fit_decoders(seen, loader, epochs=1, progress=False)
    run = perceptreg.save_run(seen, tmp_path / "runs" / "mine", dataset="mnist5k", history=history)
    assert run.kind == "attached" and run.config.model == f"{USER_NET}:SmallNet"  # its class, found
    assert (run.path / "source" / "user_net.py").is_file() and len(run.metrics) == 1
    # fitted one epoch, no sample of the test split chosen: what the run says of itself (issue 39)
    assert run.completed_epochs == 1 and "epochs=1" in repr(run) and repr(perceptreg.open_run(run.path)) == repr(run)
    assert run.config.eval_size is None
    x = train.images[:4].float() / 255
    assert torch.equal(run.attached_model().perceive(x, "stem"), seen.perceive(x, "stem"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shown = cli("perceive", str(run.path), "--n", "4", "--layer", "fc1", "--out", "p.png", cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert (elsewhere / "p.png").is_file()
    report = cli("report", str(run.path), cwd=elsewhere)
    assert report.returncode == 0, report.stderr
    assert (run.path / "report.html").is_file()


@pytest.mark.filterwarnings("ignore:the decoder has collapsed")
def test_a_network_trained_in_python_is_saved_with_its_source(tmp_path, small_mnist):
    config = TrainConfig(epochs=1, train_size=100, eval_size=50)
    result = perceptreg.train(config, tmp_path / "trained", model=build_perception_net(),
                              train_data=small_mnist[0], test_data=small_mnist[1], progress=False)
    with pytest.raises(PerceptregError, match="save_run"):  # before: it cannot be rebuilt
        perceptreg.open_run(result.run_dir).model()
    run = perceptreg.save_run(result, tmp_path / "copy", source=f"{USER_NET}:build_perception_net")
    assert run.config.source["copy"] == "source/user_net.py"
    x = small_mnist[1].images[:3].float() / 255
    assert torch.equal(run.model().perceive(x), result.model.eval().perceive(x))


@pytest.mark.parametrize("call, says", [
    (lambda seen, tmp: perceptreg.save_run(seen, tmp / "r"), "`dataset`: name the images"),
    (lambda seen, tmp: perceptreg.save_run(seen, tmp / "r", dataset="nope"), "unknown dataset 'nope'"),
    (lambda seen, tmp: perceptreg.save_run(seen, tmp / "r", dataset="mnist", source=f"{USER_NET}:build_sized",
                                           model_kwargs={"hidden": 32}), "differs from this one at 'fc1.0.bias'"),
    (lambda seen, tmp: perceptreg.save_run(seen.model, tmp / "r"), "got a SmallNet"),
])
def test_what_cannot_be_rebuilt_is_one_error_and_nothing_is_written(tmp_path, call, says):
    seen = perceptreg.attach(SmallNet(), ["stem"], (1, 28, 28))
    with pytest.raises(PerceptregError, match=says):
        call(seen, tmp_path)
    assert not (tmp_path / "r").exists()


def test_a_class_from_a_notebook_needs_its_source_named(tmp_path):
    class Inline(torch.nn.Module):  # defined in no file of its own: as in a notebook cell
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x.flatten(1))

    seen = perceptreg.attach(Inline(), ["fc"], (1, 2, 2))
    with pytest.raises(PerceptregError, match="pass source='FILE.py:FUNCTION'"):
        perceptreg.save_run(seen, tmp_path / "r", dataset="mnist")
