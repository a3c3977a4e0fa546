"""sweep.json and sweep_config.json are read through their types: main f9ee0de's files open
as the same rows, a file written now reads back as what was written, and a key missing or
misspelt anywhere in them is one Error line naming the file and the key."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import sweep_file

from perceptreg import runs
from perceptreg.cli import main
from perceptreg.storage.schema import sealed, write_sealed
from perceptreg.sweeps.summary import SweepSummary, read_sweep, sweep_table

MAIN = Path(__file__).parents[1] / "fixtures" / "main-f9ee0de"


def test_a_sweep_json_of_main_f9ee0de_opens_as_typed_rows():
    flat = json.loads((MAIN / runs.SWEEP_JSON).read_text())["rows"][0]
    row = read_sweep(MAIN).rows[0]
    assert (row.variant, row.seeds, row.collapsed) == ("0.01", 1, 1)
    assert (row.test_accuracy.mean, row.test_accuracy.ci95) == (flat["test_accuracy"], flat["test_accuracy_ci95"])
    assert row.centre_to_edge.mean == flat["centre_to_edge"] and row.judge_accuracy is None
    assert {name: s.mean for name, s in row.probes.items()} == {
        name: flat[f"probe: {name}"] for name in ("label (the task)", "left_digit", "right_digit")}
    assert row.mlp_probes["right_digit"].mean == flat["mlp probe: right_digit"]
    assert read_sweep(MAIN).config.max_probe_images == 100


def test_a_sweep_json_written_now_reads_back_as_written(tmp_path):
    written = SweepSummary.model_validate(sweep_file({"0.01": [{"probes": {"left_digit": 0.5}}] * 2}, seeds=[0, 1]))
    write_sealed(tmp_path / runs.SWEEP_JSON, written.model_dump(exclude={"checksum"}))
    read = read_sweep(tmp_path)
    assert read.model_dump(exclude={"checksum", "code_version"}) == written.model_dump(exclude={"checksum", "code_version"})
    assert read.rows[0].probes["left_digit"].mean == 0.5 and read.config.seeds == (0, 1)
    on_disk = json.loads((tmp_path / runs.SWEEP_JSON).read_text())["rows"][0]
    assert on_disk["probes"] == {"left_digit": {"mean": 0.5, "ci95": 0.0}}  # attribute names, not "probe: left_digit"
    assert sweep_table(read) == sweep_table(written)


def _damaged(values: dict, where: tuple, change) -> None:
    """``change`` applied to the part of ``values`` at ``where`` (("rows", 0): values["rows"][0])."""
    part = values
    for key in where:
        part = part[key]
    change(part)


# (the file, the part changed, the change, the key the error names)
DAMAGES = {
    "a key unknown to a row": (runs.SWEEP_JSON, ("rows", 0), lambda row: row.update({"test_acuracy": 0.5}),
                               "rows.0.test_acuracy"),
    "a mean without its interval": (runs.SWEEP_JSON, ("rows", 0), lambda row: row.pop("shape_spread_ci95"),
                                    "rows.0.shape_spread"),
    "an interval of no measure": (runs.SWEEP_JSON, ("rows", 0), lambda row: row.update({"acuracy_ci95": 0.1}),
                                  "rows.0.acuracy_ci95"),
    "a row without its seeds": (runs.SWEEP_JSON, ("rows", 0), lambda row: row.pop("seeds"), "rows.0.seeds"),
    "a misspelt probe column": (runs.SWEEP_JSON, ("rows", 0), lambda row: row.update(
        {"prob: left_digit": row.pop("probe: left_digit"), "prob: left_digit_ci95": row.pop("probe: left_digit_ci95")}),
        "rows.0.prob: left_digit"),
    "a key unknown to a member": (runs.SWEEP_JSON, ("per_seed", "0.01", 0),
                                  lambda member: member.update({"acuracy": 0.5}), "per_seed.0.01.0.acuracy"),
    "a member without its probes": (runs.SWEEP_JSON, ("per_seed", "0.01", 0), lambda member: member.pop("probes"),
                                    "per_seed.0.01.0.probes"),
    "a setting unknown to the config": (runs.SWEEP_JSON, ("config",), lambda config: config.update({"seed": 0}),
                                        "config.seed"),
    "a config without its seeds": (runs.SWEEP_JSON, ("config",), lambda config: config.pop("seeds"), "config.seeds"),
    "a sweep without its judge": (runs.SWEEP_JSON, (), lambda summary: summary.pop("judge"), "judge"),
    "sweep_config.json with a misspelt setting": (
        runs.SWEEP_CONFIG, (), lambda config: config.update({"epoch": config.pop("epochs")}), "epoch"),
    "sweep_config.json without a setting": (runs.SWEEP_CONFIG, (), lambda config: config.pop("lams"), "lams"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_sweep_file_with_a_key_missing_or_misspelt_is_one_error_line(tmp_path, damage):
    name, where, change, key = DAMAGES[damage]
    for copied in (runs.SWEEP_JSON, runs.SWEEP_CONFIG):
        shutil.copy(MAIN / copied, tmp_path / copied)
    values = json.loads((tmp_path / name).read_text())
    values.pop("checksum", None)
    _damaged(values, where, change)
    (tmp_path / name).write_text(json.dumps(sealed(values) if name == runs.SWEEP_JSON else values))
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith(f"Error: {tmp_path / name}: field {key}"), result.output
    assert not (tmp_path / runs.REPORT).exists()


def test_the_report_of_main_f9ee0de_sweep_folder(tmp_path):
    for copied in (runs.SWEEP_JSON, runs.SWEEP_CONFIG):
        shutil.copy(MAIN / copied, tmp_path / copied)
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / runs.REPORT).read_text()
    assert "<td>0.01</td><td>1</td><td>0.100</td><td>0.1144</td>" in text  # accuracy, MSE of the flat columns
    assert "<td>max_probe_images</td><td>100</td>" in text  # the sweep's settings, typed
