"""metrics.jsonl's rows have a schema: a row of train or attach with a missing or unknown key,
or a value of the wrong type, is refused in one line that names the key and the line."""

import json
import shutil

import pytest
from click.testing import CliRunner

from perceptreg import runs
from perceptreg.cli import main
from perceptreg.runs.metrics_rows import AttachedRow, TrainedRow, check_row
from perceptreg.storage.fileio import BadJSONError, CheckpointError

TRAINED = {"epoch": 2, "phase": "joint", "lr": 0.001, "train_loss": 1.5, "train_ce": 0.5, "train_recon": 100.0,
           "test_accuracy": 0.9, "test_recon_mse": 0.02, "recon_spread": 0.8, "shape_spread": 0.9,
           "decoder_collapsed": False, "train_images_per_second": 900.0, "seconds": 3.5}
ATTACHED = {"epoch": 1, "train_recon": {"stem": 10.0, "fc1": 30.0}, "test_recon_mse": {"stem": 0.01, "fc1": 0.05},
            "test_accuracy": 0.5, "seconds": 2.0}


def test_rows_of_each_kind_and_of_older_runs_are_read():
    assert isinstance(check_row(TRAINED), TrainedRow) and isinstance(check_row(ATTACHED), AttachedRow)
    assert isinstance(check_row({**TRAINED, "test_robust_accuracy": 0.7, "catastrophic_overfitting": False}),
                      TrainedRow)  # adversarial training's entries
    older = {k: v for k, v in TRAINED.items() if k not in ("recon_spread", "shape_spread", "train_images_per_second")}
    assert check_row(older).decoder_collapsed is False
    assert check_row({**TRAINED, "phase": "classifier", "train_recon": None, "test_recon_mse": None}).train_recon is None
    untested = {k: v for k, v in ATTACHED.items() if not k.startswith("test_")}  # fit_decoders without test images
    assert check_row(untested).test_accuracy is None


@pytest.mark.parametrize("row, named", [
    ({k: v for k, v in TRAINED.items() if k != "test_accuracy"}, "test_accuracy: field required"),
    ({**TRAINED, "test_acuracy": 0.9}, "test_acuracy: extra inputs are not permitted"),
    ({**TRAINED, "phase": "posu-hoc"}, "phase: input should be 'joint', 'classifier' or 'decoder'"),
    ({**TRAINED, "test_accuracy": 1.5}, "test_accuracy: input should be less than or equal to 1"),
    ({**TRAINED, "epoch": 0}, "epoch: input should be greater than or equal to 1"),
    ({k: v for k, v in ATTACHED.items() if k != "test_recon_mse"}, "test_recon_mse is missing beside the other"),
    ({k: v for k, v in ATTACHED.items() if k != "test_accuracy"}, "test_accuracy is missing beside the other"),
    ({**ATTACHED, "test_recon_mse": {"stem": "low"}}, "test_recon_mse.stem: input should be a valid number"),
    ({**TRAINED, "epoch": "2"}, "a row must be an object with an integer epoch"),
])
def test_a_row_out_of_its_schema_is_refused_naming_the_key(row, named):
    with pytest.raises(BadJSONError, match=named):
        check_row(row)


def test_the_report_of_an_attach_run_with_a_row_out_of_schema_is_one_error_line(attach_run, tmp_path):
    # attach runs written before the metrics digest in state.json: only the schema stands between a row and the report
    copy = tmp_path / "attach"
    shutil.copytree(attach_run, copy)
    metrics = copy / runs.METRICS
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows[0].pop("test_recon_mse")  # the audit's case: the test errors dropped, the accuracy kept
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(CheckpointError, match="line 1 is not a metrics row \\(.*test_recon_mse is missing"):
        runs.read_metrics(copy)
    result = CliRunner().invoke(main, ["report", str(copy)])
    assert result.exit_code == 1 and result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert "test_recon_mse" in result.output, result.output
