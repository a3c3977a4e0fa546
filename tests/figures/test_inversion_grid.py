"""`perceptreg invert` and its library call on trained and attached runs."""

import html
import json
import re

import pytest
from click.testing import CliRunner

from perceptreg import figures
from perceptreg.cli import main
from perceptreg.core.errors import PerceptregError
from perceptreg.core.inversion_settings import InversionSettings
from perceptreg.figures.inversion import InversionFile, invert
from perceptreg.runs.files import INVERSION_JSON
from perceptreg.storage.fileio import CheckpointError
from perceptreg.storage.schema import load_sealed_file, write_sealed

QUICK = InversionSettings(steps=30)


def test_a_trained_run_is_inverted_into_a_sealed_file_and_a_grid(trained_run, tmp_path):
    result = invert(trained_run, n=4, settings=QUICK, out=tmp_path / "inv.png")
    saved = load_sealed_file(result.file, InversionFile, "run invert again")
    assert result.file == trained_run / INVERSION_JSON and result.grid == tmp_path / "inv.png"
    assert saved["images"] == 4 == len(result.inverted) and saved["layer"] is None
    assert saved["settings"]["steps"] == 30 and saved["batch_norm_layers"] == 0  # the paper's MNIST net has none
    assert saved["feature_error"] == result.feature_error.model_dump() and 0 <= result.feature_error.mean < 1
    assert result.h_agrees.n == 4 and result.inverted.min() >= 0 and result.inverted.max() <= 1
    layout = figures.read_layout(result.grid)
    cards = layout["panels"][0]["cards"]
    assert [[cell["label"].split(",")[0] for cell in card] for card in cards] == [["x", "P(x)", "x'"]] * 4
    assert "inversion of 4 test images at z" in result.lines()[0]
    assert result._repr_html_().startswith('<img alt="inv.png" src="data:image/png;base64,')
    assert result._repr_html_().endswith(f"<p>{html.escape(result.lines()[1])}</p>")


def test_the_same_seed_gives_the_same_inversion(trained_run, tmp_path):
    first = invert(trained_run, n=2, settings=QUICK, out=tmp_path / "a.png")
    second = invert(trained_run, n=2, settings=QUICK, out=tmp_path / "b.png")
    assert (first.inverted == second.inverted).all()


def test_an_attached_layer_is_inverted_through_the_users_network_and_its_batch_norm(attach_run, tmp_path):
    result = invert(attach_run, layer="stem", n=3, settings=QUICK)
    assert result.grid == attach_run / "inversion_stem.png" and result.file == attach_run / "inversion_stem.json"
    assert json.loads(result.file.read_text())["batch_norm_layers"] == 4  # the user's net: stem, two residual, block2


def test_a_damaged_file_is_named(trained_run, tmp_path):
    result = invert(trained_run, n=2, settings=QUICK, out=tmp_path / "c.png")
    values = json.loads(result.file.read_text())
    values["images"] = 3
    result.file.write_text(json.dumps(values))
    with pytest.raises(CheckpointError, match="differs from its checksum"):
        load_sealed_file(result.file, InversionFile, "run invert again")
    values["images"] = 2
    written = {k: v for k, v in values.items() if k not in ("checksum", "code_version")}
    for damage, field in ((lambda v: v["feature_error"].update(maen=v["feature_error"].pop("mean")), "feature_error.mean"),
                          (lambda v: v["settings"].update(stepz=v["settings"].pop("steps")), "settings.steps"),
                          (lambda v: v["h_agrees"].pop("n"), "h_agrees.n")):
        values = json.loads(json.dumps(written))
        damage(values)
        write_sealed(result.file, values)  # sealed anew: the schema, not the seal, refuses it
        with pytest.raises(CheckpointError, match=rf"inversion.json: field {re.escape(field)}\b"):
            load_sealed_file(result.file, InversionFile, "run invert again")


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "Error: --steps must be at least 1, got 0"),
    (["--layer", "fc9"], "Error: --layer 'fc9' has no decoder; choose one of stem, fc1"),
    (["--n", "0"], "Error: --n must be at least 1, got 0"),
])
def test_bad_input_is_one_error_line(args, message, attach_run):
    result = CliRunner().invoke(main, ["invert", str(attach_run), *args])
    assert result.exit_code == 1 and result.output.startswith(message) and result.output.count("\n") == 1


def test_the_command_prints_the_measures(trained_run, tmp_path):
    result = CliRunner().invoke(main, ["invert", str(trained_run), "--n", "2", "--steps", "5",
                                       "--out", str(tmp_path / "d.png")])
    assert result.exit_code == 0, result.output
    assert "inversion of 2 test images at z" in result.output and "H reads x' as x" in result.output


def test_a_layer_of_a_trained_run_is_refused(trained_run):
    with pytest.raises(PerceptregError, match="its one latent is z"):
        invert(trained_run, layer="encoder.0", n=1, settings=QUICK)
