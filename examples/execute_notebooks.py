"""Run the example notebooks at their own settings and commit them with their outputs, so the
docs site shows the figures and tables a reader gets (mkdocs-jupyter renders them as
committed). Each notebook records the SHA-256 of its code, so tests/test_examples.py finds
outputs that are no longer the code's. Progress bars (stderr) are left out: their text is
the run's, not the reader's.

    python examples/execute_notebooks.py            # every notebook; minutes on 2 quiet cores
    python examples/execute_notebooks.py 02_attach_your_model.ipynb
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent
KEY = "perceptreg"  # the notebook metadata this script writes: {"code_sha256": ...}


def code_digest(notebook) -> str:
    """The SHA-256 of the notebook's code cells, in order: what its outputs are of."""
    code = "\n\0\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    return hashlib.sha256(code.encode()).hexdigest()


def execute(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as folder:  # its run folders go there, not into examples/
        nbclient.NotebookClient(notebook, timeout=1800, kernel_name="python3",
                                resources={"metadata": {"path": folder}}).execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    notebook.metadata[KEY] = {"code_sha256": code_digest(notebook)}
    nbformat.write(notebook, path)


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(p.name for p in HERE.glob("*.ipynb")):
        execute(HERE / name)
        print(f"executed {name}")
