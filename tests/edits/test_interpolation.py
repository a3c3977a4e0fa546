"""`perceptreg interpolate` as one library call: its typed result is the file it writes."""

import json
import re

import pytest

from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.core.errors import PerceptregError
from perceptreg.edits.interpolation import Interpolation, interpolate
from perceptreg.edits.study import EditSettings
from perceptreg.runs import open_run
from perceptreg.storage.schema import sealed

# interpolation_metrics.json as main's `perceptreg interpolate` wrote it (f9ee0de), numbers shortened
CURVE = {"H(image)": [0.0, 1.0], "C(latent)": [0.0, 0.5], "3-NN pixels": [0.0, 0.5]}
INTERVAL = {reader: [[0.0, 0.66], [0.34, 1.0]] for reader in CURVE}
LOCALITY = {"inside": 0.1, "outside": 0.02, "outside_to_inside": 0.2}
WRITTEN_BY_MAIN = {
    "attack": {"eps": 0.2, "steps": 3, "norm": "linf", "alpha": None, "seed": 0, "loss": "ce", "restarts": 1,
               "schedule": "constant", "best_iterate": False},
    "runs": {"runs/demo": {"target": 8, "alphas": [0.0, 1.0], "images": 2, "directions": {
        "per-image": {"flip_curve": CURVE, "flip_interval": INTERVAL, "locality": LOCALITY},
        "mean": {"flip_curve": CURVE, "flip_interval": INTERVAL, "locality": LOCALITY,
                 "fitted_on": {"images": 5, "source": None}}}}}}


def test_a_file_written_by_main_loads_as_the_result_type(tmp_path):
    path = tmp_path / "interpolation_metrics.json"
    path.write_text(json.dumps(sealed(WRITTEN_BY_MAIN)))
    result = Interpolation.read(path)
    mean = result.runs["runs/demo"].directions.mean
    assert mean.flip_curve.H == [0.0, 1.0] and mean.flip_curve.judges == {"3-NN pixels": [0.0, 0.5]}
    assert mean.fitted_on.images == 5 and mean.locality.outside_to_inside == 0.2
    assert result.attack == AttackSettings(eps=0.2, steps=3) and result.saved_direction is None
    # written back under the same keys: the report and the claims read them
    assert result.model_dump(mode="json", exclude={"checksum", "saved_direction", "code_version"}) == WRITTEN_BY_MAIN
    assert result.lines() == ["demo: mean direction (targeted PGD eps 0.2), flip to 8 at a=1: H 100.0 % "
                              "[34.0, 100.0], 3-NN pixels 50.0 % [34.0, 100.0] (at a=0: 0.0 % [0.0, 66.0], "
                              "0.0 % [0.0, 66.0]; 2 images)"]


@pytest.mark.parametrize("damage, field", [
    (lambda d: d["runs"]["runs/demo"]["directions"]["mean"]["flip_curve"].pop("H(image)"), "H(image)"),
    (lambda d: d["runs"]["runs/demo"]["directions"].pop("per-image"), "per-image"),
    (lambda d: d["runs"]["runs/demo"]["directions"]["mean"].update(fitted_in={}), "fitted_in"),
    (lambda d: d["runs"]["runs/demo"].pop("images"), "images"),
    (lambda d: d["attack"].update(epsilon=0.3), "epsilon"),
    (lambda d: d.update(settings={}), "settings"),
])
def test_a_missing_or_unknown_key_is_refused_naming_the_file_and_the_field(tmp_path, damage, field):
    values = json.loads(json.dumps(WRITTEN_BY_MAIN))
    damage(values)
    path = tmp_path / "interpolation_metrics.json"
    path.write_text(json.dumps(sealed(values)))
    with pytest.raises(PerceptregError, match=rf"^{re.escape(str(path))}: field [^ ]*{re.escape(field)}"):
        Interpolation.read(path)


def test_interpolate_returns_what_it_writes(trained_run, tmp_path):
    run = open_run(trained_run)
    result = interpolate(run, EditSettings(target=8, alphas=(0.0, 1.0), images=2, fit_images=3),
                         AttackSettings(steps=2), out=tmp_path)
    read = Interpolation.read(tmp_path / "interpolation_metrics.json")
    assert read.code_version.startswith("perceptreg ")  # the code that wrote it (issue 37)
    assert result == read.model_copy(update={"checksum": None, "code_version": None})
    assert result.attack.eps == 0.2  # no eps: the radius of MNIST digits
    assert result.saved_direction == tmp_path / "direction-any-to-8.safetensors" and result.saved_direction.exists()
    edits = result.runs[str(trained_run)]
    assert edits.images == 2 and edits.directions.mean.fitted_on.images == 3 and edits.judge() == "3-NN pixels"
    assert "<th>a=1</th>" in result._repr_html_() and "3-NN pixels" in result._repr_html_()
