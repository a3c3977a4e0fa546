"""Packages whose names are imported on first use (core/lazy.py, their one mechanism): every
name they list is found, in the module that defines it, and an unknown name is Python's
AttributeError; no name is one of the package's own modules, which would replace it."""

import ast
import importlib
import json
import pkgutil
import sys
import types
from pathlib import Path

import pytest

from perceptreg.core.lazy import lazy_exports

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGES = ["perceptreg", "perceptreg.runs", "perceptreg.data"]


@pytest.mark.parametrize("package", PACKAGES)
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


def test_a_submodule_is_imported_when_first_asked_for(tmp_path, monkeypatch):
    (tmp_path / "lazy_package").mkdir()
    (tmp_path / "lazy_package" / "__init__.py").write_text("")
    (tmp_path / "lazy_package" / "part.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))  # what this test imports is forgotten after it
    package = importlib.import_module("lazy_package")
    package.__getattr__, package.__dir__ = lazy_exports("lazy_package", {}, submodules=("part",))
    assert "part" in dir(package) and "lazy_package.part" not in sys.modules
    assert package.part is sys.modules["lazy_package.part"] and package.part.X == 1


def test_the_top_level_package_exports_its_packages():
    import perceptreg

    assert perceptreg.figures is importlib.import_module("perceptreg.figures")
    assert perceptreg.train.__module__ == "perceptreg.training.train"


def exported(package: str) -> set[str]:
    """The names a package's lazy_exports call lists, read from its source (not its modules)."""
    tree = ast.parse((SRC / package.replace(".", "/") / "__init__.py").read_text())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "lazy_exports")
    return {element.value for names in call.args[1].values for element in names.elts}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_exported_name_is_a_module_of_its_package(package):
    # importing perceptreg.runs.claim once bound the module on runs in place of the function runs.claim
    names = exported(package)
    modules = {info.name for info in pkgutil.iter_modules([str(SRC / package.replace(".", "/"))])}
    assert names and not names & modules
