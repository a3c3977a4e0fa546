"""The example notebooks in examples/, executed as a reader would run them (nbclient, a real
kernel) at small settings: every figure shows inline as a PNG, every table as HTML, and
nothing warns."""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need the `notebooks` extra")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need the `notebooks` extra")

ROOT = Path(__file__).resolve().parents[1]
# Small settings for each notebook, in place of its cell tagged "parameters"; one thread: on
# a shared machine two threads run these tiny models several times slower than one.
ONE_THREAD = "import torch\ntorch.set_num_threads(1)\n"
SMALL = {"01_first_run.ipynb": ONE_THREAD + "EPOCHS = 1\nTRAIN_SIZE = 300\nATTACK_IMAGES = 40\nATTACK_STEPS = 5\n"
                                            "RUN_DIR = 'runs/first-run'\n",
         "02_attach_your_model.ipynb": ONE_THREAD + "EPOCHS = 1\nDECODER_EPOCHS = 1\nTRAIN_SIZE = 300\n"}
# After one epoch on 300 images the decoder has learned nothing yet, and `train` says so: the
# one warning these settings earn. Any other (tqdm's "IProgress not found") fails the test.
EXPECTED = "RuntimeWarning: the decoder has collapsed"
# The cells whose last expression is a figure or a table, by the start of their source
FIGURES = {"01_first_run.ipynb": ("figures.perception_grid", "figures.attack_grid"),
           "02_attach_your_model.ipynb": ("shown = ", "adversarial = PGD")}
TABLES = {"01_first_run.ipynb": ("attacked = ",), "02_attach_your_model.ipynb": ("evaluate_layers(",)}


def test_every_example_is_tested():
    assert sorted(p.name for p in (ROOT / "examples").glob("*.ipynb")) == sorted(SMALL)


def _executor():
    """examples/execute_notebooks.py, which commits the notebooks with their outputs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "examples" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_committed_outputs_are_of_the_committed_code(name):
    """The docs site shows the notebooks as committed: with every figure and table, made by
    the code beside them (the digest the executor recorded). Changed code without running
    `python examples/execute_notebooks.py` again fails here."""
    notebook = nbformat.read(ROOT / "examples" / name, as_version=4)
    executor = _executor()
    assert notebook.metadata[executor.KEY]["code_sha256"] == executor.code_digest(notebook), (
        f"{name}: its outputs are of other code; run `python examples/execute_notebooks.py {name}`")
    for start in FIGURES[name] + TABLES[name]:
        (cell,) = [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith(start)]
        (shown,) = [o for o in cell.outputs if o.output_type == "execute_result"]
        assert shown.data.get("image/png") or shown.data.get("text/html", "").startswith("<table>")
    assert not [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "stream" and o.name == "stderr"]  # no progress bars' text


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_example_notebook_runs_and_shows_its_results_inline(name, tmp_path, monkeypatch):
    notebook = nbformat.read(ROOT / "examples" / name, as_version=4)
    for cell in notebook.cells:  # committed with the outputs of its own settings: run afresh here
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1
    parameters[0].source = SMALL[name]
    # the kernel imports this checkout's perceptreg, and writes its run folders under tmp_path
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    def outputs(start):
        (cell,) = [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith(start)]
        return [o for o in cell.outputs if o.output_type == "execute_result"]

    for start in FIGURES[name]:
        (shown,) = outputs(start)
        assert shown.data["image/png"]  # base64 of the PNG
        assert len(shown.data["text/plain"]) < 100  # Grid(...), not the layout of every cell
    for start in TABLES[name]:
        (shown,) = outputs(start)
        assert shown.data["text/html"].startswith("<table>")
    streams = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"]
    warned = [o.text for o in streams if o.name == "stderr" and "Warning" in o.text and EXPECTED not in o.text]
    assert warned == []
