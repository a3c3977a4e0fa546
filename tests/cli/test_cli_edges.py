"""Values at the edge of the command line: seeds outside [0, 2^63) and counts that would
not fit in memory are one Error line, before any work, never a traceback."""

import json
import re
import shutil

import pytest
from click.testing import CliRunner
from helpers import USER_NET

from perceptreg.cli import main
from perceptreg.core.devices import check_memory
from perceptreg.core.errors import PerceptregError

BIG = str(2**70)


@pytest.mark.parametrize("args, words", [
    (["train", "--seed", BIG, "--epochs", "1"], "--seed must be in [0, 2^63)"),
    (["train", "--seed", "-1", "--epochs", "1"], "--seed must be in [0, 2^63)"),
    (["attach", "--model", f"{USER_NET}:build", "--layers", "fc1", "--seed", BIG], "--seed must be in [0, 2^63)"),
    (["attach", "--model", f"{USER_NET}:build", "--layers", "fc1", "--attack-seed", BIG], "--attack-seed"),
])
def test_a_seed_outside_64_bits_is_refused(tmp_path, args, words):
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "run")])
    assert result.exit_code in (1, 2) and words in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_attack_seed_outside_64_bits_is_refused(trained_run):
    result = CliRunner().invoke(main, ["attack", str(trained_run), "--seed", BIG])
    assert result.exit_code == 2 and "--seed" in result.output and "Traceback" not in result.output


def test_noise_that_would_not_fit_in_memory_is_refused_before_it_is_drawn(trained_run):
    result = CliRunner().invoke(main, ["attack", str(trained_run), "--from-noise", "--n", "1000000"])
    assert result.exit_code == 1 and "Error: --n 1000000: 10000000 noise images" in result.output, result.output


def test_check_memory_names_the_count():
    check_memory("n", 10, 1000, "ten images")
    with pytest.raises(PerceptregError, match="`n` 10: ten images would take about"):
        check_memory("n", 10, 2**62, "ten images")


def test_resume_of_a_run_killed_before_its_config_was_written_starts_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("pid 1\n")  # all a kill before config.json leaves
    result = CliRunner().invoke(main, ["train", "--resume", "--out", str(out), "--train-size", "100", "--epochs", "1",
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    assert "starts over with the options given" in result.output and (out / "state.json").exists()


BAD_OUTS = {"under a file": "{file}/out", "under /proc": "/proc/perceptreg-out", "a 300-byte name": "{tmp}/" + "a" * 300,
            "a device": "/dev/full", "empty": ""}
WRITERS = {  # every command that writes, with what it needs before its --out
    "train": ["train", "--train-size", "100", "--epochs", "1"],
    "demo": ["demo", "--epochs", "1"],
    "attach": ["attach", "--model", f"{USER_NET}:build", "--random-weights", "--layers", "fc1", "--epochs", "1"],
    "perceive": ["perceive", "{run}"],
    "sweep": ["sweep", "--quick"],
    "prepare": ["prepare", "--dataset", "mnist5k"],
    "attack": ["attack", "{run}", "--steps", "1"],
    "interpolate": ["interpolate", "{run}", "--target", "1", "--steps", "1"],
    "interpolate --save-direction": ["interpolate", "{run}", "--target", "1", "--steps", "1", "--save-direction"],
    "report": ["report", "{run}"],
}


def snapshot(*folders):
    return {p: p.stat().st_mtime_ns for folder in folders for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("out", BAD_OUTS.values(), ids=BAD_OUTS.keys())
@pytest.mark.parametrize("command", WRITERS.values(), ids=WRITERS.keys())
def test_a_bad_output_path_is_one_line_before_any_work(command, out, trained_run, tmp_path):
    (tmp_path / "file").write_text("x")
    values = {"run": trained_run, "file": tmp_path / "file", "tmp": tmp_path}
    args = [a.format(**values) for a in command] + ([] if "--save-direction" in command else ["--out"])
    before = snapshot(tmp_path, trained_run)
    result = CliRunner().invoke(main, args + [out.format(**values)])
    assert result.exit_code == (2 if out == "" else 1), result.output
    said = [line for line in result.output.splitlines() if not line.startswith("Warning: ")]
    assert len(said) == 1 and said[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    assert ("is empty" if out == "" else "cannot write") in said[0], result.output
    assert snapshot(tmp_path, trained_run) == before  # nothing trained, nothing written


def test_a_data_root_that_is_no_folder_is_one_line(tmp_path):
    for dataset in ("mnist", "svhn"):  # downloaded into --data-root: its folder cannot be made
        result = CliRunner().invoke(main, ["train", "--dataset", dataset, "--data-root", "/dev/null", "--epochs", "1",
                                           "--out", str(tmp_path / dataset)])
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert "into /dev/null: not a writable folder (File exists); give a writable folder as --data-root" in result.output
        assert not (tmp_path / dataset).exists()


@pytest.mark.parametrize("number", ["NaN", "Infinity"])
def test_resume_refuses_a_metrics_file_holding_nan_before_it_writes(trained_run, tmp_path, number):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    rows = (run / "metrics.jsonl").read_text().splitlines()
    rows[0] = re.sub(r'"test_recon_mse": [^,]+', f'"test_recon_mse": {number}', rows[0])
    (run / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    before = snapshot(run)
    result = CliRunner().invoke(main, ["train", "--resume", "--out", str(run), "--epochs", "3", "--quiet"])
    assert result.exit_code == 1 and result.output == (f"Error: {run / 'metrics.jsonl'}: line 1 is not a metrics row "
                                                       f"(a number is {number}); the file is damaged\n")
    assert snapshot(run) == before  # config.json still says the run's epochs


@pytest.mark.parametrize("arch, message", [
    ("resnet", "setting arch: 'resnet' is no architecture (one of mnist, svhn, celeba, vgg, or custom)"),
    ("svhn", "setting arch: 'svhn', but the model in "),  # an architecture, not this run's
    (5, "setting arch: input should be a valid string (got 5)"),
])
@pytest.mark.parametrize("command", [["perceive", "{run}", "--n", "2"], ["train", "--resume", "--out", "{run}", "--quiet"],
                                     ["attack", "{run}", "--steps", "1", "--pool", "2"]], ids=["perceive", "resume", "attack"])
def test_a_config_with_another_arch_is_one_line_naming_it(trained_run, tmp_path, arch, message, command):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "arch": arch}))
    before = snapshot(run)
    result = CliRunner().invoke(main, [a.format(run=run) for a in command])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {run / 'config.json'}: {message}"), result.output
    assert result.output.count("\n") == 1 and snapshot(run) == before
