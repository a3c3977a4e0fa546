"""The run folder's file names, and the two files every run has: config.json (the resolved
config) and metrics.jsonl (one line per epoch). This module is the one place that knows
the names; ``manifest`` reads the checkpoint's, ``writing`` writes them, ``run`` opens a run.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from perceptreg.core.config import AttachConfig, TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.data.registry import lookup

# The readers import storage.fileio (torch) when called: the names stay light for the CLI's --help.

# --- file names ---------------------------------------------------------------------------------
CONFIG = "config.json"
METRICS = "metrics.jsonl"
MODEL = "model.safetensors"
MODEL_META = "model.json"
STATE = "state.safetensors"
STATE_META = "state.json"
MODEL_FORMAT = "perceptreg.model/1"
ATTACHED_FORMAT = "perceptreg.attached/1"  # a user's model with decoders on its layers
# what the commands write into a run folder
PERCEPTION = "perception.png"
PERCEPTION_SPREAD = "perception_spread.png"  # `perceive`: x, P(x) and the spread of D(F(x) + e) per pixel
REPORT = "report.html"
ATTACK = "attack.png"
ATTACK_FROM_NOISE = "attack_from_noise.png"
ATTACK_METRICS = "attack_metrics.json"
NOISE_METRICS = "noise_metrics.json"  # attack --from-noise: how often noise reached its target
ATTACK_ROC = "attack_roc.png"
ATTACK_CONVERGENCE = "attack_convergence_{}.png"  # evaluate-attack --curve-eps / --curve-steps: eps, steps
INTERPOLATION_METRICS = "interpolation_metrics.json"
INTERPOLATION_FLIP = "interpolation_flip.png"
INTERPOLATION_CHANGE = "interpolation_change.png"
INTERPOLATION_GRID = "interpolation_{kind}.png"  # kind: per-image, mean
LAYERS_JSON = "layers.json"  # an attach run's measures per layer
LAYERS_PNG = "layers.png"  # x, then P at each layer
LAYERS_ATTACK_PNG = "layers_attack.png"  # x, x_adv, then P_layer(x_adv) at each layer
PERCEPTION_JSON = "perception.json"  # `perceive`: the measures of P(x) (measures.consistency.PerceptionMeasures)
INVERSION_PNG = "inversion.png"  # `invert`: x, P(x) and the inversion x' per test image
INVERSION_JSON = "inversion.json"  # what `invert` measured (figures.inversion.InversionFile)
# a sweep folder
SWEEP_CONFIG = "sweep_config.json"
SWEEP_JSON = "sweep.json"
PIXEL_PROBES = "pixel_probes.json"  # the raw-pixel reference probes, fitted once per data
SWEEP_MD = "sweep.md"
SWEEP_PERCEPTION = "sweep_perception.png"
SWEEP_ATTENTION = "sweep_attention.png"
SWEEP_PROBES = "sweep_probes.png"


def for_layer(name: str, layer: str | None) -> str:
    """A file of one layer of an attach run: ``for_layer("perception.png", "fc1")`` is
    perception_fc1.png; no layer: ``name`` itself."""
    if layer is None:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}_{layer.replace('/', '_')}{dot}{suffix}"


def read_config(run_dir: str | Path) -> TrainConfig | AttachConfig:
    """The run's config: a TrainConfig, or an AttachConfig for a run of `attach`."""
    from perceptreg.storage.fileio import read_json

    path = Path(run_dir) / CONFIG
    values = read_json(path)
    kind = AttachConfig if isinstance(values, dict) and "layers" in values else TrainConfig
    config = kind.from_dict(values, str(path))
    try:  # a name no dataset has: said here, naming the file, not later by the loader
        lookup(config.dataset)
    except PerceptregError as err:
        raise PerceptregError(f"{path}: setting dataset: {err}; correct it, or train the run again") from None
    return config


def append_metrics(run_dir: Path, row: dict) -> None:
    """One epoch's row at the end of metrics.jsonl. The file is sealed by the commit that
    follows: state.json (a run of `train`) or model.json (a run of `attach`) records
    ``metrics_digest`` of its rows, checked by ``manifest.committed_metrics``."""
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(row) + "\n")


def metrics_digest(rows: list[dict]) -> str:
    """The SHA-256 of metrics rows, as canonical JSON: the same rows give the same digest
    however the file spaced them. One digest in the commit file, not a checksum per line:
    it also says when whole lines, or the whole file, went missing."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of metrics.jsonl, one per epoch. A last line cut short (a kill while it was
    appended) is dropped with a warning; any other bad line is an error naming it."""
    from perceptreg.runs.metrics_rows import check_row
    from perceptreg.storage.fileio import BadJSONError, CheckpointError, parse_json, read_text

    path = Path(run_dir) / METRICS
    lines = read_text(path).split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:  # no NaN or Infinity: a run that reached one stopped with an error, the file is damaged
            row = parse_json(line, path, constants=False)
            check_row(row)
        except BadJSONError as err:
            if number == len(lines):  # no newline after it: the append was cut short
                warnings.warn(f"{path}: line {number} was cut short (the run was killed while writing it); "
                              f"it is left out", RuntimeWarning, stacklevel=2)
                break
            raise CheckpointError(f"{path}: line {number} is not a metrics row ({err.reason}); "
                                  f"the file is damaged") from None
        rows.append(row)
    return rows
