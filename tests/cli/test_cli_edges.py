"""Values at the edge of the command line: seeds outside [0, 2^63) and counts that would
not fit in memory are one Error line, before any work, never a traceback."""

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
