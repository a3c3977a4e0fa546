"""REPRODUCING.md is read from real run folders: each number is the one the commands wrote."""

import dataclasses
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import attack_metrics, edits_file, noise_metrics, sweep_file

import perceptreg.training.train as training_module
import perceptreg.views.train_run as train_run_module
from perceptreg.attacking import evaluate, noise
from perceptreg.cli import main
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.edits import interpolation
from perceptreg.measures import format_rate, rate
from perceptreg.runs import Run
from perceptreg.sweeps import sweep as sweep_module
from perceptreg.training.train import train
from reproduce import __main__ as main_module
from reproduce import document, steps
from reproduce.__main__ import main as reproduce
from reproduce.from_decoder_losses import decoder_loss_steps


@pytest.fixture(scope="module")
def root(tmp_path_factory, good_run, quick_sweep):
    """The folders the table reads, made by the same commands at a small scale."""
    root = tmp_path_factory.mktemp("reproduce")
    shutil.copytree(good_run, root / "demo")
    shutil.copytree(quick_sweep[0], root / "sweep-4000")
    demo = str(root / "demo")
    for command in (["evaluate-attack", demo, "--images", "30", "--steps", "5", "--adaptive-search", "0,1"],
                    ["attack", demo, "--from-noise", "--n", "2", "--steps", "5"],
                    ["interpolate", demo, "--target", "8", "--images", "10", "--fit-images", "10", "--steps", "5"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
    return root


def row(page: str, claim: str) -> list[str]:
    line = next(line for line in page.splitlines() if line.startswith(f"| {claim}"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


@pytest.mark.slow
def test_every_number_comes_from_the_runs(root):
    page = document.reproducing_page(root)
    attack = json.loads((root / "demo" / "attack_metrics.json").read_text())
    summary = attack["runs"][str(root / "demo")]
    assert row(page, "PGD")[4] == "demo: success " + format_rate(summary["attack_success_rate"])  # per model
    knn = summary["judges"]["3-NN pixels"]["on_P(x_adv)"]
    named = f"3-NN pixels (right on x {format_rate(summary['judges']['3-NN pixels']['accuracy_on_x'])})"
    x_adv = summary["judges"]["3-NN pixels"]["on_x_adv"]
    assert (f"{named}: x_adv read as adversarial {format_rate(x_adv['adversarial_label'])}; P(x_adv) read as "
            f"adversarial {format_rate(knn['adversarial_label'])}") in row(page, "P(x_adv) looks like")[4]
    search = summary["adaptive_search"]["judges_on_P(x_adv)"]["3-NN pixels"]
    assert f"P(x_adv) read as adversarial {format_rate(search['adversarial_label'])}" in row(page, "... still")[4]
    detector = summary["detector"]
    assert f"||x - P(x)||^2 {detector['auroc']:.3f} [" in row(page, "\\|\\|x - P(x)\\|\\|^2 separates")[4].replace("\\", "")
    shuffled = detector["baselines"]["shuffled_perturbation"]["auroc"]
    assert f"control: shuffled perturbation, L2-matched {shuffled:.3f} [" in row(page, "\\|\\|x - P(x)\\|\\|^2 separates")[4]
    assert f"of {summary['successful_attacks']} successful attacks" in row(page, "\\|\\|x - P(x)\\|\\|^2 flags")[4]
    assert f"of {summary['adaptive_search']['successful_attacks']} successful" in row(page, "... and most")[4]
    noise = json.loads((root / "demo" / "noise_metrics.json").read_text())
    assert noise["noise_images"] == 20 and format_rate(noise["reached"]["3-NN pixels"]) in row(page, "noise")[4]
    assert row(page, "noise")[4].startswith(f"demo: {named} reads P(x_adv) as the target")  # its accuracy: the attack's
    assert row(page, "a latent direction")[4].startswith(f"demo: {named} reads the edit at a = 2 as the target, class 8")
    sweep = json.loads((root / "sweep-4000" / "sweep.json").read_text())
    accuracy = {v: members[0]["test_accuracy"] for v, members in sweep["per_seed"].items()}
    assert f"0.001: {100 * accuracy['0.001']:.1f} % (1 seed, no interval)" in row(page, "test accuracy decreases")[4]
    assert row(page, "test accuracy decreases")[2] == "0.0001: 88.5 %, 0.001: 87.9 %, 0.01: 87.8 %, 100: 81.3 %"
    assert row(page, "accuracy still decreases")[5] == (
        "**not measured**: sweep.json is missing (`--run` makes it)")
    collapsed = sum(m["decoder_collapsed"] for m in sweep["per_seed"]["0.001"])
    assert f"decoder collapsed in {collapsed} of 1 seeds" in row(page, "the classifier's P(x)")[4]
    # one seed decides nothing; a collapsed decoder (these 1-epoch runs may) makes the row not comparable
    assert row(page, "test accuracy decreases")[5].startswith(("**undecided**: ", "**not comparable**: the decoder "
                                                                                  "collapsed"))


def attack_summary(fooled: int, adversarial: int, missed: int) -> dict:
    """An evaluate-attack summary by hand: 10 images, all classified right, ``fooled`` of them
    fooled; the 3-NN judge reads ``adversarial`` of those P(x_adv) as adversarial, the rest
    as true, x itself right 10 times and none of the x_adv as adversarial; ``missed`` succeed
    undetected at 5 % false positives, one-sided."""
    def agreement(adversarial: int, n: int) -> dict:
        return {"adversarial_label": rate(adversarial, n), "true_label": rate(n - adversarial, n), "other": rate(0, n),
                "count": n}
    judges = {"3-NN pixels": {"accuracy_on_x": rate(10, 10), "on_P(x_adv)": agreement(adversarial, fooled),
                              "on_x_adv": agreement(0, fooled)}}
    auroc = lambda value, low, high: {"auroc": value, "auroc_interval": [low, high]}  # noqa: E731
    return {"attack_success_rate": rate(fooled, 10), "successful_attacks": fooled, "judges": judges,
            "detector": {**auroc(0.95, 0.9, 1.0), "at_fpr": {"one-sided": [
                         {"fpr": 0.05, "succeeded_and_undetected": rate(missed, 10)}]},
                         "baselines": {"pixel_statistic": auroc(0.6, 0.5, 0.7), "blur_residual": auroc(0.7, 0.6, 0.8),
                                       "shuffled_perturbation": auroc(0.8, 0.7, 0.9)}},
            "adaptive_search": {"judges_on_P(x_adv)": {"3-NN pixels": judges["3-NN pixels"]["on_P(x_adv)"]},
                                "judges_on_x_adv": {"3-NN pixels": judges["3-NN pixels"]["on_x_adv"]},
                                "successful_attacks": fooled,
                                "undetected": {"one-sided": {"0.05": rate(missed, 10)}}}}


@pytest.mark.parametrize("compare_first", [True, False])
def test_attack_verdicts_by_hand_from_the_runs_own_results(tmp_path, compare_first):
    # the demo: 9 of 10 fooled, Wilson [59.6, 98.2], above a half; P(x_adv) read as adversarial
    # 8 of 9 [56.5, 98.0] against true 1 of 9 [2.0, 43.5]; 1 of the 9 successes missed
    # [2.0, 43.5], below a half; detector AUC [0.9, 1.0] above the pixel statistic's and the blur's.
    # The compared run (listed first or last) says the opposite everywhere.
    own, compared = attack_summary(9, 8, 1), attack_summary(2, 0, 2)
    runs = {str(tmp_path / "post-hoc"): compared, "demo": own}
    if not compare_first:
        runs = dict(reversed(runs.items()))
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "attack_metrics.json").write_text(json.dumps(attack_metrics({"settings": {"eps": 0.2}, "runs": runs})))
    page = document.reproducing_page(tmp_path)
    one_model = "; decided by one model: its interval covers the images, not the training (at least 3 seeds decide)"
    assert row(page, "PGD")[4:] == ["demo: success 90.0 % [59.6, 98.2]",
                                    "**holds (one model)**: success 90.0 % [59.6, 98.2], all above 0.5" + one_model,
                                    "not recorded"]
    assert row(page, "P(x_adv) looks like")[4:6] == [
        "demo: 3-NN pixels (right on x 100.0 % [72.2, 100.0]): x_adv read as adversarial 0.0 % [0.0, 29.9]; P(x_adv) "
        "read as adversarial 88.9 % [56.5, 98.0], as true 11.1 % [2.0, 43.5]",
        "**holds (one model)**: beyond the transfer: holds, P(x_adv) read as adversarial 88.9 % [56.5, 98.0] against "
        "x_adv 0.0 % [0.0, 29.9]: the intervals do not overlap; adversarial over true: holds, P(x_adv) read as "
        "adversarial 88.9 % [56.5, 98.0] against as true 11.1 % [2.0, 43.5]: the intervals do not overlap" + one_model]
    assert row(page, "\\|\\|x - P(x)\\|\\|^2 flags")[4:6] == [
        "demo: of 9 successful attacks, missed at 5 % FPR, one-sided: 11.1 % [2.0, 43.5]",
        "**holds (one model)**: missed 11.1 % [2.0, 43.5], all below 0.5" + one_model]
    assert row(page, "... and most")[5].startswith("**holds (one model)**")
    separates = row(page, "\\|\\|x - P(x)\\|\\|^2 separates")
    assert separates[4].startswith("demo: ROC AUC \\|\\|x - P(x)\\|\\|^2 0.950 [0.900, 1.000]; pixel statistic (no "
                                   "model) 0.600 [0.500, 0.700]; blur residual (no model) 0.700")
    assert separates[5].startswith("**holds (one model)**: pixel statistic (no model): holds, detector AUC 0.950 "
                                   "[0.900, 1.000] "
                                   "against pixel statistic (no model) AUC 0.600 [0.500, 0.700]: the intervals do not "
                                   "overlap")


@pytest.mark.slow
def test_the_page_names_the_commit_and_hashes_every_file_it_read(root):
    page = document.reproducing_page(root)
    assert re.search(r"^Code: commit ([0-9a-f]{40}( \+ uncommitted changes)?|unknown)\.$", page, re.M)
    listed = dict(re.findall(r"^- `([^`]+)` ([0-9a-f]{64})$", page, re.M))
    assert set(listed) == {"demo/attack_metrics.json", "demo/noise_metrics.json", "demo/interpolation_metrics.json",
                           "sweep-4000/sweep.json"}
    for name, digest in listed.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest


def member(accuracy: float, collapsed: bool = False, ratio: float = 0.5) -> dict:
    return {"test_accuracy": accuracy, "centre_to_edge": ratio, "decoder_collapsed": collapsed,
            "probes": {"label (the task)": 0.9, "left_digit": 0.2, "right_digit": 0.4}}


def write_sweep(path, dataset: str, epochs: int, per_seed: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    summary = sweep_file(per_seed, dataset=dataset, epochs=epochs, batch_size=64, train_size=None)
    (path / "sweep.json").write_text(json.dumps(summary))


def test_verdicts_of_hand_made_sweeps(tmp_path):
    # five seeds, accuracy 0.9 at 1e-4 and 0.82 at 1e2 for each: a drop of 8 points [8, 8], above 0 and
    # under 10 (slowly); the centre-to-edge ratio 0.5 at 1e-3 against the auto-encoder limit's 0.8
    write_sweep(tmp_path / "sweep-4000", "mnist-strips", 20, {
        "0.0001": [member(0.9)] * 5, "0.001": [member(0.85)] * 5, "100": [member(0.82, ratio=0.8)] * 5})
    page = document.reproducing_page(tmp_path)
    attention = row(page, "the classifier's P(x)")
    assert attention[4] == ("centre-to-edge error ratio of P(x): lambda 0.001 (the delicate regime) 0.50 [0.50, 0.50], "
                            "decoder collapsed in 0 of 5 seeds; control, lambda 100 (the auto-encoder limit) 0.80 "
                            "[0.80, 0.80], decoder collapsed in 0 of 5 seeds; control minus delicate 0.30 [0.30, 0.30]")
    assert attention[5] == ("**holds**: the control's ratio minus the delicate regime's, paired by seed, needs more "
                            "than 0.1: 0.30 [0.30, 0.30], all above 0.1")
    assert attention[1].startswith('paper, Sec. 3.1, Fig. 2 (SVHN): "the model learns a representation that focuses '
                                   'on the middle of the image, and forgets what is at the edges of the image"')
    falls = row(page, "test accuracy decreases")
    assert falls[4] == ("0.0001: 90.0 % [90.0, 90.0], decoder collapsed in 0 of 5 seeds; 0.001: 85.0 % [85.0, 85.0], "
                        "decoder collapsed in 0 of 5 seeds; 100: 82.0 % [82.0, 82.0], decoder collapsed in 0 of 5 "
                        "seeds; drop 8.0 points [8.0, 8.0]")
    assert falls[5].startswith("**holds**: decreases: holds, accuracy at lambda 0.0001 minus at 100, paired by seed, "
                               "8.0 points [8.0, 8.0], all above 0; slowly (by less than 10 points")
    assert row(page, "the larger lambda")[5].startswith("**does not hold**")  # the probes gain 0 points
    # a drop of 12 points is not slow; a ratio 0.05 under the control's is not the margin
    write_sweep(tmp_path / "sweep-4000", "mnist-strips", 20, {
        "0.0001": [member(0.9)] * 5, "0.001": [member(0.85)] * 5, "100": [member(0.78, ratio=0.55)] * 5})
    page = document.reproducing_page(tmp_path)
    assert row(page, "test accuracy decreases")[5].startswith("**does not hold**: decreases: holds")
    assert row(page, "the classifier's P(x)")[5].startswith("**does not hold**")
    # one collapsed decoder at lambda 100: a failed training, not comparable
    write_sweep(tmp_path / "sweep-4000", "mnist-strips", 20, {
        "0.0001": [member(0.9)] * 5, "0.001": [member(0.85)] * 5,
        "100": [member(0.82, collapsed=i == 0, ratio=0.8) for i in range(5)]})
    page = document.reproducing_page(tmp_path)
    collapsed = "**not comparable**: the decoder collapsed (a failed training) at lambda 100 in 1 of 5 seeds"
    for claim in ("the classifier's P(x)", "test accuracy decreases", "the larger lambda"):
        assert row(page, claim)[5] == collapsed, claim
    assert "100: 30.0 % [30.0, 30.0], decoder collapsed in 1 of 5 seeds" in row(page, "the larger lambda")[4]
    # 73,257 images, 10 epochs: 1145 * 10 = 11,450 steps; 4000 images, 182 epochs: 63 * 182 = 11,466
    write_sweep(tmp_path / "sweep-73257", f"mnist-strips:{steps.SVHN_IMAGES}", 10, {"100": [member(0.88)] * 5})
    write_sweep(tmp_path / "sweep-4000-steps", "mnist-strips", steps.MATCHED_EPOCHS, {"100": [member(0.5)] * 5})
    control = row(document.reproducing_page(tmp_path), "at lambda 100, 73,257 images")
    assert control[4] == ("lambda 100: 73,257 images, 11,450 steps: 88.0 % [88.0, 88.0]; 4000 images, 11,466 steps: "
                          "50.0 % [50.0, 50.0]; 4000 images, 1,260 steps: 82.0 % [82.0, 82.0]")
    assert control[5].startswith("**holds**")
    shutil.rmtree(tmp_path / "sweep-4000-steps")
    write_sweep(tmp_path / "sweep-4000-steps", "mnist-strips", 20, {"100": [member(0.5)] * 5})
    assert row(document.reproducing_page(tmp_path), "at lambda 100, 73,257 images")[5] == (
        "**not comparable**: the steps differ by more than 1 %: 11,450 and 1,260")


@pytest.mark.slow
def test_a_damaged_results_file_is_named(root, tmp_path):
    shutil.copytree(root / "demo", tmp_path / "demo")
    (tmp_path / "demo" / "noise_metrics.json").write_text('{"reached": {}}')
    with pytest.raises(PerceptregError, match=r"noise_metrics.json: .*settings"):
        document.reproducing_page(tmp_path)


@pytest.mark.slow
def test_a_results_file_whose_checksum_differs_is_named(root, tmp_path):
    shutil.copytree(root / "demo", tmp_path / "demo")
    path = tmp_path / "demo" / "noise_metrics.json"
    written = json.loads(path.read_text())
    assert written["checksum"]  # the command sealed it
    written["noise_images"] += 1  # one number changed by hand, the checksum kept
    path.write_text(json.dumps(written))
    with pytest.raises(PerceptregError, match=r"noise_metrics.json: its content differs from its checksum"):
        document.reproducing_page(tmp_path)


@pytest.mark.slow
def test_the_command_line(root, tmp_path, capsys):
    out = tmp_path / "REPRODUCING.md"
    assert reproduce([str(root), "--out", str(out)]) == 0
    assert out.read_text() == document.reproducing_page(root)
    assert reproduce([str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"Error: {tmp_path / 'none'}: no such folder; make the runs with --run"]


def test_the_natural_commands_quote_the_cifar10_spec_they_ran_with(tmp_path):
    spec = "memmap:/data/cifar 10"  # a space: quoted as the shell would need it
    page = document.reproducing_page(tmp_path, spec)
    quoted = [step.command for step in steps.natural_steps(spec).values() if "--dataset" in step.command]
    assert [c.split("--dataset ")[1].split(" --")[0] for c in quoted] == ["'memmap:/data/cifar 10'"] * 2
    assert f"`{steps.natural_steps(spec)['cifar10-sweep'].command}`" in page and "--dataset cifar10 " not in page
    assert "--dataset cifar10 " in document.reproducing_page(tmp_path)  # the canonical download by default
    assert "## Natural images (CIFAR-10)" in page and "CIFAR-10, not SVHN" in page


def test_the_page_quotes_the_spec_the_natural_sweep_was_made_with(tmp_path, capsys):
    (tmp_path / "cifar10-sweep").mkdir()
    made = {"test_accuracy": 0.5, "test_recon_mse": 0.02, "decoder_collapsed": False}  # one seed, no judge
    (tmp_path / "cifar10-sweep" / "sweep.json").write_text(json.dumps(
        sweep_file({"0.0001": [made], "100": [made]}, dataset="memmap:/data/c10", seeds=[0])))
    with pytest.raises(PerceptregError, match=r"made with --dataset memmap:/data/c10, not cifar10: give --cifar10 "
                                              r"memmap:/data/c10, so that the page quotes the commands that were run"):
        document.reproducing_page(tmp_path, "cifar10")
    assert reproduce([str(tmp_path), "--cifar10", "memmap:/data/c10", "--out", str(tmp_path / "R.md")]) == 0
    quoted = steps.natural_steps("memmap:/data/c10")["cifar10-sweep"].command
    assert f"`{quoted}`" in (tmp_path / "R.md").read_text()
    # given no spec, the page takes the sweep's: a clone rebuilds it with no flag to remember
    assert reproduce([str(tmp_path), "--out", str(tmp_path / "R2.md")]) == 0
    assert (tmp_path / "R2.md").read_text() == (tmp_path / "R.md").read_text()


def test_run_natural_reads_cifar10_as_the_sweep_under_the_root_did(tmp_path, monkeypatch):
    (tmp_path / "cifar10-sweep").mkdir()
    made = {"test_accuracy": 0.5, "test_recon_mse": 0.02, "decoder_collapsed": False}
    (tmp_path / "cifar10-sweep" / "sweep.json").write_text(json.dumps(
        sweep_file({"0.0001": [made], "100": [made]}, dataset="memmap:/data/c10", seeds=[0])))
    ran = []
    monkeypatch.setattr(main_module, "make_runs", lambda root, made: ran.extend(s.command for s in made.values()))
    assert reproduce([str(tmp_path), "--run", "--natural", "--out", str(tmp_path / "R.md")]) == 0
    assert steps.natural_steps("memmap:/data/c10")["cifar10-judge"].command in ran


def test_run_makes_the_natural_runs_only_with_natural(tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(main_module, "make_runs", lambda root, made: ran.extend(s.command for s in made.values()))
    monkeypatch.setattr(main_module, "reproducing_page", lambda root, cifar10, mnist: f"page of {cifar10}\n")
    out = str(tmp_path / "R.md")
    assert reproduce([str(tmp_path / "runs"), "--run", "--out", out]) == 0
    assert ran == [step.command for step in steps.STEPS.values()]
    ran.clear()
    assert reproduce([str(tmp_path / "runs2"), "--run", "--natural", "--cifar10", "memmap:/c", "--out", out]) == 0
    assert ran == [step.command for step in [*steps.STEPS.values(), *steps.natural_steps("memmap:/c").values(),
                                             *decoder_loss_steps("memmap:/c").values()]]
    assert ran[-7].startswith("perceptreg interpolate cifar10-sweep/lam0.01-seed0 ") and "memmap:/c" in ran[-10]
    # the ResNet trained and attached with each loss, then the study, after both judges it reads
    assert [command.split(" --out ")[-1] for command in ran[-6:-4]] == ["resnet14", "resnet14-deepsim"]
    assert all(command.startswith("python -m reproduce.decoder_loss_study --dataset memmap:/c ") and
               "--judge cifar10-judge --more-judges resnet14 " in command for command in ran[-4:])
    assert (tmp_path / "R.md").read_text() == "page of memmap:/c\n"
    capsys.readouterr()
    assert reproduce([str(tmp_path / "runs3"), "--natural", "--out", out]) == 1
    assert capsys.readouterr().err.splitlines() == ["Error: --natural makes runs: give it with --run"]
    assert not (tmp_path / "runs3").exists()
    ran.clear()  # the smoke test: every MNIST model step of the seeds asked for, small, and no sweep
    assert reproduce([str(tmp_path / "runs4"), "--run", "--smoke", "--seeds", "0,1", "--out", out]) == 0
    assert ran == [step.command for step in steps.mnist_steps((0, 1), steps.SMOKE).values()] and len(ran) == 11
    assert not any("sweep" in command for command in ran) and "--steps 5" in ran[3]
    assert reproduce([str(tmp_path / "runs5"), "--run", "--seeds", "0,x", "--out", out]) == 1
    assert "Error: --seeds '0,x': give seeds as integers" in capsys.readouterr().err


def test_reproducing_refuses_a_run_folder_as_its_root(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(main_module, "make_runs", lambda *args: pytest.fail("a step ran in a folder of a run"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    assert reproduce([str(tmp_path / "out"), "--run", "--out", str(tmp_path / "R.md")]) == 1
    assert "holds a run of `train`" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json"]


def test_steps_run_in_order_inside_the_root_and_skip_what_is_made(tmp_path):
    made = []

    def step(output: str) -> steps.Step:
        return steps.Step(output, f"make {output}", lambda: made.append((output, Path.cwd())))
    (tmp_path / "root" / "b").mkdir(parents=True)
    (tmp_path / "root" / "b" / "out.json").write_text("{}")
    steps.make_runs(tmp_path / "root", {"a": step("a/out.json"), "b": step("b/out.json"), "c": step("c.json")})
    assert made == [("a/out.json", tmp_path / "root"), ("c.json", tmp_path / "root")]
    assert Path.cwd() != tmp_path / "root"  # back where it was


def test_a_failing_step_stops_with_its_command(tmp_path):
    bad = steps.Step("bad/model.json", "perceptreg train --epochs 0 --out bad", lambda: train(TrainConfig(epochs=0), "bad"))
    said = "`epochs` must be in"  # the library call's error
    with pytest.raises(PerceptregError, match=re.escape(f"`{bad.command}` failed in {tmp_path}: ") + f".*{said}.*"
                       + re.escape("; fix it and run this again (the steps already made are skipped)")):
        steps.make_runs(tmp_path, {"bad": bad})
    assert not (tmp_path / "bad").exists()


class Stop(Exception):
    """Raised by the recorder in place of training: what was asked is all the test needs."""


LIBRARY_STEPS = {**steps.STEPS, **steps.natural_steps()}
READ_RUNS = (*(steps.seed_run(name, seed) for seed in steps.MODEL_SEEDS for name in (steps.DEMO, "post-hoc")),
             steps.MNIST_JUDGE, steps.RUN, steps.POST_HOC)  # the runs that steps after training read


def comparable(value):
    """A library call's argument as the two ways of asking give it alike: a run or a path as the
    folder it names, a dataclass as its fields, a list as a tuple."""
    if isinstance(value, Run):
        return Path(value.path).resolve()
    if isinstance(value, Path) or isinstance(value, str) and Path(value).exists():
        return Path(value).resolve()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return comparable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    return tuple(map(comparable, value)) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("name", LIBRARY_STEPS)
def test_a_library_step_asks_what_its_quoted_command_asks(tmp_path, monkeypatch, name, good_run):
    # the quoted command through the CLI and the step's library call, each stopped at the call
    # that does the work: the same arguments, folders and settings
    asked = []

    def record(config, out, **_):
        asked.append((config, Path(out)))
        raise Stop

    def recorder(original):
        def record_call(*args, **kwargs):
            bound = inspect.signature(original).bind(*args, **kwargs)
            bound.apply_defaults()
            asked.append(comparable(dict(bound.arguments)))
            raise Stop
        return record_call
    for module in (training_module, train_run_module, sweep_module, steps):
        for function in ("train", "run_sweep"):
            if hasattr(module, function):
                monkeypatch.setattr(module, function, record)
    for module, function in ((evaluate, "evaluate_attack"), (noise, "attack_from_noise"), (interpolation, "interpolate")):
        monkeypatch.setattr(module, function, recorder(getattr(module, function)))
    monkeypatch.chdir(tmp_path)
    (tmp_path / steps.JUDGE).mkdir()  # the natural sweep's --judge must exist
    for folder in READ_RUNS + ((steps.JUDGE,) if name in ("cifar10-attack", "cifar10-noise", "cifar10-interpolate") else ()):
        shutil.copytree(good_run, tmp_path / folder, dirs_exist_ok=True)
    step = LIBRARY_STEPS[name]
    assert isinstance(CliRunner().invoke(main, shlex.split(step.command)[1:]).exception, Stop)
    with pytest.raises(Stop):
        step.make()
    assert len(asked) == 2 and asked[0] == asked[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """The four results files the page reads, by hand (the page reads no model): valid, so
    that each damage below is the only thing wrong."""
    root = tmp_path_factory.mktemp("results")
    write_sweep(root / "sweep-4000", "mnist-strips", 20, {"0.0001": [member(0.9)] * 5, "0.001": [member(0.85)] * 5,
                                                         "100": [member(0.8)] * 5})
    (root / "demo").mkdir()
    (root / "demo" / "attack_metrics.json").write_text(json.dumps(attack_metrics({"settings": {"eps": 0.2},
                                                                   "runs": {"demo": attack_summary(9, 8, 1)}})))
    (root / "demo" / "noise_metrics.json").write_text(json.dumps(noise_metrics(
        {"settings": {"eps": 0.2}, "judge": "3-NN pixels", "reached": {"3-NN pixels": rate(15, 20)}, "noise_images": 20})))
    mean = {"flip_curve": {"H(image)": [0.1, 0.9], "C(latent)": [0.1, 0.9], "3-NN pixels": [0.1, 0.8]},
            "flip_interval": {"3-NN pixels": [[0.0, 0.2], [0.6, 0.9]]}}
    edited = {"target": 8, "alphas": [0.0, 2.0], "directions": {"mean": mean}}
    (root / "demo" / "interpolation_metrics.json").write_text(json.dumps(edits_file({"demo": edited})))
    assert "**not measured**: sweep.json" not in row(document.reproducing_page(root), "test accuracy decreases")[5]
    return root


def _flip_first_byte(path):
    damaged = bytearray(path.read_bytes())
    damaged[0] ^= 0x01  # "{" becomes "z": no longer JSON (results files carry no checksum of their own)
    path.write_bytes(bytes(damaged))


def _replace(path, make):
    path.unlink()
    make(path)


DAMAGES = {
    "missing": lambda path: path.unlink(),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2]),
    "empty": lambda path: path.write_bytes(b""),
    "a flipped bit": _flip_first_byte,
    "a list": lambda path: path.write_text("[1, 2]"),
    "a number": lambda path: path.write_text("7"),
    "an object of other keys": lambda path: path.write_text('{"runs": 5, "per_seed": [], "reached": null}'),
    "a FIFO": lambda path: _replace(path, os.mkfifo),
    "a folder": lambda path: _replace(path, Path.mkdir),
    "a link to /dev/zero": lambda path: _replace(path, lambda p: p.symlink_to("/dev/zero")),
}
READ = ["demo/attack_metrics.json", "demo/noise_metrics.json", "demo/interpolation_metrics.json",
        "sweep-4000/sweep.json"]  # every file the page reads from these folders (test_the_page_names_...)


def _timed_out(signum, frame):
    raise TimeoutError("the page hung on a damaged file")


def tree(root):
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
@pytest.mark.parametrize("name", READ)
def test_a_damaged_run_file_is_one_error_line_naming_it(results, tmp_path, capsys, name, damage):
    """Each file the page reads, missing, cut short, of the wrong JSON type, or a FIFO, folder or
    device in its place: one Error line naming it, exit 1, within seconds, nothing written
    (a missing file is the one exception: its rows read 'not measured')."""
    copy, out = tmp_path / "root", tmp_path / "REPRODUCING.md"
    shutil.copytree(results, copy)
    damage(copy / name)
    before = tree(copy)
    signal.signal(signal.SIGALRM, _timed_out)
    signal.alarm(20)
    try:
        code = reproduce([str(copy), "--out", str(out)])
    finally:
        signal.alarm(0)
    said = capsys.readouterr()
    lines = [line for line in said.err.splitlines() if not line.startswith("Warning: ")]
    if damage is DAMAGES["missing"]:
        assert code == 0 and lines == [] and f"{Path(name).name} is missing" in out.read_text(), said.err
    else:
        assert code == 1 and len(lines) == 1 and not out.exists(), said
        assert lines[0].startswith(f"Error: {copy / name}"), lines
    assert tree(copy) == before


def test_the_first_model_alone_draws_the_convergence_curve():
    attacks = [steps.STEPS[steps.seed_run("attack", seed)].command for seed in steps.MODEL_SEEDS]
    assert [" --curve-steps 25,50,100,200" in command for command in attacks] == [True, False, False]
    assert all(" --restarts 5 " in command and "--adaptive-search 0,0.01,0.1,1,10" in command for command in attacks)
