"""Models from the user's own code and files.

    model = build("nets/mine.py:build")                         # a function in a file
    model = build("mylib.models:resnet18", (("num_classes", 10),))  # an importable function, with keyword arguments
    weights = read_weights("mine.pt")                            # a state dict: .safetensors, or .pt/.pth
    load_weights(model, weights, "mine.pt")                      # strictly: storage.fileio.load_weights

A spec names a function that returns an ``nn.Module``: ``FILE.py:FUNCTION`` or
``package.module:FUNCTION``. Loading runs that code: name only code you wrote or trust, as
with any import. Weights are tensors only: safetensors, or a PyTorch file read with
``torch.load(weights_only=True)`` (never full unpickling). A run folder keeps a copy of
the function's file (``runs.sources``), so it opens from any folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import zlib
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet
from perceptreg.storage import fileio

Kwargs = tuple[tuple[str, Any], ...]  # keyword arguments, as a frozen config holds them


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` names a file (FILE.py:FUNCTION) rather than an importable module."""
    return spec.rpartition(":")[0].endswith(".py")


def _split(spec: str) -> tuple[str, str]:
    where, colon, name = spec.rpartition(":")
    if not colon or not where or not name.isidentifier():
        raise PerceptregError(f"`model` {spec!r}: give FILE.py:FUNCTION or package.module:FUNCTION, e.g. "
                              f"nets/mine.py:build")
    return where, name


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """The function ``spec`` names, from a file (run as a module of its own) or by import."""
    where, name = _split(spec)
    module = _file_module(spec, Path(where).expanduser()) if is_file_spec(spec) else _imported(spec, where)
    factory = getattr(module, name, None)
    if not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise PerceptregError(f"`model` {spec!r}: {where} has no function {name!r}; it has "
                              f"{', '.join(found[:10]) or 'none'}")
    return factory


def _file_module(spec: str, path: Path):
    if not path.is_file():
        raise PerceptregError(f"`model` {spec!r}: {path} is not a Python file")
    loader = importlib.util.spec_from_file_location(f"perceptreg_user_{zlib.crc32(str(path.resolve()).encode()):08x}", path)
    module = importlib.util.module_from_spec(loader)
    _run_user_code(spec, f"running {path}", lambda: loader.loader.exec_module(module))
    return module


def _imported(spec: str, module_name: str):
    try:
        return _run_user_code(spec, f"importing {module_name}", lambda: importlib.import_module(module_name))
    except PerceptregError as err:
        if isinstance(err.__cause__, ModuleNotFoundError):
            raise PerceptregError(f"`model` {spec!r}: no module named {err.__cause__.name!r} is installed; install "
                                  f"it, or name a file (FILE.py:FUNCTION)") from err.__cause__
        raise


def _run_user_code(spec: str, what: str, call: Callable):
    """``call()``, with whatever the user's code raises (sys.exit and KeyboardInterrupt too:
    code that ends the program is no Ctrl-C of the user's) said as one error naming it."""
    try:
        return call()
    except PerceptregError:
        raise
    except (Exception, SystemExit, KeyboardInterrupt) as err:
        raise PerceptregError(f"`model` {spec!r}: {what} failed ({type(err).__name__}: {err})") from err


def build(spec: str, kwargs: Kwargs = ()) -> nn.Module:
    """Call the function of ``spec`` with ``kwargs``; it must return an ``nn.Module``."""
    factory = load_factory(spec)
    model = _run_user_code(spec, "the function", lambda: factory(**dict(kwargs)))
    if not isinstance(model, nn.Module):
        raise PerceptregError(f"`model` {spec!r}: the function returned a {type(model).__name__}, not an nn.Module")
    return model


def build_perception_net(spec: str, kwargs: Kwargs = ()) -> PerceptionNet:
    """A ``PerceptionNet`` of the user's own F, C, D, from their function (for `train --model`)."""
    model = build(spec, kwargs)
    if not isinstance(model, PerceptionNet):
        raise PerceptregError(f"`model` {spec!r}: the function returned a {type(model).__name__}; for training it "
                              f"must return a PerceptionNet(encoder, classifier, decoder, input_shape)")
    return model


def parse_kwargs(text: str | None) -> Kwargs:
    """``"depth=50,width=1.5,norm=batch,pretrained=false"`` -> keyword arguments; values are
    JSON numbers, true/false/null, or else strings."""
    pairs = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip().isidentifier():
            raise PerceptregError(f"`model_kwargs` {text!r}: give NAME=VALUE pairs, comma-separated, e.g. "
                                  f"num_classes=10,width=2")
        try:  # bounded: a 5000-digit number or 100,000 "[" is a string, not a crash
            parsed = fileio.parse_json(value.strip(), "`model_kwargs`")
        except PerceptregError:
            parsed = value.strip()
        pairs.append((key.strip(), parsed))
    return tuple(pairs)


# --- weights -------------------------------------------------------------------------------------

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")  # where training scripts keep one


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a PyTorch file (a state dict, or a checkpoint
    dict holding one under a usual key); keys saved through DataParallel lose "module."."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return fileio.load_tensors(path)
    fileio.guarded(path)  # a FIFO would block torch.load, a folder or device give no state dict
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickled objects: a whole model, an optimizer class
        raise PerceptregError(
            f"`weights` {path}: not a state dict of tensors ({type(err).__name__}); if it holds a whole pickled "
            f"model, save its weights instead: torch.save(model.state_dict(), '{path}')") from err
    if isinstance(loaded, dict):
        loaded = next((loaded[k] for k in STATE_DICT_KEYS if isinstance(loaded.get(k), dict)), loaded)
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise PerceptregError(f"`weights` {path}: expected a state dict (names -> tensors), or a dict holding one "
                              f"under {', '.join(STATE_DICT_KEYS)}; save one with torch.save(model.state_dict(), PATH)")
    if all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return loaded
