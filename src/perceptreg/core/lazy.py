"""The one way a package imports its public names on first use (PEP 562), so importing the
package (and the CLI's --help, which reads file names and dataset names) does not import torch.

A name is never one of the package's own modules: importing that module binds it on the
package under the same name, in place of the exported one (tests/core/test_lazy.py checks it).
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, modules: dict[str, tuple[str, ...]],
                 submodules: tuple[str, ...] = ()) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name in ``modules[module]`` is read
    from that module the first time it is asked for, each name in ``submodules`` is the
    package's module of that name, imported then; either is then kept on the package.

        __getattr__, __dir__ = lazy_exports(__name__, {"perceptreg.runs.files": ("CONFIG", "read_config")})
    """
    home = {name: module for module, names in modules.items() for name in names}
    home |= {name: f"{package}.{name}" for name in submodules}
    namespace = sys.modules[package]

    def __getattr__(name: str):
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(home[name])
        value = module if name in submodules else getattr(module, name)
        setattr(namespace, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(home) | set(vars(namespace)))
    return __getattr__, __dir__
