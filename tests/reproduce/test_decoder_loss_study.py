"""Issue 35's study of decoder losses: each loss trained at the same budget, measured beside
its inversion, drawn in one grid per (z, lambda), its rows merged into one results file."""

import json

import pytest
import torch
from PIL import Image

from perceptreg import runs
from perceptreg.core.config import DECODER_LOSSES
from perceptreg.core.errors import PerceptregError
from reproduce import decoder_loss_study


def test_rows_of_another_grid_are_kept_and_a_row_measured_again_is_replaced(tmp_path):
    path = tmp_path / "results.json"
    decoder_loss_study.write_results(path, [{"z": 256, "lam": 1.0, "loss": "pixel", "v": 1},
                                            {"z": 256, "lam": 1.0, "loss": "feature", "v": 2}])
    decoder_loss_study.write_results(path, [{"z": 256, "lam": 0.01, "loss": "pixel", "v": 3},
                                            {"z": 256, "lam": 1.0, "loss": "pixel", "v": 4}])
    rows = json.loads(path.read_text())
    assert [(r["lam"], r["loss"], r["v"]) for r in rows] == [(0.01, "pixel", 3), (1.0, "feature", 2), (1.0, "pixel", 4)]


def test_an_unknown_variant_is_named_before_any_work(tmp_path):
    with pytest.raises(PerceptregError, match="--losses: no variant 'vgg'; the study's are pixel, feature, deepsim, "
                                              "feature-vgg"):
        decoder_loss_study.study("mnist5k", tmp_path, 1, 100, [8], [0.01], losses=["pixel", "vgg"])
    assert not any(tmp_path.iterdir())


def test_a_chosen_variant_alone_is_trained_and_measured_once_per_judges_and_sizes(tmp_path, capsys):
    torch.set_num_threads(1)
    study = dict(inverted=decoder_loss_study.SHOWN, comparator_arch="mnist", comparator_epochs=1, losses=["pixel"])
    rows = decoder_loss_study.study("mnist5k", tmp_path, 1, 100, [8], [0.01], read_size=40, **study)
    assert [row["loss"] for row in rows] == ["pixel"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["z8-lam0.01-pixel"]  # no comparator needed
    measured = tmp_path / "z8-lam0.01-pixel" / "perception.json"
    first = measured.stat().st_mtime_ns
    assert "measuring z8-lam0.01-pixel" in capsys.readouterr().out
    assert decoder_loss_study.study("mnist5k", tmp_path, 1, 100, [8], [0.01], read_size=40, **study) == rows
    assert measured.stat().st_mtime_ns == first and "z 8, lambda 0.01: measured already" in capsys.readouterr().out
    again = decoder_loss_study.study("mnist5k", tmp_path, 1, 100, [8], [0.01], read_size=30, **study)
    assert measured.stat().st_mtime_ns > first and again[0]["measured_with"]["read_size"] == 30  # another size
    written = json.loads((tmp_path / decoder_loss_study.RESULTS).read_text())
    assert written == again and written[0]["measured_with"]["model"] == rows[0]["measured_with"]["model"]


@pytest.mark.slow
def test_every_loss_is_trained_at_one_budget_measured_and_drawn(tmp_path):
    torch.set_num_threads(1)
    study = dict(epochs=1, train_size=100, z_dims=[8], lams=[0.01], read_size=40, inverted=decoder_loss_study.SHOWN,
                 comparator_arch="mnist", comparator_epochs=1)
    rows = decoder_loss_study.study("mnist5k", tmp_path, **study)
    variants = [*DECODER_LOSSES, "feature-mnist"]
    assert [row["loss"] for row in rows] == variants
    trained = [runs.open_run(tmp_path / f"z8-lam0.01-{name}") for name in variants]
    assert [run.config.decoder_loss.name for run in trained] == [*DECODER_LOSSES, "feature"]
    comparator = runs.open_run(tmp_path / decoder_loss_study.COMPARATOR)
    assert (comparator.config.lam, comparator.config.seed) == (0.0, 2)  # a classifier alone, not the judge's seed
    assert [run.config.decoder_loss.comparator for run in trained] == ["self"] * 3 + [str(comparator.path)]
    assert {(run.config.epochs, run.config.train_size, run.config.z_dim) for run in trained} == {(1, 100, 8)}
    for row, run in zip(rows, trained):
        assert row["test_accuracy"] == run.metrics[-1]["test_accuracy"]
        assert 0 <= row["h_consistency"] <= 1 and row["perceptual_distance"] >= 0
        assert list(row["judges"]) == ["3-NN pixels"] and "judge_reads_inversion_as_true" not in row  # no CNN judge of digits
        assert run.has("perception.json") and run.has("inversion.json")
    written = json.loads((tmp_path / decoder_loss_study.RESULTS).read_text())
    assert [(row["loss"], row["test_accuracy"]) for row in written] == sorted(
        (row["loss"], row["test_accuracy"]) for row in rows)  # merged, keyed by (z, lam, loss)
    grid = Image.open(tmp_path / "grid-z8-lam0.01.png")
    assert grid.width > 10 * 28 * 3 and grid.height > 9 * 28 * 3  # x, then P(x) and x' of each loss, a class a column
    again = decoder_loss_study.study("mnist5k", tmp_path, **study)
    assert [run.metrics for run in trained] == [runs.open_run(run.path).metrics for run in trained]  # read, not retrained
    assert [row["test_accuracy"] for row in again] == [row["test_accuracy"] for row in rows]
