"""Corrupt run files x readers (issue 38, items 7, 10-13): every case is one error that names
the damaged file, from every reader of a run (``open_run`` and the model it rebuilds, and
`train --resume`'s check), and nothing on disk changes. A run's files are sealed: state.json
(checksum required, ranges), model.json of both kinds (no unknown key, ranges), and
metrics.jsonl (its rows' digest in the commit file)."""

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import metrics_row, rewrite_state

from perceptreg import runs
from perceptreg.cli import main
from perceptreg.core.errors import PerceptregError
from perceptreg.runs import manifest
from perceptreg.storage.schema import sealed

MAIN = Path(__file__).parents[1] / "fixtures" / "main-f9ee0de"


def _edit_json(name, change, seal=False):
    """Change the JSON file ``name``; ``seal``: seal it again, so the damage reached is the one named."""
    def apply(run: Path):
        values = json.loads((run / name).read_text())
        values.pop("checksum", None) if seal else None
        change(values)
        (run / name).write_text(json.dumps(sealed(values) if seal else values))
    return apply


def _write(name, content):
    return lambda run: (run / name).write_bytes(content.encode() if isinstance(content, str) else content)


def _metrics(edit):
    def apply(run: Path):
        lines = (run / runs.METRICS).read_text().splitlines(keepends=True)
        (run / runs.METRICS).write_text("".join(edit(lines)))
    return apply


def _state(change):
    return lambda run: rewrite_state(run, change)


def _flip_digit(lines):
    """The first digit of the first row's seconds changed (3.52 -> 4.52): a row its schema still
    takes, which only the digest in state.json tells from the one written."""
    first = lines[0]
    at = first.index('"seconds": ') + len('"seconds": ')  # its first digit, whatever its value
    return [first[:at] + str((int(first[at]) + 1) % 10) + first[at + 1:], *lines[1:]]


DEEP = "[" * 100_000
LONG = "9" * 5000

# case -> (damage, the file named, words of the error)
TRAINED = {
    "metrics missing": (lambda run: (run / runs.METRICS).unlink(), runs.METRICS, "is missing"),
    "metrics empty": (_write(runs.METRICS, ""), runs.METRICS, "rows of epochs none"),
    "metrics cut at a line": (_metrics(lambda lines: lines[:-1]), runs.METRICS, "rows of epochs 1, but"),
    "metrics cut in a line": (_metrics(lambda lines: [lines[0], lines[1][:20]]), runs.METRICS, "rows of epochs 1,"),
    "metrics digit changed": (_metrics(_flip_digit), runs.METRICS, "differ from the digest"),
    "metrics a self-looping link": (lambda run: ((run / runs.METRICS).unlink(), (run / runs.METRICS).symlink_to(
        run / runs.METRICS)), runs.METRICS, "cannot be read \\(Too many levels of symbolic links"),
    "metrics a FIFO": (lambda run: ((run / runs.METRICS).unlink(), os.mkfifo(run / runs.METRICS)), runs.METRICS,
                       "not a regular file but a FIFO"),
    "metrics line deep": (_metrics(lambda lines: [DEEP + "\n", *lines]), runs.METRICS, "nested 100000 levels"),
    "metrics line long number": (_metrics(lambda lines: ['{"epoch": ' + LONG + "}\n", *lines]), runs.METRICS,
                                 "a number of 5000 characters"),
    "state without checksum": (_edit_json(runs.STATE_META, lambda s: s.pop("checksum")), runs.STATE_META,
                               "field checksum: field required"),
    "state epoch a string": (_state(lambda s: s.update(epoch="2")), runs.STATE_META, "field epoch"),
    "state epoch 1e30": (_state(lambda s: s.update(epoch=1e30)), runs.STATE_META, "field epoch"),
    "state epoch negative": (_state(lambda s: s.update(epoch=-1)), runs.STATE_META, "field epoch"),
    "state huge input shape": (_state(lambda s: s["model"].update(input_shape=[1, 100_000, 100_000])),
                               runs.STATE_META, "field model.input_shape"),
    "state without metrics digest": (_state(lambda s: s.pop("metrics_sha256")), runs.STATE_META,
                                     "digest of metrics.jsonl"),
    "state unknown key": (_state(lambda s: s.update(epoch_reached=3)), runs.STATE_META, "epoch_reached"),
    "state model unknown key": (_state(lambda s: s["model"].update(layer="x")), runs.STATE_META, "model.layer"),
    "state model mode": (_state(lambda s: s["model"].update(mode="posu-hoc")), runs.STATE_META, "model.mode"),
    "state deep": (_write(runs.STATE_META, DEEP), runs.STATE_META, "nested 100000 levels"),
    "state long number": (_write(runs.STATE_META, '{"epoch": ' + LONG + "}"), runs.STATE_META,
                          "a number of 5000 characters"),
    "config deep": (_write(runs.CONFIG, DEEP), runs.CONFIG, "nested 100000 levels"),
    "config long number": (_write(runs.CONFIG, '{"lam": 1' + LONG + "}"), runs.CONFIG, "a number of 5001"),
}

ATTACHED = {
    "model mode": (_edit_json(runs.MODEL_META, lambda m: m.update(mode="posu-hoc")), runs.MODEL_META, "field mode"),
    "model unknown key": (_edit_json(runs.MODEL_META, lambda m: m.update(moed="joint")), runs.MODEL_META, "moed"),
    "model extra layer": (_edit_json(runs.MODEL_META, lambda m: (m["layers"].append("fc2"),
                                                                  m["activation_shapes"].update(fc2=[10]))),
                          runs.MODEL_META, r"layers \['stem', 'fc1', 'fc2'\], but config.json attaches"),
    "model layer without shape": (_edit_json(runs.MODEL_META, lambda m: m["activation_shapes"].pop("fc1")),
                                  runs.MODEL_META, "must name the same layers"),
    "model wrong activation shape": (_edit_json(runs.MODEL_META, lambda m: m["activation_shapes"].update(fc1=[7])),
                                     runs.MODEL_META, "activation shape of fc1 \\[7\\], but the model gives"),
    "model huge input shape": (_edit_json(runs.MODEL_META, lambda m: m.update(input_shape=[1, 100_000, 100_000])),
                               runs.MODEL_META, "field input_shape"),
    "model classes and count": (_edit_json(runs.MODEL_META, lambda m: m.update(num_classes=11)), runs.MODEL_META,
                                "10 class names for num_classes 11"),
    "model deep": (_write(runs.MODEL_META, DEEP), runs.MODEL_META, "nested 100000 levels"),
    "metrics missing": (lambda run: (run / runs.METRICS).unlink(), runs.METRICS, "is missing"),
    "metrics digit changed": (_metrics(_flip_digit), runs.METRICS, "differ from the digest"),
    "metrics empty": (_write(runs.METRICS, ""), runs.METRICS, "differ from the digest"),
}


def damaged(source: Path, tmp_path: Path, damage) -> Path:
    run = tmp_path / "run"
    shutil.copytree(source, run, ignore=shutil.ignore_patterns(".lock"))
    damage(run)
    return run


def snapshot(run: Path) -> dict:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def check(reader, run: Path, name: str, words: str) -> None:
    before = snapshot(run)
    with pytest.raises(PerceptregError, match=rf"^{run / name}:? .*{words}") as caught:
        reader()
    assert "\n" not in str(caught.value)
    assert snapshot(run) == before


@pytest.mark.parametrize("case", TRAINED)
def test_a_damaged_file_of_a_trained_run_is_named_by_every_reader(trained_run, tmp_path, case):
    damage, name, words = TRAINED[case]
    run = damaged(trained_run, tmp_path, damage)
    check(lambda: runs.open_run(run).model(), run, name, words)
    config = runs.read_config(run) if name != runs.CONFIG else None
    if config is not None:  # `train --resume` refuses it before anything is written
        check(lambda: runs.check_writable_for_training(run, config, resume=True), run, name, words)


@pytest.mark.parametrize("case", ATTACHED)
def test_a_damaged_file_of_an_attach_run_is_named_by_every_reader(attach_run, tmp_path, case):
    damage, name, words = ATTACHED[case]
    run = damaged(attach_run, tmp_path, damage)
    check(lambda: runs.open_run(run).attached_model(), run, name, words)


@pytest.mark.parametrize("case", ["metrics digit changed", "state deep", "metrics missing"])
def test_the_report_says_it_in_one_line(trained_run, tmp_path, case):
    damage, name, words = TRAINED[case]
    run = damaged(trained_run, tmp_path, damage)
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {run / name}"), result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_run_not_yet_checkpointed_after_its_row_keeps_the_committed_rows(trained_run, tmp_path):
    """A kill between an epoch's row and its checkpoint: the row is left out, not an error."""
    run = damaged(trained_run, tmp_path, lambda run: runs.append_metrics(run, metrics_row(3)))
    assert [row["epoch"] for row in runs.open_run(run).metrics] == [1, 2]
    assert [row["epoch"] for row in runs.history_up_to(run, 2)] == [1, 2]
    assert [row["epoch"] for row in runs.read_metrics(run)] == [1, 2]  # rewritten without it


def test_a_new_state_is_format_2_with_its_metrics_digest(trained_run):
    state = manifest.read_state(trained_run)
    assert state["format"] == manifest.STATE_FORMAT
    assert state["metrics_sha256"] == runs.files.metrics_digest(runs.read_metrics(trained_run))


def test_an_old_state_opens_and_its_unsealed_metrics_are_checked_by_their_epochs(tmp_path):
    """main f9ee0de's state.json (no format, no metrics digest) still reads; its metrics.jsonl
    is taken as it is, but must hold one row per committed epoch."""
    shutil.copy(MAIN / runs.STATE_META, tmp_path / runs.STATE_META)
    state = manifest.read_state(tmp_path)
    assert state["format"] is None and state["metrics_sha256"] is None and state["epoch"] == 1
    runs.append_metrics(tmp_path, metrics_row(1))
    assert manifest.committed_metrics(tmp_path, state, None) == [metrics_row(1)]
    (tmp_path / runs.METRICS).write_text("")
    with pytest.raises(PerceptregError, match=rf"^{tmp_path / runs.METRICS}: rows of epochs none, but"):
        manifest.committed_metrics(tmp_path, state, None)
