"""The CLI starts fast: --help of the group and of every command imports no heavy module
(torch above all: 4 s of the old 4 s startup), and bare `perceptreg` prints the help."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from perceptreg.cli import main

HEAVY = ("torch", "numpy", "pydantic", "PIL", "matplotlib", "safetensors", "tqdm", "scipy", "sklearn")

# In a fresh interpreter: each help in turn, and the heavy modules loaded after it.
SCRIPT = """
import json, sys
from click.testing import CliRunner
from perceptreg.cli import main
loaded = {}
for args in [["--help"]] + [[name, "--help"] for name in sorted(main.commands)] + [[]]:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "Usage:" in result.output, (args, result.output)
    loaded[" ".join(args)] = [m for m in %r if m in sys.modules]
print(json.dumps(loaded))
"""


@pytest.mark.slow
def test_help_of_the_group_and_of_every_command_imports_no_heavy_module():
    done = subprocess.run([sys.executable, "-c", SCRIPT % (HEAVY,)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert len(loaded) == len(main.commands) + 2
    assert loaded == {args: [] for args in loaded}


def test_bare_perceptreg_prints_the_help_and_succeeds():
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 0
    assert result.output.startswith("Usage:") and "Commands:" in result.output
    assert "Error" not in result.output
