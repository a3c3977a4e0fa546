"""What lets `evaluate-attack` resume: each attacked run's evaluation is kept in
RUN/.evaluate-attack/ as soon as it is measured (its tensors as safetensors, the rest as
JSON), under a key of everything it depends on. The search and its convergence curve take
an hour on a CPU per run, so a kill while the second run (--compare) is attacked loses that
run's work alone: the same command again reads the first instead of attacking it again. The
folder goes once attack_metrics.json is written; an attach run has one per layer, and each
has one writer at a time (its lock, held by evaluate_attack).

    key = evaluation_key(run.path / runs.MODEL_META, settings=..., images=...)
    evaluation = kept(folder(run.path / runs.ATTACK_METRICS), 0, key) or evaluate_run(...)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from perceptreg import runs
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.evaluation import AttackEvaluation
from perceptreg.adversarial.summary import AttackSummary
from perceptreg.core.errors import PerceptregError
from perceptreg.runs import Run
from perceptreg.storage import fileio
from perceptreg.storage.schema import load_model_file

FOLDER = ".evaluate-attack"  # in the attacked run's folder, beside attack_metrics.json
FORMAT = "perceptreg.kept-evaluation/1"
TENSORS = ("images", "adversarial", "perceptions", "adversarial_perceptions", "labels", "targets",
           "clean_predictions", "clean_confidence", "adversarial_predictions", "adversarial_confidence", "success",
           "held_out_scores")


class KeptEvaluation(BaseModel):
    """The JSON half of a kept evaluation; the tensors are in the safetensors file beside it."""
    format: Literal[FORMAT]
    key: str
    summary: AttackSummary
    settings: dict
    judges: list[tuple[str, list[str]]]  # each judge's name and the kinds of its readings, in order


def folder(results: Path) -> Path:
    """Where the evaluations of the results file ``results`` (RUN/attack_metrics.json, or an
    attach run's attack_metrics_LAYER.json) are kept until it is written: one folder per
    results file, so that evaluations of two layers, which may run side by side, never meet."""
    return results.with_name(FOLDER + results.stem.removeprefix(Path(runs.ATTACK_METRICS).stem))


def evaluation_key(model_file: Path, **inputs) -> str:
    """SHA-256 of what an evaluation depends on: the attacked run's model (``model_file``, its
    model.json, which changes with every checkpoint) and ``inputs`` (settings, images, judges,
    strength, ...; judge runs by their model.json too)."""
    def model_of(file: Path) -> str:
        return hashlib.sha256(fileio.guarded(file).read_bytes()).hexdigest()

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Run):
            return model_of(value.path / runs.MODEL_META)
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)
        return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)

    values = {"model": model_of(model_file), **{name: plain(value) for name, value in inputs.items()}}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=repr).encode()).hexdigest()


def keep(evaluation: AttackEvaluation, folder: Path, index: int, key: str) -> None:
    """Write ``evaluation`` as the ``index``-th run's, tensors first: the JSON, written last,
    is what makes it count (a kill between the two leaves nothing that is read)."""
    folder.mkdir(exist_ok=True)
    (folder / f"{index}.json").unlink(missing_ok=True)  # an older record must not vouch for the new tensors
    tensors = {name: getattr(evaluation, name) for name in TENSORS if getattr(evaluation, name) is not None}
    judges = list(evaluation.judge_readings.items())
    tensors |= {f"judge{i}.{kind}": reading for i, (_, readings) in enumerate(judges) for kind, reading in readings.items()}
    fileio.save_tensors(folder / f"{index}.safetensors", tensors)
    record = KeptEvaluation(format=FORMAT, key=key, summary=evaluation.summary,
                            settings=dataclasses.asdict(evaluation.settings),
                            judges=[(name, list(readings)) for name, readings in judges])
    fileio.write_json(folder / f"{index}.json", record.model_dump(mode="json"))


def kept(folder: Path, index: int, key: str) -> AttackEvaluation | None:
    """The ``index``-th run's evaluation kept under ``key``; None where there is none, or it was
    measured with other inputs, or it is damaged (said in one warning: it is measured again)."""
    record_path, tensors_path = folder / f"{index}.json", folder / f"{index}.safetensors"
    if not record_path.exists():
        return None
    try:
        record = KeptEvaluation(**load_model_file(record_path, KeptEvaluation, "it is measured again"))
        if record.key != key:
            return None
        tensors = fileio.load_tensors(tensors_path)
        judge_readings = {name: {kind: tensors.pop(f"judge{i}.{kind}") for kind in kinds}
                          for i, (name, kinds) in enumerate(record.judges)}
        return AttackEvaluation(**{name: tensors.get(name) for name in TENSORS}, judge_readings=judge_readings,
                                summary=record.summary, settings=AttackSettings(**record.settings))
    except (PerceptregError, KeyError, TypeError) as err:
        warnings.warn(f"{record_path}: cannot be read ({err}); the attack runs again", RuntimeWarning, stacklevel=2)
        return None


def discard(folder: Path) -> None:
    """Remove the kept evaluations: the results they were kept for are written."""
    shutil.rmtree(folder, ignore_errors=True)
