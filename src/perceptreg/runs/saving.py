"""A model made in Python, saved as a run folder that every command, the report and the
explorer open (``save_run``).

    seen = perceptreg.attach(net, ["layer2", "layer4"], (3, 32, 32))
    history = perceptreg.fit_decoders(seen, train_loader, epochs=5)
    run = perceptreg.save_run(seen, "runs/mine", dataset="cifar10", history=history)

A run is rebuilt from code, so the folder names the function (or class) that builds the
network and keeps a copy of its file (``runs.sources``); the weights are the run's own.
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from perceptreg.core.attached import AttachedModel
from perceptreg.core.config import AttachConfig, TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet
from perceptreg.data.registry import lookup
from perceptreg.runs import checkpoint, files, sources, user_models
from perceptreg.runs.kinds import KINDS, kind_of
from perceptreg.runs.outputs import check_writable
from perceptreg.runs.run import AttachedRun, TrainedRun, open_run
from perceptreg.runs.writing import prepare_attached, save_attached
from perceptreg.storage import fileio


def save_run(what, run_dir: str | Path | None = None, *, source: str | None = None,
             model_kwargs: dict[str, Any] | None = None, dataset: str | None = None,
             data_root: str | None = None, classes: tuple[str, ...] | None = None,
             history: list[dict] | None = None) -> AttachedRun | TrainedRun:
    """Save ``what`` as a run folder and return it opened (``open_run``).

    Args:
        what: an attached model (``attach``, fitted with ``fit_decoders`` or ``fine_tune``), or
            what ``train(config, run_dir, model=net)`` returned (its folder gains what
            rebuilds ``net``; ``run_dir`` None: in place).
        run_dir: the run folder to write (an attached model: a new folder, or one of an
            attach run that never finished).
        source: ``FILE.py:FUNCTION`` or ``package.module:FUNCTION`` that builds the untrained
            network (called with ``model_kwargs``); the run keeps a copy of the file. None:
            the network's class, if its file defines it and it takes no arguments.
        dataset: attached models only: the dataset, by name as ``--dataset`` takes it
            (``mnist``, ``cifar10``, ``images:PATH``, ...), whose test images `perceive`, the
            report and the explorer show; ``data_root`` as ``--data-root``.
        classes: class names, shallow to deep as the logits (default "0".."K-1").
        history: the rows ``fit_decoders`` returned, written as the run's metrics.jsonl.
    """
    kwargs = tuple((model_kwargs or {}).items())
    if isinstance(what, AttachedModel):
        return _save_attached(what, _new_folder(run_dir), source, kwargs, dataset, data_root, classes, history)
    if isinstance(getattr(what, "model", None), PerceptionNet) and hasattr(what, "run_dir"):
        return _save_trained(what, run_dir, source, kwargs)
    raise PerceptregError(f"save_run takes an attached model (perceptreg.attach) or what perceptreg.train returned, "
                          f"got a {type(what).__name__}")


def _new_folder(run_dir) -> Path:
    if run_dir is None:
        raise PerceptregError("`run_dir`: name the folder to save the attached model in, e.g. 'runs/mine'")
    return Path(run_dir)


def _save_attached(seen: AttachedModel, run_dir: Path, source, kwargs, dataset, data_root, classes,
                   history) -> AttachedRun:
    if seen.given_decoders:
        raise PerceptregError(f"`decoders` given to attach for {', '.join(sorted(seen.given_decoders))} cannot be "
                              f"rebuilt by a run; attach without them (or with decoder_params) to save a run")
    if dataset is None:
        raise PerceptregError("`dataset`: name the images `perceive`, the report and the explorer show, as "
                              "--dataset takes them (e.g. 'mnist', 'cifar10', 'images:PATH')")
    lookup(dataset)  # a name the run can load again
    spec = _checked_source(seen.model, source, kwargs, user_models.build)
    normalize = None if seen.mean is None else (tuple(seen.mean.flatten().tolist()), tuple(seen.std.flatten().tolist()))
    config = AttachConfig(model=spec, model_kwargs=kwargs, layers=tuple(seen.layers),
                          normalize=normalize, dataset=dataset, data_root=data_root, epochs=max(len(history or ()), 1),
                          seed=seen.seed, decoder_params=seen.decoder_params,
                          eval_size=None)  # the user scored the model on data of their own choosing, not a sample of ours
    classes = tuple(classes or (str(k) for k in range(seen.num_classes)))
    if len(classes) != seen.num_classes:
        raise PerceptregError(f"`classes`: {len(classes)} names for a model of {seen.num_classes} classes")
    check_writable(run_dir, "attached")
    with checkpoint.writer_lock(run_dir):
        config = prepare_attached(run_dir, config)  # config.json with the copy of the source
        for row in history or ():
            files.append_metrics(run_dir, row)
        save_attached(run_dir, seen, config, classes)  # model.json last: the run is complete
    return open_run(run_dir)


def _save_trained(result, run_dir, source, kwargs) -> TrainedRun:
    if kwargs:
        raise PerceptregError("`model_kwargs`: a trained run rebuilds its network by calling `source` without "
                              "arguments; name a function that takes none")
    origin = Path(result.run_dir)
    run_dir = origin if run_dir is None else Path(run_dir)
    spec = _checked_source(result.model, source, (), user_models.build_perception_net)
    if run_dir.resolve() != origin.resolve():
        check_writable(run_dir, "trained")  # not over a folder of other files, nor the system's
        if kind_of(run_dir) is not None:
            raise PerceptregError(f"{run_dir} holds {KINDS[kind_of(run_dir)]}; choose another folder (or None: "
                                  f"save the run in place, {origin})")
        shutil.copytree(origin, run_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock"))
    with checkpoint.writer_lock(run_dir):
        config = files.read_config(run_dir)
        if not isinstance(config, TrainConfig):
            raise PerceptregError(f"{run_dir} is not a run of `train`")
        config = sources.with_source(dataclasses.replace(config, arch="custom", model=spec), run_dir)
        fileio.write_json(run_dir / files.CONFIG, config.to_dict())
    return open_run(run_dir)


def _checked_source(net: nn.Module, source: str | None, kwargs, build) -> str:
    """``source``, or the spec of ``net``'s class; checked by building it: its weights must
    have ``net``'s names and shapes, or the run would not open."""
    spec = source or _class_spec(net)
    built = build(spec, kwargs)
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    if want != got:
        first = next(k for k in sorted(want.keys() | got.keys()) if want.get(k) != got.get(k))
        raise PerceptregError(f"`source` {spec!r} builds a network that differs from this one at {first!r} "
                              f"({got.get(first, 'missing')} there, {want.get(first, 'missing')} here); name the "
                              f"function that builds this network (with `model_kwargs`)")
    return spec


def _class_spec(net: nn.Module) -> str:
    cls = type(net)
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:
        path = None
    if path is None or not path.endswith(".py") or cls.__module__.startswith("perceptreg.") or "<" in cls.__qualname__:
        raise PerceptregError(f"`source`: the {cls.__name__} given was not defined in a file of yours (a notebook "
                              f"cell, or perceptreg's own class); pass source='FILE.py:FUNCTION' naming a function "
                              f"that builds the untrained network")
    return f"{Path(path).resolve()}:{cls.__qualname__}"
