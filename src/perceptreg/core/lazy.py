"""A package's public names, imported on first use (PEP 562), so importing the package (and
the CLI's --help, which reads file names and dataset names) does not import torch."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Callable


class _LazyPackage(types.ModuleType):
    """A package whose exported names win over its submodules of the same name: `runs.claim`
    stays the function when the module `perceptreg.runs.claim` is imported, as it was when the
    package imported its names eagerly (the import system binds a submodule on its parent)."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}" \
                and name in self._lazy_names:
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, modules: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name in ``modules[module]`` is read
    from that module the first time it is asked for, then kept on the package.

        __getattr__, __dir__ = lazy_exports(__name__, {"perceptreg.runs.files": ("CONFIG", "read_config")})
    """
    home = {name: module for module, names in modules.items() for name in names}
    namespace = sys.modules[package]
    namespace._lazy_names = frozenset(home)
    namespace.__class__ = _LazyPackage

    def __getattr__(name: str):
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home[name]), name)
        setattr(namespace, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(home) | set(vars(namespace)))
    return __getattr__, __dir__
