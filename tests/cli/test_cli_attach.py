"""`perceptreg attach` end to end, on a classifier written outside the library."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import USER_NET
from safetensors.torch import load_file, save_file
from user_net import build

from perceptreg import data, runs
from perceptreg.cli import main
from perceptreg.runs import open_run

LAYERS = "stem,block1,block2,fc1"
QUICK = ["--train-size", "500", "--epochs", "2", "--attack-images", "40", "--steps", "5", "--quiet"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory, mnist5k):
    """The user's net trained with cross-entropy alone: 2 epochs on 1000 digits."""
    torch.manual_seed(0)
    net = build()
    train = data.training_subset(mnist5k[0], 1000, 0)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for epoch in range(2):
        for x, y in data.batches(train, 64, shuffle=True, generator=torch.Generator().manual_seed(epoch)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    path = tmp_path_factory.mktemp("user") / "net.safetensors"
    save_file(net.state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def attached_run(weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("attach") / "run"
    result = CliRunner().invoke(main, ["attach", "--model", f"{USER_NET}:build", "--weights", str(weights),
                                       "--layers", LAYERS, "--eval-size", "100", "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_attach_writes_the_measures_per_layer(attached_run, weights):
    out, output = attached_run
    summary = json.loads((out / runs.LAYERS_JSON).read_text())
    assert [row["name"] for row in summary["layers"]] == LAYERS.split(",")
    assert [row["shape"] for row in summary["layers"]] == [[16, 14, 14], [16, 14, 14], [32, 7, 7], [64]]
    mse = [row["test_recon_mse"] for row in summary["layers"]]
    assert mse[0] < mse[-1]  # the stem keeps more of the image than the last hidden layer
    for row in summary["layers"]:
        assert 0 <= row["p_adv_read_as_adversarial"] + row["p_adv_read_as_true"] <= 1
        assert row["decoder_parameters"] > 0 and 0 <= row["detector_roc_auc"] <= 1
    for line in ("stem", "fc1", "detector AUC", "test accuracy"):
        assert line in output
    # post hoc: the user's weights are in the run exactly as given
    given, saved = load_file(str(weights)), load_file(str(out / runs.MODEL))
    assert all(torch.equal(saved[f"model.{k}"], v) for k, v in given.items())
    assert {p.name for p in out.iterdir()} >= {runs.CONFIG, runs.METRICS, runs.MODEL, runs.MODEL_META,
                                               runs.LAYERS_PNG, runs.LAYERS_ATTACK_PNG}
    assert json.loads((out / runs.CONFIG).read_text())["weights_sha256"] == data.digest_of(weights)


def test_other_commands_take_an_attach_run_and_a_layer(attached_run, tmp_path):
    out, _ = attached_run
    runner = CliRunner()
    result = runner.invoke(main, ["perceive", str(out), "--layer", "block2", "--n", "4", "--read-size", "20",
                                   "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 0 and (tmp_path / "p.png").exists(), result.output
    result = runner.invoke(main, ["evaluate-attack", str(out), "--layer", "stem", "--images", "20", "--steps", "3"])
    assert result.exit_code == 0, result.output
    # every output names its layer (runs.for_layer), as perceive's perception_LAYER.png does
    written = json.loads((out / "attack_metrics_stem.json").read_text())
    assert written["runs"][str(out)]["images"] == 20 and written["settings"]["layer"] == "stem"
    assert (out / "attack_roc_stem.png").exists() and f"ROC curve: {out / 'attack_roc_stem.png'}" in result.output
    result = runner.invoke(main, ["attack", str(out), "--layer", "block2", "--pool", "10", "--steps", "2", "--n", "2"])
    assert result.exit_code == 0 and str(out / "attack_block2.png") in result.output, result.output
    result = runner.invoke(main, ["attack", str(out), "--from-noise", "--n", "1", "--steps", "2"])  # the deepest
    assert result.exit_code == 0 and (out / "attack_from_noise_fc1.png").exists(), result.output
    assert (out / "noise_metrics_fc1.json").exists()
    assert not {runs.ATTACK, runs.ATTACK_ROC, runs.ATTACK_METRICS, runs.ATTACK_FROM_NOISE} & set(
        p.name for p in out.iterdir())
    result = runner.invoke(main, ["report", str(out)])  # the deepest layer's attacks: none yet
    page = (out / runs.REPORT).read_text()
    assert result.exit_code == 0 and "P(x_adv) read as adversarial" in page
    assert f"perceptreg evaluate-attack {out} --layer fc1" in page
    result = runner.invoke(main, ["report", str(out), "--layer", "stem"])
    page = (out / "report_stem.html").read_text()
    assert result.exit_code == 0 and "Adversarial perception at layer stem" in page and "layer stem" in page
    assert "No attack measurements" not in page and f"perceptreg attack {out} --layer stem" in page
    model = runs.open_run(out).model(layer="block1")
    assert model.latent_shape == (16, 14, 14) and model.perceive(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    result = runner.invoke(main, ["interpolate", str(out), "--target", "3"])
    assert result.exit_code == 1 and "latent edits need a run of train" in result.output


@pytest.mark.slow
def test_joint_mode_fine_tunes_and_reports_the_change(weights, other_judge, tmp_path):
    out = tmp_path / "joint"
    judge = other_judge  # a run of another architecture judges (its own would be refused as a twin)
    result = CliRunner().invoke(main, ["attach", "--model", f"{USER_NET}:build", "--weights", str(weights),
                                       "--layers", "block2", "--mode", "joint", "--lam", "0.001", "--eval-size", "50",
                                       "--judge", str(judge), "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    assert "before fine-tuning" in result.output
    assert "accuracy on 50 test images" in result.output  # --eval-size: what each epoch is scored on
    assert json.loads((out / runs.LAYERS_JSON).read_text())["layers"][0]["judge"] == f"model {judge.name}"
    given, saved = load_file(str(weights)), load_file(str(out / runs.MODEL))
    assert any(not torch.equal(saved[f"model.{k}"], v) for k, v in given.items() if v.is_floating_point())


@pytest.mark.parametrize("args, message", [
    (["--layers", "stem,blok2"], "Error: --layers: the model has no module 'blok2'; valid names, closest first: block2"),
    (["--model", f"{USER_NET}:build_with_unused", "--layers", "unused"], "Error: --layers: unused never run"),
    (["--model", f"{USER_NET}:build_not_a_classifier", "--layers", "1"], "logits of shape (batch, classes)"),
    (["--model", f"{USER_NET}:nothing"], "has no function 'nothing'"),
    (["--model", USER_NET], "Error: --model"),
    (["--normalize", "0.5,0.5,0.5,0.2,0.2,0.2"], "Error: --normalize needs one value per input channel (1)"),
    (["--normalize", "0.5,0.2,0.1"], "Error: --normalize '0.5,0.2,0.1': give one mean per channel"),
    (["--dataset", "mnist-strips"], "Error: --input-shape (3, 32, 32): the model failed on a batch of 2 zeros"),
])
def test_bad_input_is_one_line_and_writes_nothing(args, message, weights, tmp_path):
    base = {"--model": f"{USER_NET}:build", "--weights": str(weights), "--layers": LAYERS}
    given = dict(zip(args[::2], args[1::2]))
    if given.get("--model", "").endswith(("not_a_classifier", "unused")):
        base.pop("--weights")
        given["--random-weights"] = None
    options = [item for key, value in {**base, **given}.items() for item in (key, value) if item is not None]
    result = CliRunner().invoke(main, ["attach", *options, "--out", str(tmp_path / "run"), *QUICK])
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_weights_for_another_model_a_pickled_model_or_none_are_refused(tmp_path):
    save_file({"fc.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    torch.save(build(), tmp_path / "whole.pt")  # the model object itself, pickled
    torch.save({"epoch": 3}, tmp_path / "no-tensors.pt")
    for weights, message in (
            (["--weights", str(tmp_path / "other.safetensors")], "weights do not fit this model: missing key(s)"),
            (["--weights", str(tmp_path / "other.pt")], "weights do not fit this model: missing key(s)"),
            (["--weights", str(tmp_path / "whole.pt")], "save its weights instead: torch.save(model.state_dict(), "),
            (["--weights", str(tmp_path / "no-tensors.pt")], "expected a state dict (names -> tensors)"),
            ([], "Error: --weights: no weights file; give the model's state dict (.safetensors, .pt or .pth), or "
                 "--random-weights")):
        result = CliRunner().invoke(main, ["attach", "--model", f"{USER_NET}:build", *weights,
                                           "--layers", "stem", "--out", str(tmp_path / "run"), *QUICK])
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("saved", ["plain", "checkpoint", "data-parallel"])
def test_pt_state_dicts_are_read_as_pytorch_users_save_them(saved, weights, tmp_path):
    state = load_file(str(weights))
    packed = {"plain": state, "checkpoint": {"state_dict": state, "epoch": 5, "best_acc1": 0.9},
              "data-parallel": {f"module.{k}": v for k, v in state.items()}}[saved]
    torch.save(packed, tmp_path / "net.pt")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["attach", "--model", f"{USER_NET}:build", "--weights", str(tmp_path / "net.pt"),
                                       "--layers", "fc1", "--out", str(out), "--train-size", "100", "--epochs", "1",
                                       "--eval-size", "50", "--attack-images", "10", "--steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    saved_model = load_file(str(out / runs.MODEL))
    assert all(torch.equal(saved_model[f"model.{k}"], v) for k, v in state.items())


def test_an_importable_function_with_keyword_arguments(weights, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["attach", "--model", "user_net:build_sized", "--model-kwargs", "hidden=32",
                                       "--random-weights", "--layers", "fc1", "--out", str(out), "--train-size",
                                       "100", "--epochs", "1", "--eval-size", "50", "--attack-images", "10", "--steps",
                                       "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / runs.LAYERS_JSON).read_text())["layers"][0]["shape"] == [32]
    config = json.loads((out / runs.CONFIG).read_text())
    assert config["model_kwargs"] == [["hidden", 32]] and config["source"]["copy"] == "source/user_net.py"
    assert open_run(out).model().seen.activation_shapes["fc1"] == (32,)
    result = CliRunner().invoke(main, ["attach", "--model", "no_such_package.nets:resnet", "--random-weights",
                                       "--layers", "fc1", "--out", str(tmp_path / "x"), *QUICK])
    assert result.exit_code == 1 and result.output == (
        "Error: --model 'no_such_package.nets:resnet': no module named 'no_such_package' is installed; install it, "
        "or name a file (FILE.py:FUNCTION)\n")


def test_the_given_models_accuracy_is_said_before_fitting_and_chance_is_warned(tmp_path):
    # the smallest fitting: the lines asked about come before it (the accuracy on the whole test split, the default)
    result = CliRunner().invoke(main, ["attach", "--model", f"{USER_NET}:build", "--random-weights", "--layers",
                                       "fc1", "--out", str(tmp_path / "run"), "--train-size", "100", "--epochs", "1",
                                       "--attack-images", "10", "--steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("your model's accuracy on 1000 test images of mnist5k, before fitting: ")
    assert lines[1].startswith("Warning: the model is near chance") and "--random-weights was given" in lines[1]
    assert "--normalize" in lines[1]



def test_train_takes_a_model_from_a_file_and_every_command_rebuilds_it(tmp_path):
    out = tmp_path / "mlp"
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--model", f"{USER_NET}:build_perception_net", "--train-size", "300",
                                  "--epochs", "1", "--eval-size", "50", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / runs.CONFIG).read_text())["model"] == f"{USER_NET}:build_perception_net"
    for args in (["perceive", str(out), "--n", "4", "--read-size", "20"],
                 ["attack", str(out), "--pool", "10", "--steps", "2"], ["report", str(out)]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
    result = runner.invoke(main, ["train", "--model", f"{USER_NET}:build", "--out", str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 1 and "must return a PerceptionNet" in result.output


def test_a_run_of_train_model_keeps_its_source_and_opens_after_the_file_moved(tmp_path, monkeypatch):
    made_in, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    made_in.mkdir(), elsewhere.mkdir()
    (made_in / "mynet.py").write_text(Path(USER_NET).read_text())
    monkeypatch.chdir(made_in)
    result = CliRunner().invoke(main, ["train", "--model", "mynet.py:build_perception_net", "--train-size", "100",
                                       "--epochs", "1", "--eval-size", "50", "--out", "runs/mlp", "--quiet"])
    assert result.exit_code == 0, result.output
    run_dir = made_in / "runs" / "mlp"
    assert (run_dir / "source" / "mynet.py").read_text() == Path(USER_NET).read_text()
    assert json.loads((run_dir / runs.CONFIG).read_text())["source"]["copy"] == "source/mynet.py"
    (made_in / "mynet.py").rename(tmp_path / "moved.py")
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(main, ["perceive", str(run_dir), "--n", "4", "--read-size", "20"])  # its file gone
    assert result.exit_code == 0 and "has moved or gone since the run was made" in result.output, result.output


def test_the_explorer_serves_a_layer_and_offers_no_latent_walk(attached_run):
    from fastapi.testclient import TestClient

    from perceptreg.views.explorer import create_app

    out, _ = attached_run
    client = TestClient(create_app(open_run(out), layer="block1"), base_url="http://127.0.0.1")
    info = client.get("/api/info").json()
    assert info["layer"] == "block1" and info["latent_edits"] is False
    attacked = client.post("/api/attack", json={"index": 0, "steps": 3})
    assert attacked.status_code == 200 and attacked.json()["adversarial"]["perception"].startswith("data:image/png")
    walk = client.post("/api/edit", json={"index": 0, "target": 3, "steps": 3})
    assert walk.status_code == 409 and "latent walks need a run of `train`" in walk.json()["detail"]


def test_the_explorer_switches_layers(attached_run):
    from fastapi.testclient import TestClient

    from perceptreg.views.explorer import create_app

    out, _ = attached_run
    client = TestClient(create_app(open_run(out)), base_url="http://127.0.0.1")
    assert client.get("/api/info").json()["layers"] == LAYERS.split(",")
    shallow = client.get("/api/gallery?limit=2&layer=stem").json()["items"]
    deep = client.get("/api/gallery?limit=2&layer=fc1").json()["items"]
    assert [i["image"] for i in shallow] == [i["image"] for i in deep]
    assert [i["perception"] for i in shallow] != [i["perception"] for i in deep]
    assert client.get("/api/gallery?layer=nope").status_code == 422
    attacked = client.post("/api/attack", json={"index": 0, "steps": 2, "layer": "block2"})
    assert attacked.status_code == 200


@pytest.mark.parametrize("name, content, command, message", [
    ("layers.json", "{}", "report", "layers.json: field mode: field required"),
    ("layers.json", '{"mode": "post-hoc"', "report", "layers.json: corrupt JSON"),
    ("model.json", '{"format": 3}', "perceive", "model.json: field format"),
    ("config.json", '{"layers": "stem"}', "perceive", "config.json: setting model: field required"),
])
def test_a_damaged_attach_run_file_is_one_error_line(name, content, command, message, attached_run, tmp_path):
    out, _ = attached_run
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / name).write_text(content)
    result = CliRunner().invoke(main, [command, str(broken)])
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.slow
def test_decoder_params_gives_every_layer_the_same_budget_and_the_run_reopens(weights, tmp_path):
    out = tmp_path / "budget"
    result = CliRunner().invoke(main, ["attach", "--model", f"{USER_NET}:build", "--weights", str(weights),
                                       "--layers", LAYERS, "--out", str(out), "--decoder-params", "30000",
                                       "--train-size", "100", "--epochs", "1", "--eval-size", "50",
                                       "--attack-images", "10", "--steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    sizes = [row["decoder_parameters"] for row in json.loads((out / runs.LAYERS_JSON).read_text())["layers"]]
    assert max(sizes) <= 30_000 and min(sizes) > 0.9 * 30_000, sizes
    seen = open_run(out).attached_model()  # rebuilt with the same budget: the weights fit
    assert [sum(p.numel() for p in seen.decoder(n).parameters()) for n in seen.layers] == sizes


def test_decoder_params_too_small_is_one_error_line(weights, tmp_path):
    result = CliRunner().invoke(main, ["attach", "--model", f"{USER_NET}:build", "--weights", str(weights),
                                       "--layers", "fc1", "--out", str(tmp_path / "r"), "--decoder-params", "10",
                                       *QUICK])
    assert result.exit_code == 1 and result.output.startswith(
        "Error: --decoder-params 10 is too small to build a decoder for layer 'fc1'")
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_a_run_travels_with_its_copy_of_the_source(weights, tmp_path, monkeypatch):
    made_in = tmp_path / "project"
    made_in.mkdir()
    (made_in / "mynet.py").write_text(Path(USER_NET).read_text())
    monkeypatch.chdir(made_in)
    result = CliRunner().invoke(main, ["attach", "--model", "mynet.py:build", "--weights", str(weights), "--layers",
                                       "fc1", "--out", "runs/mine", "--train-size", "100", "--epochs", "1",
                                       "--eval-size", "50", "--attack-images", "10", "--steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    run_dir = made_in / "runs" / "mine"
    assert (run_dir / "source" / "mynet.py").read_text() == Path(USER_NET).read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    perceive = ["perceive", str(run_dir), "--n", "4", "--read-size", "20"]  # measures on 20 test images
    result = CliRunner().invoke(main, perceive)  # a relative spec, another folder
    assert result.exit_code == 0 and "Warning" not in result.output, result.output
    (made_in / "mynet.py").write_text(Path(USER_NET).read_text() + "\n# edited\n")
    result = CliRunner().invoke(main, perceive)
    assert result.exit_code == 0 and f"Warning: the model's source {made_in / 'mynet.py'} has changed since the run " \
                                      f"was made" in result.output, result.output
    (made_in / "mynet.py").unlink()
    result = CliRunner().invoke(main, perceive)
    assert result.exit_code == 0 and "has moved or gone since the run was made" in result.output
    (run_dir / "source" / "mynet.py").write_text("# damaged\n")
    result = CliRunner().invoke(main, perceive)
    assert result.exit_code == 1 and result.output.startswith(
        f"Error: {run_dir / 'source' / 'mynet.py'}: the run's copy of its model's source is missing or changed")
