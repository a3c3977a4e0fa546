"""Results and run files are read through their schema: main's files (f9ee0de, in
tests/fixtures) still load; a key the schema does not know, or one it needs and misses,
is one error naming the file."""

import json
import shutil
from pathlib import Path

import pytest

from perceptreg import runs
from perceptreg.attaching.results import LayerTable
from perceptreg.core.errors import PerceptregError
from perceptreg.runs import manifest
from perceptreg.storage.fileio import CheckpointError
from perceptreg.storage.schema import load_sealed_file
from perceptreg.sweeps.summary import read_sweep
from perceptreg.sweeps.sweep import PixelProbesFile

MAIN = Path(__file__).parents[1] / "fixtures" / "main-f9ee0de"


def read(name: str, folder: Path):
    """The file ``name`` of ``folder`` through the reader its commands use."""
    path = folder / name
    return {"layers.json": lambda: load_sealed_file(path, LayerTable, "attach again"),
            "sweep.json": lambda: read_sweep(folder).model_dump(),
            "pixel_probes.json": lambda: load_sealed_file(path, PixelProbesFile, "sweep again"),
            "state.json": lambda: manifest.read_state(folder),
            "config.json": lambda: runs.read_config(folder)}[name]()


def copied(tmp_path: Path, name: str, change=None) -> Path:
    shutil.copy(MAIN / name, tmp_path / name)
    if change:
        values = json.loads((tmp_path / name).read_text())
        change(values)
        (tmp_path / name).write_text(json.dumps(values))
    return tmp_path


FILES = ["layers.json", "sweep.json", "pixel_probes.json", "state.json", "config.json"]
# a key each file cannot do without
NEEDED = {"layers.json": "accuracy", "sweep.json": "per_seed", "pixel_probes.json": "fitted_on",
          "state.json": "epoch", "config.json": "lam"}


@pytest.mark.parametrize("name", FILES)
def test_the_files_main_wrote_still_load(name, tmp_path):
    values = read(name, copied(tmp_path, name))
    assert NEEDED[name] in values if isinstance(values, dict) else values.lam == 1e-2


@pytest.mark.parametrize("name", FILES)
def test_an_unknown_key_is_refused_naming_the_file(name, tmp_path):
    folder = copied(tmp_path, name, lambda values: values.update(acuracy=0.5))
    with pytest.raises(PerceptregError, match=rf"{name}.*acuracy"):
        read(name, folder)


@pytest.mark.parametrize("name", FILES)
def test_a_missing_key_is_refused_naming_the_file(name, tmp_path):
    folder = copied(tmp_path, name, lambda values: values.pop(NEEDED[name]))
    with pytest.raises(PerceptregError, match=rf"{name}.*{NEEDED[name]}"):
        read(name, folder)


def test_an_unknown_key_in_a_layer_row_is_refused(tmp_path):
    folder = copied(tmp_path, "layers.json", lambda values: values["layers"][0].update(detector_auc=0.5))
    with pytest.raises(CheckpointError, match=r"layers.json: field layers.0.detector_auc"):
        read("layers.json", folder)
