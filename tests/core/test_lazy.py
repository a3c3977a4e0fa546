"""Packages whose names are imported on first use: every name they list is found, in the
module that defines it, and an unknown name is Python's AttributeError."""

import importlib
import json
import sys
import types

import pytest

from perceptreg.core.lazy import lazy_exports


@pytest.mark.parametrize("package", ["perceptreg.runs", "perceptreg.data"])
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None
    assert set(module.__all__) <= set(dir(module))


def test_a_name_is_read_from_its_module_and_kept(monkeypatch):
    package = types.ModuleType("lazy_example")
    monkeypatch.setitem(sys.modules, "lazy_example", package)
    package.__getattr__, package.__dir__ = lazy_exports("lazy_example", {"json": ("dumps",)})
    assert package.dumps is json.dumps
    assert vars(package)["dumps"] is json.dumps  # kept: the next lookup does not come here
    assert "dumps" in dir(package)
    with pytest.raises(AttributeError, match="has no attribute 'loads'"):
        package.loads


def test_a_submodule_does_not_hide_the_name_it_shares():
    from perceptreg import data, runs
    for submodule in ("perceptreg.data.download", "perceptreg.runs.claim"):  # bound on the package by import
        importlib.import_module(submodule)
    assert callable(runs.claim) and runs.claim.__name__ == "claim"
    assert callable(data.download) and data.download.__module__ == "perceptreg.data.download"
