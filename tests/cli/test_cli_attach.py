"""`perceptreg attach` end to end, on a classifier written outside the library."""

import json

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
                                       "--layers", LAYERS, "--out", str(out), *QUICK])
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
    result = runner.invoke(main, ["perceive", str(out), "--layer", "block2", "--n", "4", "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 0 and (tmp_path / "p.png").exists(), result.output
    result = runner.invoke(main, ["evaluate-attack", str(out), "--layer", "stem", "--images", "20", "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / runs.ATTACK_METRICS).read_text())["runs"][str(out)]["images"] == 20
    result = runner.invoke(main, ["report", str(out)])
    assert result.exit_code == 0 and "P(x_adv) read as adversarial" in (out / runs.REPORT).read_text()
    model = runs.open_run(out).model(layer="block1")
    assert model.latent_shape == (16, 14, 14) and model.perceive(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    result = runner.invoke(main, ["interpolate", str(out), "--target", "3"])
    assert result.exit_code == 1 and "latent edits need a run of train" in result.output


def test_joint_mode_fine_tunes_and_reports_the_change(weights, tmp_path):
    out = tmp_path / "joint"
    result = CliRunner().invoke(main, ["attach", "--model", f"{USER_NET}:build", "--weights", str(weights),
                                       "--layers", "block2", "--mode", "joint", "--lam", "0.001",
                                       "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    assert "before fine-tuning" in result.output
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
    (["--dataset", "mnist-strips"], "Error: input_shape (3, 32, 32): the model failed on a batch of 2 zeros"),
])
def test_bad_input_is_one_line_and_writes_nothing(args, message, weights, tmp_path):
    base = {"--model": f"{USER_NET}:build", "--weights": str(weights), "--layers": LAYERS}
    given = dict(zip(args[::2], args[1::2]))
    if given.get("--model", "").endswith(("not_a_classifier", "unused")):
        base.pop("--weights")
    options = [item for key, value in {**base, **given}.items() for item in (key, value)]
    result = CliRunner().invoke(main, ["attach", *options, "--out", str(tmp_path / "run"), *QUICK])
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_weights_for_another_model_or_pickled_are_refused(tmp_path):
    save_file({"fc.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    torch.save({}, tmp_path / "net.pt")
    for path, message in ((tmp_path / "other.safetensors", "missing key(s)"),
                          (tmp_path / "net.pt", "pickled checkpoints are not loaded")):
        result = CliRunner().invoke(main, ["attach", "--model", f"{USER_NET}:build", "--weights", str(path),
                                           "--layers", "stem", "--out", str(tmp_path / "run"), *QUICK])
        assert result.exit_code == 1 and message in result.output, result.output
        assert not (tmp_path / "run").exists()


def test_train_takes_a_model_from_a_file_and_every_command_rebuilds_it(tmp_path):
    out = tmp_path / "mlp"
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--model", f"{USER_NET}:build_perception_net", "--train-size", "300",
                                  "--epochs", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / runs.CONFIG).read_text())["model"] == f"{USER_NET}:build_perception_net"
    for args in (["perceive", str(out), "--n", "4"], ["attack", str(out), "--pool", "10", "--steps", "2"],
                 ["report", str(out)]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
    result = runner.invoke(main, ["train", "--model", f"{USER_NET}:build", "--out", str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 1 and "must return a PerceptionNet" in result.output


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
    broken.mkdir()
    for path in out.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / name).write_text(content)
    result = CliRunner().invoke(main, [command, str(broken)])
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
