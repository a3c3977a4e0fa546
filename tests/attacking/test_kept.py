"""evaluate-attack resumes: a run's evaluation is kept as soon as it is measured, read back
by the same command, measured again under other inputs, and removed with the results."""

import shutil

import pytest
import torch

from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.run_attacks import Strength
from perceptreg.attacking import evaluate, kept
from perceptreg.runs import checkpoint, open_run
from perceptreg.storage.fileio import CheckpointError

SETTINGS = AttackSettings(steps=2)
OPTIONS = dict(images=12, held_out=12, strength=Strength(adaptive=(1.0,)), progress=False)


@pytest.fixture
def runs(tmp_path, good_run, trained_run):
    """Copies of two runs: the one attacked and its --compare (their results land in the folders)."""
    return shutil.copytree(good_run, tmp_path / "good"), shutil.copytree(trained_run, tmp_path / "other")


def _counting(monkeypatch, fail_on: int | None = None) -> list[str]:
    """evaluate_run, counted by the run it attacks; the ``fail_on``-th call killed (Ctrl-C)."""
    calls, real = [], evaluate.evaluate_run

    def counted(run, *args, **kwargs):
        calls.append(run.path.name)
        if len(calls) == fail_on:
            raise KeyboardInterrupt
        return real(run, *args, **kwargs)
    monkeypatch.setattr(evaluate, "evaluate_run", counted)
    return calls


def test_a_killed_attack_resumes_with_the_runs_it_had_measured(runs, monkeypatch):
    good, other = runs
    calls = _counting(monkeypatch, fail_on=2)  # killed while --compare is attacked
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_attack(open_run(good), SETTINGS, compare=other, **OPTIONS)
    assert calls == ["good", "other"] and sorted(p.name for p in (good / kept.FOLDER).iterdir()) == \
           [".lock", "0.json", "0.safetensors"]
    calls.clear()
    resumed = evaluate.evaluate_attack(open_run(good), SETTINGS, compare=other, **OPTIONS)
    assert calls == ["other"]  # the first run read back, not attacked again
    assert not (good / kept.FOLDER).exists()  # gone once attack_metrics.json is written
    monkeypatch.undo()
    (good / "attack_metrics.json").unlink()
    whole = evaluate.evaluate_attack(open_run(good), SETTINGS, compare=other, **OPTIONS)
    def numbers(report):  # as written (NaN, of a rate with no images, is not equal to itself)
        return {name: summary.model_dump_json() for name, summary in report.summaries.items()}, \
            report.paired.model_dump_json()
    assert numbers(resumed) == numbers(whole)  # the same numbers as a run never killed
    for read, made in zip(resumed.evaluations, whole.evaluations):
        assert torch.equal(read.adversarial, made.adversarial) and read.settings == made.settings
        assert read.judge_readings.keys() == made.judge_readings.keys()
        assert all(torch.equal(read.judge_readings[j][k], made.judge_readings[j][k]) for j in read.judge_readings
                   for k in read.judge_readings[j])


def test_an_evaluation_kept_under_other_inputs_is_measured_again(runs, monkeypatch):
    good, other = runs
    _counting(monkeypatch, fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_attack(open_run(good), SETTINGS, compare=other, **OPTIONS)
    calls = _counting(monkeypatch)
    evaluate.evaluate_attack(open_run(good), AttackSettings(steps=3), compare=other, **OPTIONS)
    assert calls == ["good", "other"]


def test_a_damaged_kept_evaluation_is_said_and_measured_again(runs, monkeypatch):
    good, other = runs
    _counting(monkeypatch, fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_attack(open_run(good), SETTINGS, compare=other, **OPTIONS)
    (good / kept.FOLDER / "0.safetensors").write_bytes(b"not tensors")
    calls = _counting(monkeypatch)
    with pytest.warns(RuntimeWarning, match=r"0\.json: cannot be read .*the attack runs again"):
        evaluate.evaluate_attack(open_run(good), SETTINGS, compare=other, **OPTIONS)
    assert calls == ["good", "other"]


def test_a_kill_while_keeping_leaves_no_record_of_other_tensors(runs, monkeypatch):
    good, other = runs
    _counting(monkeypatch, fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_attack(open_run(good), SETTINGS, compare=other, **OPTIONS)
    folder = good / kept.FOLDER
    (record,) = [path for path in folder.iterdir() if path.suffix == ".json"]
    old_key = __import__("json").loads(record.read_text())["key"]
    evaluation = kept.kept(folder, 0, old_key)

    def killed(*args):
        raise KeyboardInterrupt  # after the new tensors, before their record
    monkeypatch.setattr(kept.fileio, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        kept.keep(evaluation, folder, 0, "another key")
    assert kept.kept(folder, 0, old_key) is None  # the old record no longer vouches for the new tensors


def test_a_second_evaluation_of_the_same_run_is_refused_while_one_writes(runs):
    good, _ = runs
    with checkpoint.writer_lock(kept.folder(good / "attack_metrics.json")):  # another evaluate-attack, mid-way
        with pytest.raises(CheckpointError, match=r"\.evaluate-attack is being written by another process"):
            evaluate.evaluate_attack(open_run(good), SETTINGS, **OPTIONS)
    assert not (good / "attack_metrics.json").exists()
    evaluate.evaluate_attack(open_run(good), SETTINGS, **OPTIONS)  # once it ends, the run is attacked
    assert (good / "attack_metrics.json").exists() and not (good / kept.FOLDER).exists()


def test_each_layer_of_an_attach_run_keeps_its_evaluations_apart(tmp_path, attach_run):
    run = shutil.copytree(attach_run, tmp_path / "attached")
    stem = kept.folder(run / "attack_metrics_stem.json")
    assert stem == run / ".evaluate-attack_stem" and kept.folder(run / "attack_metrics.json") == run / kept.FOLDER
    with checkpoint.writer_lock(stem):  # an evaluation of layer stem runs beside this one
        evaluate.evaluate_attack(open_run(run), SETTINGS, layer="fc1", **OPTIONS)
    assert (run / "attack_metrics_fc1.json").exists() and not (run / ".evaluate-attack_fc1").exists()
