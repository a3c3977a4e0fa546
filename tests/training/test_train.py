import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from perceptreg import runs
from perceptreg.core import models
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.runs import manifest, open_run, read_metrics
from perceptreg.training import schedule
from perceptreg.training import train as training
from perceptreg.training.train import NonFiniteLossError, TrainResult, train, train_to_end

QUICK = dict(epochs=2, batch_size=32)


def run(tmp_path, small_mnist, name="run", model=None, **overrides):
    train_data, test_data = small_mnist
    config = TrainConfig(**{**QUICK, **overrides})
    return train(config, tmp_path / name, model=model, train_data=train_data,
                 test_data=test_data, progress=False)


@pytest.mark.slow
def test_short_run_learns_and_writes_the_run_folder(tmp_path, small_mnist):
    result = run(tmp_path, small_mnist, epochs=4)
    last = result.history[-1]
    # 1000 real digits, 4 epochs (measured: 82.5 %): far above chance, decoder image-like.
    assert last["test_accuracy"] >= 0.75
    assert last["test_recon_mse"] < 0.07 and not last["decoder_collapsed"]
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"config.json", "metrics.jsonl", "model.safetensors", "model.json",
            "state-000004.safetensors", "model-000004.safetensors", "state.json"} <= files
    assert not any(name.endswith("-000003.safetensors") for name in files)  # older epochs removed
    assert not any(name.endswith(".tmp") for name in files)
    rows = read_metrics(result.run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and rows == result.history
    assert {"train_ce", "train_recon", "test_accuracy", "test_recon_mse", "seconds"} <= rows[0].keys()
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["lam"] == 0.01 and config["epochs"] == 4 and config["reduction"] == "sum"
    meta = json.loads((result.run_dir / "model.json").read_text())
    assert meta["arch"] == "mnist" and meta["latent_shape"] == [32] and meta["versions"]["torch"]
    reloaded = open_run(result.run_dir).model()
    x = torch.rand(3, 1, 28, 28)
    result.model.eval()
    trained = result.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in reloaded.state_dict().items())
    # the trained copy is channels-last: same weights, other summation order
    torch.testing.assert_close(reloaded.perceive(x), result.model.perceive(x), atol=1e-5, rtol=0)


def test_a_run_with_a_larger_latent_reopens_with_it(tmp_path, small_mnist):
    result = run(tmp_path, small_mnist, epochs=1, z_dim=48, decoder_width=2)
    reloaded = open_run(result.run_dir).model()
    assert reloaded.latent_shape == (48,) and reloaded.decoder[1].out_channels == 64
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in reloaded.state_dict().items())


def test_a_custom_model_is_not_sized_by_z_dim():
    with pytest.raises(PerceptregError, match="`z_dim`"):
        TrainConfig(arch="custom", model="net.py:build", z_dim=16)


@pytest.mark.slow
def test_resume_reaches_the_same_weights(tmp_path, small_mnist):
    run(tmp_path, small_mnist, "whole", epochs=3)
    run(tmp_path, small_mnist, "parts", epochs=2)
    train_data, test_data = small_mnist
    # what is evaluated may change on resume (it changes no weight): 100 of the 200 test digits
    resumed = train(TrainConfig(**{**QUICK, "epochs": 3, "eval_size": 100}), tmp_path / "parts", resume=True,
                    train_data=train_data, test_data=test_data, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.history[2]["test_accuracy"] * 100 == pytest.approx(round(resumed.history[2]["test_accuracy"] * 100))
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("whole", "parts"))
    assert all(torch.equal(a[k], b[k]) for k in a)



def test_train_to_end_trains_resumes_a_killed_run_and_only_opens_a_finished_one(tmp_path, small_mnist, monkeypatch):
    train_data, test_data = small_mnist
    run(tmp_path, small_mnist, "killed", epochs=1)  # a run of 2 epochs, as if killed after its first
    resumed, real = [], training.train
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: resumed.append(kwargs["resume"]) or real(*args, **kwargs))
    ends = [train_to_end(TrainConfig(**QUICK), tmp_path / name, train_data=train_data, test_data=test_data,
                         progress=False) for name in ("fresh", "killed", "killed")]
    assert resumed == [False, True]  # a new run, then the killed one resumed; the finished one only opened
    assert [[row["epoch"] for row in end.metrics] for end in ends] == [[1, 2]] * 3
    assert runs.completed_epochs(tmp_path / "killed") == 2

@pytest.mark.slow
def test_kill_and_resume_from_the_cli_equals_an_uninterrupted_run(tmp_path, one_thread):
    # small through the real flags. Only the run to kill needs a process of its own; the whole
    # run and the resume go through the CLI in this one (a process start is most of their time).
    # One thread in both processes: the thread count sets the order of float sums.
    from click.testing import CliRunner

    from perceptreg.cli import main

    args = ["train", "--train-size", "500", "--eval-size", "200", "--epochs", "4", "--quiet"]
    whole = CliRunner().invoke(main, args + ["--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    victim = subprocess.Popen([sys.executable, "-m", "perceptreg", *args, "--out", str(tmp_path / "killed")],
                              env={**os.environ, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "state.json"
    deadline = time.time() + 600  # generous: on a loaded machine the first epoch took over 60 s
    while not state.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    reached = json.loads(state.read_text())["epoch"]
    assert 1 <= reached < 4
    resumed = CliRunner().invoke(main, args + ["--out", str(tmp_path / "killed"), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("whole", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in read_metrics(tmp_path / "killed")] == [1, 2, 3, 4]


def test_resume_refuses_a_changed_config(tmp_path, small_mnist):
    run(tmp_path, small_mnist, epochs=1)
    with pytest.raises(PerceptregError, match=r"lam 0\.01 .*1\.0"):
        train(TrainConfig(**{**QUICK, "lam": 1.0}), tmp_path / "run", resume=True,
              train_data=small_mnist[0], test_data=small_mnist[1], progress=False)


def test_refuses_to_overwrite_a_run(tmp_path, small_mnist):
    run(tmp_path, small_mnist, epochs=1)
    with pytest.raises(PerceptregError, match="`resume`"):
        run(tmp_path, small_mnist, epochs=1)


def test_resume_without_state(tmp_path):
    with pytest.raises(PerceptregError, match="no run to resume here"):
        train(TrainConfig(), tmp_path, resume=True)


def test_user_defined_modules_train(tmp_path, small_mnist):
    net = models.PerceptionNet(
        nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 20)),
        nn.Sequential(nn.ReLU(), nn.Linear(20, 10)),
        nn.Sequential(nn.Linear(20, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28))),
        input_shape=(1, 28, 28))
    result = run(tmp_path, small_mnist, model=net, arch="custom", epochs=4)
    assert result.history[-1]["test_accuracy"] > 0.6
    assert result.history[-1]["test_recon_mse"] < result.history[0]["test_recon_mse"]
    with pytest.raises(PerceptregError, match="holds a custom model built in Python; pass it"):
        open_run(result.run_dir).model()
    assert open_run(result.run_dir).model(net=net) is net


class ExplodesOnCall(nn.Module):
    """A classifier head whose output becomes infinite on the n-th training call."""

    def __init__(self, n):
        super().__init__()
        self.linear, self.calls, self.n = nn.Linear(32, 10), 0, n

    def forward(self, z):
        self.calls += self.training
        out = self.linear(z)
        return out * float("inf") if self.training and self.calls == self.n else out


def test_non_finite_loss_names_epoch_and_batch_and_keeps_last_checkpoint(tmp_path, small_mnist):
    net = models.mnist()
    per_epoch = -(-len(small_mnist[0]) // QUICK["batch_size"])
    net.classifier = ExplodesOnCall(per_epoch + 3)  # epoch 2, batch 3
    with pytest.raises(NonFiniteLossError, match="epoch 2, batch 3.*epoch 1"):
        run(tmp_path, small_mnist, model=net, arch="custom", epochs=3)
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epoch"] == 1
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


@pytest.mark.slow
def test_collapsed_decoder_is_reported(tmp_path, small_mnist):
    # Without the output-bias fix the summed squared error drives the sigmoid decoder to
    # all black (PAPER-NOTES, training pitfall).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(tmp_path, small_mnist, init_output_bias=False, epochs=3)
    last = result.history[-1]
    assert last["decoder_collapsed"] and last["recon_spread"] < 0.1
    assert last["test_recon_mse"] > 0.09  # about the mean of x^2: the all-black picture
    assert any("decoder has collapsed" in str(w.message) for w in caught)
    assert json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])["decoder_collapsed"]


@pytest.mark.slow
def test_post_hoc_trains_decoder_on_a_frozen_classifier(tmp_path, small_mnist):
    result = run(tmp_path, small_mnist, mode="post-hoc", epochs=2, decoder_epochs=3)
    phases = [r["phase"] for r in result.history]
    assert phases == ["classifier"] * 2 + ["decoder"] * 3
    accuracies = {r["test_accuracy"] for r in result.history[1:]}
    assert len(accuracies) == 1  # F and C frozen in the decoder phase: same predictions
    mse = [r["test_recon_mse"] for r in result.history]
    assert mse[:2] == [None, None] and mse[2] > mse[3] > mse[4]
    assert result.history[0]["train_recon"] is None and result.history[2]["train_ce"] is None


def test_lr_schedule_and_phases():
    config = TrainConfig(epochs=25, lr_drop_epoch=20)
    assert [schedule.lr_at(config, e) for e in (1, 20, 21, 25)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    post_hoc = TrainConfig(mode="post-hoc", epochs=2, decoder_epochs=3, lr_drop_epoch=1)
    assert post_hoc.total_epochs == 5
    assert [schedule.phase(post_hoc, e) for e in range(1, 6)] == ["classifier"] * 2 + ["decoder"] * 3
    assert [schedule.lr_at(post_hoc, e) for e in range(1, 6)] == pytest.approx([1e-3, 1e-4, 1e-3, 1e-4, 1e-4])
    assert {schedule.lr_at(TrainConfig(lr_drop_epoch=0), e) for e in (1, 30)} == {1e-3}  # 0: never


@pytest.mark.parametrize("field, value, message", [
    ("lam", -1.0, "`lam` must be a finite number >= 0"), ("epochs", 0, "`epochs` must be in \\[1, 10,000\\]"),
    ("mode", "frozen", "`mode` must be one of joint, post-hoc"),
    ("reduction", "max", "`reduction` must be one of sum, mean"), ("device", "tpu", "`device` 'tpu' is not"),
    ("eval_size", -1, "`eval_size` must be in \\[0, 10,000,000\\] \\(0: the whole test split\\)"),
    ("eval_size", 10**12, "`eval_size` must be in \\[0, 10,000,000\\]"),  # a typo: refused, not clamped
    ("train_size", 10**12, "`train_size` must be in \\[10, 10,000,000\\]"),
    ("batch_size", 10**9, "`batch_size` must be in \\[1, 10,000,000\\]"),
    ("decoder_batch_size", 10**9, "`decoder_batch_size` must be in \\[1, 10,000,000\\]"),
    ("z_dim", 0, "`z_dim` must lie in 1..4096"), ("decoder_width", 9, "`decoder_width` must lie in 1..8"),
    ("epochs", 10**12, "`epochs` must be in \\[1, 10,000\\]"), ("decoder_epochs", 10_001, "`decoder_epochs` must be in"),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(PerceptregError, match=message):
        TrainConfig(**{field: value})


@pytest.mark.slow  # over 2 s alone: the fast lane leaves it out
def test_each_epoch_evaluates_the_fixed_held_out_sample(tmp_path, small_mnist, monkeypatch):
    import perceptreg.training.train as training
    from perceptreg import data

    seen = []
    evaluate = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda model, d, **kw: seen.append(d.labels) or evaluate(model, d, **kw))
    for name, eval_size in (("sample", 50), ("whole", 0), ("none", None), ("larger", 10_000)):
        run(tmp_path, small_mnist, name, epochs=2, eval_size=eval_size)
    test_labels = small_mnist[1].labels
    sample = data.evaluation_subset(small_mnist[1], 50).labels
    assert torch.equal(seen[0], sample) and torch.equal(seen[1], sample)  # the same images every epoch
    assert sample.bincount().tolist() == [5] * 10  # stratified: 200 test digits, 20 of each class
    assert all(torch.equal(labels, test_labels) for labels in seen[2:])  # 0, None, >= 200: all of them


def test_a_config_saved_before_eval_size_loads_with_the_default():
    saved = {k: v for k, v in TrainConfig().to_dict().items() if k != "eval_size"}
    assert TrainConfig.from_dict(saved).eval_size == 10_000


def test_config_from_dict_names_unknown_keys():
    with pytest.raises(PerceptregError, match="unknown config key.s. lamda"):
        TrainConfig.from_dict({"lamda": 1.0})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on CPU-only machines")
def test_cuda_missing_is_a_clear_error(tmp_path):
    with pytest.raises(PerceptregError, match="CUDA is not available on this machine"):
        train(TrainConfig(device="cuda"), tmp_path)


@pytest.mark.slow
def test_post_hoc_decoder_for_another_runs_classifier(tmp_path, small_mnist):
    joint = run(tmp_path, small_mnist, "joint", epochs=2)
    decoder = run(tmp_path, small_mnist, "decoder", mode="post-hoc", epochs=1, decoder_epochs=2, lam=0.0,
                  classifier_from=str(joint.run_dir))
    assert [r["phase"] for r in decoder.history] == ["decoder", "decoder"]
    ours, theirs = decoder.model.state_dict(), joint.model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if not k.startswith("decoder."))
    assert not torch.equal(ours["decoder.1.weight"], theirs["decoder.1.weight"])
    # the very same classifier: the same test accuracy, to the image
    assert decoder.history[-1]["test_accuracy"] == joint.history[-1]["test_accuracy"]
    with pytest.raises(PerceptregError, match="`classifier_from` needs mode post-hoc"):
        TrainConfig(classifier_from="x")


def test_post_hoc_decoder_for_a_run_of_another_architecture(tmp_path, small_mnist):
    joint = run(tmp_path, small_mnist, "joint", epochs=1)
    net = models.PerceptionNet(nn.Sequential(nn.Flatten(), nn.Linear(784, 32)), nn.Linear(32, 10),
                               nn.Sequential(nn.Linear(32, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28))), (1, 28, 28))
    with pytest.raises(PerceptregError, match="weights do not fit this model"):
        run(tmp_path, small_mnist, "other", model=net, arch="custom", mode="post-hoc",
            classifier_from=str(joint.run_dir))


def test_decoder_phase_has_its_own_batch_size(tmp_path, small_mnist):
    run(tmp_path, small_mnist, "ph", mode="post-hoc", epochs=1, decoder_epochs=1, batch_size=32,
        decoder_batch_size=100)
    state = load_file(str(manifest.state_file(tmp_path / "ph", manifest.read_state(tmp_path / "ph"))))
    assert state["optim.0.step"].item() == 32  # encoder: ceil(1000 / 32) classifier-phase steps
    assert state["optim.19.step"].item() == 10  # decoder's last bias: 1000 / 100 decoder-phase steps
    assert schedule.batch_size_at(TrainConfig(mode="post-hoc", epochs=2, decoder_batch_size=8), 3) == 8
    assert schedule.batch_size_at(TrainConfig(mode="post-hoc", epochs=2, decoder_batch_size=8), 2) == 64


@pytest.mark.parametrize("values, message", [
    ([], "config.json: .*list"),
    ({"lam": "abc"}, "config.json: setting dataset"),  # the run's settings, not defaults
    ({**TrainConfig().to_dict(), "lam": "abc"}, "config.json: setting lam"),
    ({**TrainConfig().to_dict(), "lr_drop_epoch": -1}, r"config.json: lr_drop_epoch must be >= 0"),
    ({**TrainConfig().to_dict(), "lam": float("inf")}, "config.json: setting lam"),
])
def test_config_from_dict_rejects_bad_files(values, message):
    with pytest.raises(PerceptregError, match=message):
        TrainConfig.from_dict(values, "config.json")


class WithBatchNorm(torch.nn.Module):
    """An encoder with BatchNorm and Dropout: what "frozen" must leave alone."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.BatchNorm1d(32),
                                        torch.nn.ReLU(), torch.nn.Dropout(0.5))

    def forward(self, x):
        return self.body(x)


def test_post_hoc_decoder_phase_keeps_the_frozen_encoder_in_eval_mode(tmp_path, small_mnist):
    torch.manual_seed(0)
    net = models.PerceptionNet(WithBatchNorm(), torch.nn.Linear(32, 10),
                               torch.nn.Sequential(torch.nn.Linear(32, 784), torch.nn.Sigmoid(),
                                                   torch.nn.Unflatten(1, (1, 28, 28))), (1, 28, 28))
    config = TrainConfig(arch="custom", mode="post-hoc", epochs=1, decoder_epochs=2, train_size=300, batch_size=50)
    after_classifier = {}
    real_save = runs.save_checkpoint

    def save(run_dir, model, *args, **kwargs):  # the encoder after each epoch
        after_classifier.setdefault(len(after_classifier) + 1, {k: v.clone() for k, v in model.encoder.state_dict().items()})
        real_save(run_dir, model, *args, **kwargs)

    runs.save_checkpoint = save
    try:
        train(config, tmp_path / "ph", model=net, train_data=small_mnist[0], test_data=small_mnist[1], progress=False)
    finally:
        runs.save_checkpoint = real_save
    first, last = after_classifier[1], after_classifier[3]
    assert all(torch.equal(first[k], last[k]) for k in first)  # running mean and var included
    assert first["body.2.num_batches_tracked"] == last["body.2.num_batches_tracked"] > 0


def test_post_hoc_classifier_epochs_are_fixed_once_started(tmp_path, small_mnist):
    config = TrainConfig(mode="post-hoc", epochs=1, decoder_epochs=1, train_size=200, batch_size=50)
    train(config, tmp_path / "ph", train_data=small_mnist[0], test_data=small_mnist[1], progress=False)
    with pytest.raises(PerceptregError, match=r"epochs 1 .*3"):
        train(TrainConfig(mode="post-hoc", epochs=3, decoder_epochs=1, train_size=200, batch_size=50), tmp_path / "ph",
              resume=True, train_data=small_mnist[0], test_data=small_mnist[1], progress=False)
    longer = TrainConfig(mode="post-hoc", epochs=1, decoder_epochs=3, train_size=200, batch_size=50)
    result = train(longer, tmp_path / "ph", resume=True, train_data=small_mnist[0], test_data=small_mnist[1],
                   progress=False)
    assert [row["phase"] for row in result.history] == ["classifier", "decoder", "decoder", "decoder"]


def test_a_train_result_repr_is_one_line_without_the_model():
    history = [{"epoch": 1, "test_accuracy": 0.5, "test_recon_mse": 0.25},
               {"epoch": 2, "test_accuracy": 0.875, "test_recon_mse": 0.0625}]
    result = TrainResult(models.mnist(), history, Path("runs/demo"))
    assert repr(result) == "TrainResult(run_dir='runs/demo', 2 epochs, test accuracy 0.8750, test MSE/pixel 0.0625)"
    assert repr(TrainResult(models.mnist(), [], Path("x"))) == "TrainResult(run_dir='x', 0 epochs)"
