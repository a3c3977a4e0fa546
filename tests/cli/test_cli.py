import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import USER_NET, colour_folder, read_sealed
from PIL import Image

import perceptreg
from perceptreg import data, figures, measures, runs
from perceptreg.cli import main
from perceptreg.core.config import TrainConfig


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_help_names_where_to_start(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "Start with `perceptreg demo`." in result.output


@pytest.mark.parametrize("command", main.list_commands(None))
def test_help_of_every_command_has_an_example(runner, command):
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and f"Example: perceptreg {command}" in result.output


def test_train_writes_the_run_folder_and_reports(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.json", "metrics.jsonl", "model.safetensors", "model.json", "state.json",
            "perception.png"} <= names
    assert json.loads((trained_run / "config.json").read_text())["train_size"] == 500
    assert len((trained_run / "metrics.jsonl").read_text().splitlines()) == 2
    assert Image.open(trained_run / "perception.png").size[0] > 0


def test_train_resume_extends_a_run(trained_run, runner, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in trained_run.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    result = runner.invoke(main, ["train", "--out", str(copy), "--resume", "--epochs", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert [json.loads(l)["epoch"] for l in (copy / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert "3 epochs" in result.output


def test_perceive_reads_the_perception_with_a_judge(trained_run, other_judge, runner, tmp_path):
    args = ["perceive", str(trained_run), "--n", "2", "--read-size", "40", "--out", str(tmp_path / "grid.png")]
    result = runner.invoke(main, args + ["--judge", str(other_judge)])
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[-1]
    assert line.startswith("judge model judge (40 test images): x read right ") and "MSE/pixel 0.0" in line
    twin = runner.invoke(main, args + ["--judge", str(trained_run)])  # the run judging itself
    assert twin.exit_code == 1 and twin.output.splitlines() == [
        f"Error: {trained_run} cannot judge a model of its own architecture (mnist): its readings would be the attack "
        "transferring to a twin; train a judge of another architecture (`perceptreg train-judge`, or `perceptreg "
        "train --model FILE.py:FUNCTION --lam 0`)"]
    plain = runner.invoke(main, args).output  # grey digits: the CNN reading only with --judge, the pixel judge always
    assert "judge model" not in plain and "judge 3-NN pixels: x read right" in plain


def test_perceive_writes_the_grid(trained_run, runner, tmp_path):
    out = tmp_path / "grid.png"
    result = runner.invoke(main, ["perceive", str(trained_run), "--n", "6", "--read-size", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "perception grid of 6 test images" in result.output
    width, height = Image.open(out).size
    assert width > height  # 5 pairs on the first row, 1 on the second


@pytest.mark.slow
def test_demo_writes_a_run_and_numbers_a_second_one(runner, tmp_path):
    result = runner.invoke(main, ["demo", "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "MSE per pixel" in result.output
    assert (tmp_path / "runs" / "demo" / "perception.png").exists()
    assert "report: runs/demo/report.html" in result.output
    assert (tmp_path / "runs" / "demo" / "report.html").stat().st_size > 10_000
    again = runner.invoke(main, ["demo", "--epochs", "1", "--quiet"])
    assert again.exit_code == 0 and (tmp_path / "runs" / "demo-2" / "perception.png").exists()


@pytest.mark.parametrize("args, code, message", [
    (["train", "--lam", "-1"], 1, "Error: --lam must be a finite number >= 0"),
    (["train", "--resume"], 1, "Error: --resume needs --out, the run folder to continue"),
    (["train", "--dataset", "cifar"], 1, "Error: unknown dataset 'cifar'; choose one of mnist5k"),
    (["train", "--device", "cuda:0", "--epochs", "1"], 1, "Error: --device cuda:0: CUDA is not available"),
    (["train", "--device", "foo"], 1, "Error: --device 'foo' is not a device"),
    (["train", "--device", "cuda:abc"], 1, "Error: --device 'cuda:abc' is not a device"),
    (["train", "--lr-drop-epoch", "-1"], 1, "Error: --lr-drop-epoch must be >= 0 (0: never)"),
    (["train", "--eval-size", "-1"], 1, "Error: --eval-size must be in [0, 10,000,000] (0: the whole test split)"),
    (["train", "--dataset", "cifar10", "--data-root", "nowhere"], 1, "Error: nowhere: no CIFAR-10 batch files "),
    (["train", "--dataset", "cifar10", "--data-root", "nowhere"], 1, "or leave out --data-root to download it"),
    (["sweep", "--lams", "1e-2,-1"], 1, "Error: --lams must be a finite number >= 0"),
    # click's own usage errors: one line too, with the help to read, and exit code 2
    (["perceive", "missing-run"], 2, "Error: Invalid value for 'RUN': Directory 'missing-run' does not exist. "
                                     "(see 'perceptreg perceive --help')"),
    (["train", "--epochs", "abc"], 2, "Error: Invalid value for '--epochs': 'abc' is not a valid integer. "
                                      "(see 'perceptreg train --help')"),
    (["train", "--bogus"], 2, "Error: No such option '--bogus'"),
    (["--bogus"], 2, "Error: No such option '--bogus'. (see 'perceptreg --help')"),
    (["trian"], 2, "Error: No such command 'trian'. Did you mean 'train'? (see 'perceptreg --help')"),
    (["perceive"], 2, "Error: Missing argument 'RUN'. (see 'perceptreg perceive --help')"),
])
def test_bad_input_is_one_line(runner, args, code, message):
    result = runner.invoke(main, args, prog_name="perceptreg")
    assert result.exit_code == code and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args, code, message", [
    (["--fpr", "0.05,1"], 1, "Error: --fpr must lie in (0, 1), e.g. 0.05 for 5 %; got 1.0"),
    (["--fpr", "0"], 1, "Error: --fpr must lie in (0, 1)"),
    (["--fpr", "five"], 1, "Error: --fpr 'five': give floats separated by commas"),
    (["--restarts", "0"], 2, "Invalid value for '--restarts'"),
    (["--steps", "0"], 2, "Invalid value for '--steps'"),
    (["--adaptive-search", "0,-1"], 1, "Error: --adaptive-search must be a finite number >= 0, got -1.0"),
    (["--adaptive-search", "nan"], 1, "Error: --adaptive-search must be a finite number >= 0, got nan"),
    (["--curve-eps", "0.1,0"], 1, "Error: --curve-eps must be a finite number > 0, got 0.0"),
    (["--held-out", "990"], 1, "Error: --held-out 990: with 20 images attacked, the test set of 1000 leaves 980"),
    (["--attack", "no_such_package:CW"], 1, "Error: --attack 'no_such_package:CW': cannot import no_such_package"),
    (["--attack", "helpers:ShiftAttack", "--attack-arg", "shift=0.3"], 1,
     "Error: the attack helpers:ShiftAttack moved 20 of 20 images outside the linf eps-ball"),
    (["--attack-arg", "c=1"], 1, "Error: --attack-arg {'c': 1} are for an attack of your own"),
    (["--attack-arg", "c"], 2, "--attack-arg 'c': give KEY=VALUE"),
])
def test_evaluate_attack_bad_input_is_one_line(runner, good_run, args, code, message):
    result = runner.invoke(main, ["evaluate-attack", str(good_run), "--images", "20", "--steps", "1"] + args)
    assert result.exit_code == code and message in result.output, result.output
    # as a terminal shows it: an attack that fails as it runs erases its bar ("\r" + blanks) before the line
    shown = [line.rsplit("\r", 1)[-1].strip() for line in result.output.split("\n")]
    assert [line for line in shown if line] == [line for line in shown if line.startswith("Error: ")] and \
           len([line for line in shown if line]) == 1, result.output


@pytest.mark.slow
def test_evaluate_attack_strong_adaptive_at_fixed_rates(runner, good_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    result = runner.invoke(main, ["evaluate-attack", str(run), "--steps", "3", "--images", "30", "--held-out", "60",
                                  "--fpr", "0.05", "--adaptive-search", "0,1", "--restarts", "2",
                                  "--curve-steps", "1,3", "--attack", "helpers:ShiftAttack", "--attack-arg", "shift=0.1"])
    assert result.exit_code == 0, result.output
    written = read_sealed(run / "attack_metrics.json")
    assert written["settings"]["attack"] == "helpers:ShiftAttack" and written["settings"]["held_out"] == 60
    summary = written["runs"][str(run)]
    one_sided = summary["detector"]["at_fpr"]["one-sided"][0]
    assert one_sided["fpr"] == 0.05 and one_sided["succeeded_and_undetected"]["n"] == round(
        summary["clean_accuracy"]["rate"] * 30)
    search = summary["adaptive_search"]
    assert search["betas"] == [0.0, 1.0] and set(search["undetected"]) == {"one-sided", "two-sided"}
    assert [len(summary["convergence"]["steps"][k]) for k in ("values", "success")] == [2, 2]
    assert Image.open(run / "attack_convergence_steps.png").size[0] > 100
    assert "search 0,1" in result.output and "undetected at 5 % FPR, two-sided" in result.output


def test_a_bad_beta_names_the_option_that_lists_it(runner, good_run):
    result = runner.invoke(main, ["evaluate-attack", str(good_run), "--adaptive", "0,-1", "--images", "20",
                                  "--steps", "1"])
    assert result.exit_code == 1 and result.output == "Error: --adaptive must be a finite number >= 0, got -1.0\n"


def test_a_run_that_fails_before_training_leaves_no_folder(runner, tmp_path):
    user_file = Path(USER_NET)
    result = runner.invoke(main, ["train", "--model", f"{user_file}:nope", "--out", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 1 and "has no function 'nope'" in result.output
    assert not (tmp_path / "r").exists()
    (tmp_path / "mine").mkdir()  # a folder the user made is theirs to keep
    result = runner.invoke(main, ["train", "--dataset", "folder:/nonexistent", "--out", str(tmp_path / "mine")])
    assert result.exit_code == 1 and (tmp_path / "mine").is_dir() and not (tmp_path / "mine" / "config.json").exists()


def test_train_on_a_folder_takes_the_network_of_its_images_size(runner, tmp_path):
    for split, count in (("train", 6), ("test", 2)):
        for c, name in enumerate(("cat", "dog")):
            (tmp_path / "pets" / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (32, 32), (100 * c + i, 50, 0)).save(tmp_path / "pets" / split / name / f"{i}.png")
    pets = f"folder:{tmp_path / 'pets'}"
    result = runner.invoke(main, ["train", "--dataset", pets, "--epochs", "1", "--out", "r", "--quiet"])
    assert result.exit_code == 0 and "resized" not in result.output, result.output  # 32x32 stays 32x32
    assert json.loads((tmp_path / "r" / "config.json").read_text())["arch"] == "svhn"
    Image.new("RGB", (40, 30)).save(tmp_path / "pets" / "test" / "cat" / "wide.png")
    result = runner.invoke(main, ["train", "--dataset", pets, "--out", "r2"])
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1 and not (tmp_path / "r2").exists()
    assert result.output.startswith(f"Error: {tmp_path / 'pets'}: images of several sizes (")
    assert "is 40x30); give --arch to resize them all to its input" in result.output
    result = runner.invoke(main, ["train", "--dataset", pets, "--arch", "svhn", "--epochs", "1", "--out", "r3", "--quiet"])
    assert result.exit_code == 0 and "Warning: " in result.output and "1 image(s) resized to 32x32" in result.output


def test_train_judge_makes_the_cnn_judge_that_natural_images_are_then_read_by(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPTREG_JUDGES", str(tmp_path / "judges"))
    for split, count in (("train", 10), ("test", 4)):
        for c, name in enumerate(("cat", "dog")):
            (tmp_path / "pets" / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (32, 32), (200 * c, 20 * i, 0)).save(tmp_path / "pets" / split / name / f"{i}.png")
    pets = f"folder:{tmp_path / 'pets'}"
    assert runner.invoke(main, ["train", "--dataset", pets, "--epochs", "1", "--out", "r", "--quiet"]).exit_code == 0
    attack = ["attack", "r", "--steps", "2", "--pool", "4", "--n", "2"]
    result = runner.invoke(main, attack)
    assert result.exit_code == 0 and "Warning: the CNN judge of " in result.output, result.output
    assert "has not been made: only a 3-NN pixel judge reads the images" in result.output
    result = runner.invoke(main, ["train-judge", "--dataset", pets, "--epochs", "1", "--quiet"])
    judge = tmp_path / "judges" / f"folder_{str(tmp_path / 'pets').strip('/').replace('/', '_')}"
    assert result.exit_code == 0 and "judge test accuracy" in result.output and str(judge) in result.output, result.output
    assert json.loads((judge / "config.json").read_text())["arch"] == "vgg"
    again = runner.invoke(main, ["train-judge", "--dataset", pets, "--epochs", "1"])
    assert again.exit_code == 0 and "is already trained (1 epoch, test accuracy" in again.output
    from_python = perceptreg.train_judge(pets, epochs=1)  # the library call: what the command printed, typed
    assert from_python.already_trained and from_python.epochs == 1 and from_python.run_dir == judge
    assert from_python.lines() == again.output.strip().splitlines()
    result = runner.invoke(main, attack)
    assert result.exit_code == 0 and "judge" not in result.output, result.output  # read by the CNN judge, no warning


def test_perceive_on_a_folder_without_model(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps(TrainConfig().to_dict()))  # stopped before epoch 1
    result = runner.invoke(main, ["perceive", str(tmp_path / "empty")])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {tmp_path / 'empty'}: no model yet")


def test_corrupted_checkpoint_is_a_clear_error(trained_run, runner, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in trained_run.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    from perceptreg import runs
    weights = runs.open_run(broken).weights_file()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one flipped bit in the last weight: still a valid safetensors file
    weights.write_bytes(bytes(data))
    result = runner.invoke(main, ["perceive", str(broken)])
    assert result.exit_code == 1
    assert f"{weights.name}: its SHA-256 differs from the one in" in result.output
    assert "Traceback" not in result.output
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (broken / "state.json").unlink()  # an older run: no manifest, no digest, the file read as it is
    older = json.loads((trained_run / "model.json").read_text())
    del older["sha256"]  # no digest of the weights in model.json either
    (broken / "model.json").write_text(json.dumps(older))
    (broken / "model.safetensors").write_bytes(weights.read_bytes())
    result = runner.invoke(main, ["perceive", str(broken)])
    assert result.exit_code == 1 and "model.safetensors: corrupt or not a safetensors file" in result.output


# --- attacks ------------------------------------------------------------------------------------

def test_attack_writes_the_figure_and_warns_about_a_collapsed_decoder(trained_run, runner, tmp_path):
    out = tmp_path / "attack.png"
    result = runner.invoke(main, ["attack", str(trained_run), "--steps", "5", "--n", "4", "--pool", "30",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    # two epochs on 500 digits leave the decoder collapsed: the figure renders, with a warning
    assert "collapsed decoder" in result.output
    width, height = Image.open(out).size
    assert width == 4 * (84 + 2) + 2 and height > 4 * 84
    # every rate says what it counts: success of the images H reads right, of the 30 attacked
    counted = re.search(r"attack success [\d.]+ % \[[\d., ]+\] of the (\d+) images H classifies right \(30 attacked\), "
                        r"eps 0.2; (\d+) failure cases among the (\d+) successful attacks, (\d+) shown: ", result.output)
    assert counted, result.output
    right, failures, successes, shown = map(int, counted.groups())
    assert failures <= successes <= right <= 30 and shown == min(4, failures)


@pytest.mark.slow
def test_attack_is_one_library_call_that_prints_what_it_returns(trained_run, runner, tmp_path):
    import perceptreg

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = runner.invoke(main, ["attack", str(run), "--steps", "1", "--n", "2", "--pool", "2000"])
    shown = perceptreg.attack_run(perceptreg.open_run(run), perceptreg.AttackSettings(steps=1), n=2, pool=2000)
    assert result.exit_code == 0 and shown.line() in result.output, result.output
    assert shown._repr_html_().startswith('<img alt="attack.png" src="data:image/png;base64,')  # the figure in Jupyter
    # the pool bounds the work: no more images attacked than the test set holds
    assert shown.summary.images == len(perceptreg.open_run(run).data()[1]) == 1000
    # no thresholds: no clean images scored beside the pool, when the pool leaves some over too
    assert shown.evaluation.held_out_scores is None
    assert perceptreg.attack_run(perceptreg.open_run(run), perceptreg.AttackSettings(steps=1), n=1,
                                 pool=30).evaluation.held_out_scores is None


def test_attack_from_noise(trained_run, runner, tmp_path):
    out = tmp_path / "noise.png"
    result = runner.invoke(main, ["attack", str(trained_run), "--from-noise", "--steps", "3", "--n", "1",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] == 10 * (84 + 2) + 2  # one column per class
    import perceptreg

    found = perceptreg.attack_from_noise(perceptreg.open_run(trained_run), perceptreg.AttackSettings(steps=3),
                                         images_per_class=1, out=out)
    page = found._repr_html_()  # in Jupyter: the grid, then what the command prints
    assert page.startswith('<img alt="noise.png" src="data:image/png;base64,') and "<p>noise -&gt; target on 10" in page


def test_attack_from_noise_counts_every_image_but_shows_two_per_class(trained_run, runner, tmp_path):
    out = tmp_path / "noise.png"
    result = runner.invoke(main, ["attack", str(trained_run), "--from-noise", "--steps", "2", "--n", "5",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] == 20 * (84 + 2) + 2  # 2 of each class's 5, in one row
    written = json.loads((trained_run / "noise_metrics.json").read_text())
    assert written["noise_images"] == 50 and written["reached"]["H"]["n"] == 50
    # the judge's own accuracy on real test images is recorded beside its reading of the noise
    assert written["reached"]["judge on x"]["n"] == 1000 and written["reached"]["judge on x"]["rate"] > 0.5
    assert "the judge reads 1000 test images x right" in result.output


@pytest.mark.slow  # over 2 s alone: the fast lane leaves it out
def test_evaluate_attack_writes_metrics_and_roc(trained_run, other_judge, runner, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for p in trained_run.iterdir():
        (run / p.name).write_bytes(p.read_bytes())
    result = runner.invoke(main, ["evaluate-attack", str(run), "--steps", "5", "--images", "40",
                                  "--judge", str(other_judge), "--compare", str(trained_run), "--adaptive", "0,1"])
    assert result.exit_code == 0, result.output
    written = json.loads((run / "attack_metrics.json").read_text())
    assert written["settings"]["steps"] == 5 and len(written["runs"]) == 2
    assert written["settings"]["eps"] == 0.2  # no --eps: the digits' radius, as used
    summary = written["runs"][str(run)]
    assert summary["images"] == 40 and 0 <= summary["attack_success_rate"]["rate"] <= 1
    assert set(summary["judges"]) == {"3-NN pixels", f"model {other_judge.name}"}
    assert list(summary["detector"]["baselines"]) == ["pixel_statistic", "blur_residual", "bit_depth",
                                                      "median_filter", "shuffled_perturbation"]
    assert [row["beta"] for row in summary["adaptive"]] == [0.0, 1.0]
    assert summary["adaptive"][0]["auroc"] == summary["detector"]["auroc"]  # beta 0 is the plain attack
    for line in ("clean accuracy", "attack success rate", "detector ROC AUC", "3-NN pixels: P(x_adv) read as adversarial label",
                 "baseline AUC: pixel statistic", "baseline AUC: shuffled perturbation", "adaptive attacks on",
                 "succeeded and undetected at 5 % FPR, one-sided", "McNemar p",
                 "baseline AUC: blur residual (no model)", "baseline AUC: feature squeezing, 5-bit depth",
                 "baseline AUC: feature squeezing, 2x2 median", "blur AUC", "median AUC"):
        assert line in result.output
    assert Image.open(run / "attack_roc.png").size == (400, 400)
    # from Python, the same call gives what the command printed, typed
    import perceptreg
    from perceptreg.adversarial.run_attacks import Strength

    report = perceptreg.evaluate_attack(perceptreg.open_run(run), perceptreg.AttackSettings(steps=5), images=40,
                                        judge_runs=[other_judge], compare=trained_run, strength=Strength(adaptive=(0, 1)))
    assert report.text() in result.output and report.text().splitlines()[0] == "PGD, linf eps 0.2, on 40 images:"
    assert json.dumps(report.summaries[str(run)].model_dump(), sort_keys=True) == json.dumps(summary, sort_keys=True)
    assert report.metrics == run / "attack_metrics.json"
    assert report.rocs == (run / "attack_roc.png", trained_run / "attack_roc.png")
    assert "<td>clean accuracy</td>" in report._repr_html_() and "adaptive attacks on run" in report._repr_html_()


@pytest.mark.parametrize("args, message", [
    (["--eps", "0"], "Error: --eps must be a finite number > 0"),
    (["--steps", "0"], "Invalid value for '--steps'"),
    (["--target", "12"], "Error: --target class 12 is outside the model's classes 0..9"),
    (["--norm", "l1"], "Invalid value for '--norm'"),
])
def test_attack_bad_input_is_one_line(trained_run, runner, args, message):
    result = runner.invoke(main, ["attack", str(trained_run), "--pool", "10"] + args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_attack_on_a_folder_without_model(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(main, ["evaluate-attack", str(tmp_path / "empty")])
    assert result.exit_code == 1 and result.output == (
        f"Error: {tmp_path / 'empty'}: no config.json; is this a run folder written by `perceptreg train` or "
        f"`perceptreg attach`?\n")


def test_attacks_on_colour_images_take_their_radius_unless_eps_is_given(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPTREG_JUDGES", str(tmp_path / "judges"))  # no standing judge: the pixel judge
    pets = colour_folder(tmp_path / "pets", 8)
    assert runner.invoke(main, ["train", "--dataset", pets, "--epochs", "1", "--out", "r", "--quiet"]).exit_code == 0
    evaluate = ["evaluate-attack", "r", "--steps", "1", "--images", "4", "--held-out", "4"]
    # the paper's CelebA radius; L2's own (RobustBench's on CIFAR-10), not 0.03 as an L2 radius; a given eps wins
    for extra, norm, eps in (([], "linf", 0.03), (["--norm", "l2"], "l2", 0.5),
                             (["--norm", "l2", "--eps", "0.1"], "l2", 0.1)):
        result = runner.invoke(main, evaluate + extra)
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / "r" / "attack_metrics.json").read_text())["settings"]["eps"] == eps
        assert f"PGD, {norm} eps {eps:g}, on 4 images:" in result.output
    result = runner.invoke(main, ["attack", "r", "--steps", "1", "--pool", "4", "--n", "2"])
    assert result.exit_code == 0 and "images H classifies right (4 attacked), eps 0.03;" in result.output, result.output
    result = runner.invoke(main, ["interpolate", "r", "--target", "1", "--images", "2", "--fit-images", "2",
                                  "--steps", "1", "--alphas", "0,1"])
    assert result.exit_code == 0 and "(targeted PGD eps 0.03)" in result.output, result.output
    assert json.loads((tmp_path / "r" / "interpolation_metrics.json").read_text())["attack"]["eps"] == 0.03
    assert json.loads((tmp_path / "r" / "direction-any-to-1.json").read_text())["meta"]["eps"] == 0.03
    text = " ".join(runner.invoke(main, ["attack", "--help"]).output.split())
    assert ("[default: the dataset's radius in --norm: L-inf 0.2 on MNIST digits, 0.03 on colour images (the "
            "paper's on MNIST and on CelebA); L2 2 on digits, 0.5 on colour images" in text)


# --- latent directions --------------------------------------------------------------------------

@pytest.mark.slow
def test_interpolate_writes_grids_curves_and_json(trained_run, runner, tmp_path):
    out = tmp_path / "edits"
    result = runner.invoke(main, ["interpolate", str(trained_run), "--target", "8", "--images", "3",
                                  "--fit-images", "5", "--steps", "3", "--alphas", "0:1:0.5",
                                  "--out", str(out), "--save-direction", str(tmp_path / "to8")])
    assert result.exit_code == 0, result.output
    assert "flip to 8 at a=1" in result.output
    for name in ("interpolation_per-image.png", "interpolation_mean.png", "interpolation_flip.png",
                 "interpolation_change.png"):
        assert Image.open(out / name).size[0] > 0
    assert Image.open(out / "interpolation_mean.png").size[0] == 4 * (112 + 2) + 2  # x, then 3 alphas
    panel = figures.read_layout(out / "interpolation_mean.png")["panels"][0]
    assert panel["title"].startswith("Mean direction: every image moved along one dz toward 8, averaged over "
                                     "5 training images")
    assert [[(c["label"], c["box"][2:]) for c in card] for card in panel["cards"]] == [
        [("x", (112, 112)), ("a=0", (112, 112)), ("a=0.5", (112, 112)), ("a=1", (112, 112))]] * 3  # 3 images
    grid = Image.open(out / "interpolation_mean.png").convert("L")
    left, top, width, height = panel["cards"][0][0]["box"]  # x itself: a test image, not a decoding
    test = runs.open_run(trained_run).data()[1]
    shown = torch.from_numpy(np.array(grid.crop((left, top, left + width, top + height)).resize((28, 28), Image.NEAREST)))
    assert (test.images.flatten(1) == shown.flatten()).all(1).any()
    written = read_sealed(out / "interpolation_metrics.json")
    entry = written["runs"][str(trained_run)]
    assert entry["alphas"] == [0.0, 0.5, 1.0] and entry["images"] == 3
    assert set(entry["directions"]) == {"per-image", "mean"}
    assert len(entry["directions"]["mean"]["flip_curve"]["3-NN pixels"]) == 3
    for value, (low, high) in zip(entry["directions"]["mean"]["flip_curve"]["H(image)"],
                                  entry["directions"]["mean"]["flip_interval"]["H(image)"]):
        assert low <= value <= high and high - low > 0.3  # 3 images: a wide interval
    assert entry["directions"]["mean"]["fitted_on"]["images"] == 5
    assert (tmp_path / "to8.safetensors").exists() and (tmp_path / "to8.json").exists()

    again = runner.invoke(main, ["interpolate", str(trained_run), "--target", "8", "--images", "2", "--steps", "2",
                                 "--apply-direction", str(tmp_path / "to8.safetensors"), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "mean direction saved" not in again.output


def test_interpolate_with_out_leaves_the_run_folder_as_it_was(trained_run, runner, tmp_path):
    before = {path.name: path.stat().st_mtime_ns for path in trained_run.iterdir()}
    result = runner.invoke(main, ["interpolate", str(trained_run), "--target", "3", "--images", "2",
                                  "--fit-images", "2", "--steps", "1", "--alphas", "0,1", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert {path.name: path.stat().st_mtime_ns for path in trained_run.iterdir()} == before
    assert (tmp_path / "e" / "direction-any-to-3.safetensors").exists()  # the mean direction goes with the outputs


def test_interpolate_from_file(trained_run, runner, tmp_path):
    Image.new("L", (56, 56), 40).save(tmp_path / "mine.png")  # resized to 28x28
    result = runner.invoke(main, ["interpolate", str(trained_run), "--target", "1", "--steps", "2",
                                  "--fit-images", "3", "--from-file", str(tmp_path / "mine.png"),
                                  "--alphas", "0,1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "interpolation_metrics.json").read_text())["runs"][str(trained_run)]["images"] == 1


def test_interpolate_bad_input(trained_run, runner, tmp_path):
    from perceptreg.core import models
    from perceptreg.edits import latent
    other = latent.save_direction(latent.Direction(torch.zeros(64), 1, None, 1), tmp_path / "svhn", models.svhn())
    (tmp_path / "empty").mkdir()
    cases = [
        (["--target", "10"], "Error: --target class 10 is outside the model's classes 0..9"),
        (["--target", "1", "--alphas", "0:two:1"], "Error: --alphas '0:two:1': give start:stop:step"),
        (["--target", "1", "--apply-direction", str(other)], "latent has shape (32,)"),
        (["--target", "1", "--from-file", str(tmp_path / "empty")], "no image files"),
    ]
    for args, message in cases:
        result = runner.invoke(main, ["interpolate", str(trained_run), "--steps", "1"] + args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_train_a_post_hoc_decoder_for_a_runs_classifier(good_run, runner, tmp_path):
    result = runner.invoke(main, ["train", "--classifier-from", str(good_run), "--decoder-epochs", "1",
                                  "--out", str(tmp_path / "d"), "--quiet"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    assert config["mode"] == "post-hoc" and config["classifier_from"] == str(good_run)
    assert config["train_size"] is None and config["arch"] == "mnist"
    rows = [json.loads(l) for l in (tmp_path / "d" / "metrics.jsonl").read_text().splitlines()]
    source = [json.loads(l) for l in (good_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["decoder"] and rows[0]["test_accuracy"] == source[-1]["test_accuracy"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on CPU-only machines")
@pytest.mark.parametrize("command", [["perceive"], ["attack", "--pool", "2"], ["explore"], ["evaluate-attack"],
                                     ["interpolate", "--target", "1"]])
def test_every_device_option_is_checked(trained_run, runner, command):
    result = runner.invoke(main, [command[0], str(trained_run), *command[1:], "--device", "cuda"])
    assert result.exit_code == 1 and "Error: --device cuda: CUDA is not available" in result.output
    assert "Traceback" not in result.output


def test_library_argument_names_become_flags():
    from perceptreg.cli.app import as_flags
    train = main.commands["train"]
    assert as_flags("`train_size` must be >= 10", train) == "--train-size must be >= 10"
    assert as_flags("`lam` must be >= 0", main.commands["sweep"]) == "--lams must be >= 0"
    assert as_flags("`unknown` stays", train) == "unknown stays"


def test_train_help_lists_every_dataset_and_config_default(runner):
    text = " ".join(runner.invoke(main, ["train", "--help"]).output.split())
    assert "memmap:PATH" in text and "folder:PATH" in text
    assert "[default: 0.01]" in text and "[default: 20]" in text  # lam and epochs, from TrainConfig
    assert "--eval-size" in text and "10,000 took about" in text and "[default: 10000]" in text


# --- attacks on a model whose numbers can be checked ----------------------------------------------

@pytest.mark.slow  # three commands end to end at sizes whose numbers can be asserted: over 2 s alone
def test_attack_numbers_on_a_working_model(good_run, runner, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    result = runner.invoke(main, ["evaluate-attack", str(run), "--steps", "10", "--images", "50"])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "attack_metrics.json").read_text())["runs"][str(run)]
    # the clean accuracy is the model's own on those 50 test images
    test_data = runs.open_run(run).data()[1]
    chosen = test_data.subset(data.spread_over_classes(test_data.labels, 50))
    assert summary["clean_accuracy"]["rate"] == pytest.approx(measures.evaluate(runs.open_run(run).model(), chosen)["accuracy"])
    assert summary["attack_success_rate"]["rate"] > 0.9  # eps 0.2 breaks an undefended MNIST net
    assert summary["judges"]["3-NN pixels"]["accuracy_on_x"]["rate"] > 0.8
    assert summary["judges"]["3-NN pixels"]["on_x_adv"]["true_label"]["rate"] > 0.5  # x_adv still looks like x
    assert summary["detector"]["baselines"]["pixel_statistic"]["auroc"] > 0.9  # added noise, seen without a model

    noise = runner.invoke(main, ["attack", str(run), "--from-noise", "--steps", "20", "--n", "3", "--out",
                                 str(tmp_path / "noise.png")])
    assert noise.exit_code == 0, noise.output
    reached = round(float(re.search(r"H reads the target on ([\d.]+) %", noise.output).group(1)) * 30 / 100)
    assert reached >= 24 and f"H reads the target on {measures.format_rate(measures.rate(reached, 30))}" in noise.output

    edits = runner.invoke(main, ["interpolate", str(run), "--target", "1", "--images", "10", "--fit-images", "10",
                                 "--steps", "5", "--alphas", "0,3", "--out", str(tmp_path / "edits")])
    assert edits.exit_code == 0, edits.output
    curve = json.loads((tmp_path / "edits" / "interpolation_metrics.json").read_text())["runs"][str(run)][
        "directions"]["per-image"]["flip_curve"]["H(image)"]
    assert curve[0] <= 0.1 and curve[1] >= 0.5  # images of other classes, edited toward 1


def test_noise_to_class_and_latent_edits_are_read_by_the_given_judge(trained_run, other_judge, runner, tmp_path):
    # the run copied: its results files are written beside it; a model of another design judges it
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = runner.invoke(main, ["attack", str(run), "--from-noise", "--steps", "2", "--n", "1",
                                  "--judge", str(other_judge)])
    assert result.exit_code == 0, result.output
    judge = f"model {other_judge.name}"
    assert f"the {judge} judge reads P(x_adv)" in result.output
    assert read_sealed(run / "noise_metrics.json")["judge"] == judge
    result = runner.invoke(main, ["interpolate", str(run), "--target", "8", "--images", "2", "--fit-images", "2",
                                  "--steps", "2", "--alphas", "0:1:1", "--judge", str(other_judge)])
    assert result.exit_code == 0, result.output
    edits = json.loads((run / "interpolation_metrics.json").read_text())["runs"][str(run)]
    assert judge in edits["directions"]["mean"]["flip_curve"]
