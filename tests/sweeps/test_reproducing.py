"""REPRODUCING.md is read from real run folders: each number is the one the commands wrote."""

import json
import shutil

import pytest
from click.testing import CliRunner

from perceptreg.cli import main
from perceptreg.core.errors import PerceptregError
from perceptreg.measures import format_rate
from perceptreg.sweeps import reproducing


@pytest.fixture(scope="module")
def root(tmp_path_factory, good_run, quick_sweep):
    """The folders the table reads, made by the same commands at a small scale."""
    root = tmp_path_factory.mktemp("reproduce")
    shutil.copytree(good_run, root / "demo")
    shutil.copytree(quick_sweep[0], root / "sweep-4000")
    demo = str(root / "demo")
    for command in (["evaluate-attack", demo, "--images", "30", "--steps", "5", "--adaptive", "0,1"],
                    ["attack", demo, "--from-noise", "--n", "2", "--steps", "5"],
                    ["interpolate", demo, "--target", "8", "--images", "10", "--fit-images", "10", "--steps", "5"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
    return root


def row(page: str, claim: str) -> list[str]:
    line = next(line for line in page.splitlines() if line.startswith(f"| {claim}"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_every_number_comes_from_the_runs(root):
    page = reproducing.reproducing_page(root)
    attack = json.loads((root / "demo" / "attack_metrics.json").read_text())
    summary = attack["runs"][str(root / "demo")]
    assert row(page, "PGD")[-1] == "success " + format_rate(summary["attack_success_rate"])
    knn = summary["judges"]["3-NN pixels"]["on_P(x_adv)"]
    assert format_rate(knn["adversarial_label"]) in row(page, "P(x_adv) looks like")[-1]
    assert f"AUC {summary['detector']['auroc']:.3f}" in row(page, "\\|\\|x - P(x)\\|\\|^2 detects")[-1]
    assert row(page, "... against")[-1].count("beta ") == 2
    noise = json.loads((root / "demo" / "noise_metrics.json").read_text())
    assert noise["noise_images"] == 20 and format_rate(noise["reached"]["3-NN pixels"]) in row(page, "noise")[-1]
    sweep = json.loads((root / "sweep-4000" / "sweep.json").read_text())
    accuracy = {r["variant"]: r["test_accuracy"] for r in sweep["rows"]}
    assert f"0.001: {100 * accuracy['0.001']:.1f} %" in row(page, "test accuracy stays")[-1]
    assert row(page, "test accuracy stays")[2] == "0.0001: 88.5 %, 0.001: 87.9 %, 0.01: 87.8 %, 100: 81.3 %"
    assert "not measured: sweep.json is missing (`--run` makes it)" in row(page, "the same sweep")[-1]
    assert row(page, "P(x) = D(F(x))")[-1].startswith("test accuracy ") and "on 1000 test images" in page


def test_a_damaged_results_file_is_named(root, tmp_path):
    shutil.copytree(root / "demo", tmp_path / "demo")
    (tmp_path / "demo" / "noise_metrics.json").write_text('{"reached": {}}')
    with pytest.raises(PerceptregError, match=r"noise_metrics.json: not in the format perceptreg writes"):
        reproducing.reproducing_page(tmp_path)


def test_the_command_line(root, tmp_path, capsys):
    out = tmp_path / "REPRODUCING.md"
    assert reproducing.main([str(root), "--out", str(out)]) == 0
    assert out.read_text() == reproducing.reproducing_page(root)
    assert reproducing.main([str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"Error: {tmp_path / 'none'}: no such folder; make the runs with --run"]


def test_steps_are_skipped_when_their_output_exists(tmp_path, monkeypatch):
    for output, _ in reproducing.STEPS.values():
        (tmp_path / output).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / output).write_text("{}")
    monkeypatch.setattr(reproducing.subprocess, "run", lambda *a, **k: pytest.fail("nothing should run"))
    reproducing.make_runs(tmp_path)


def test_a_failing_step_stops_with_its_command(tmp_path, monkeypatch):
    monkeypatch.setattr(reproducing, "STEPS", {"bad": ("bad/model.json", "perceptreg train --epochs abc --out bad")})
    with pytest.raises(PerceptregError, match=r"`perceptreg train --epochs abc --out bad` failed in .*rerun with --run"):
        reproducing.make_runs(tmp_path)
