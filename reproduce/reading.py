"""The run files REPRODUCING.md reads: each one a results file perceptreg wrote, checked
against that file's schema and its checksum, then hashed (SHA-256) for the page's provenance.

    files = RunFiles(Path("reproduce/runs"))
    dataset = read_results(files, "sweep-4000/sweep.json", lambda summary: summary.config.dataset)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, TypeVar

from pydantic import BaseModel

from perceptreg import runs
from perceptreg.adversarial.robust_accuracy import RobustAccuracy
from perceptreg.adversarial.summary import AttackMetricsFile, NoiseMetricsFile
from perceptreg.attaching.results import LayerTable
from perceptreg.attacking.robust import ROBUST_ACCURACY
from perceptreg.core.errors import PerceptregError
from perceptreg.edits.interpolation import Interpolation as InterpolationMetricsFile
from perceptreg.figures.perception import PerceptionFile
from perceptreg.runs.files import LAYERS_JSON, PERCEPTION_JSON
from perceptreg.storage import fileio
from perceptreg.storage.schema import load_sealed_file
from perceptreg.sweeps.summary import SweepSummary
from reproduce.verdicts import Verdict

T = TypeVar("T")

# The results files the page reads, and the schema each is checked against.
RESULTS_SCHEMAS = {runs.ATTACK_METRICS: AttackMetricsFile, runs.NOISE_METRICS: NoiseMetricsFile,
                   runs.INTERPOLATION_METRICS: InterpolationMetricsFile, runs.SWEEP_JSON: SweepSummary,
                   ROBUST_ACCURACY: RobustAccuracy, PERCEPTION_JSON: PerceptionFile, LAYERS_JSON: LayerTable}


class RunFiles:
    """The run files under ``root`` that the page reads, each hashed (SHA-256) when read."""

    def __init__(self, root: Path):
        self.root, self.hashes = Path(root), {}
        self.versions: dict[str, str | None] = {}  # each file read: the code version that wrote it (None: older)

    def json(self, relative: str) -> BaseModel:
        """A results file as its type (``RESULTS_SCHEMAS``), through the guarded reader, checked
        against its schema and its checksum (``schema.load_sealed_file``), then hashed for the provenance."""
        path = self.root / relative
        if not path.exists():  # the table shows the command that makes it
            raise FileNotFoundError(path)
        schema = RESULTS_SCHEMAS[path.name]
        data = schema.model_validate(load_sealed_file(
            path, schema, "make it again: delete it and run the page with --run (its row names the command)"))
        self.hashes[relative] = hashlib.sha256(fileio.guarded(path).read_bytes()).hexdigest()
        self.versions.pop(relative, None)  # re-inserted last: the files a measure read are the last ones
        self.versions[relative] = getattr(data, "code_version", None)
        return data

    def code_of(self, read: list[str]) -> str:
        """The code versions that wrote the files ``read``, each once: "perceptreg 0.1.0, commit
        ..." (schema.sealed records it), or "not recorded" for files written before it was."""
        versions = dict.fromkeys(self.versions[name] or "not recorded" for name in read)
        return "; ".join(versions) or "-"


Measure = Callable[[RunFiles], tuple[str, Verdict]]  # a claim's measure: our number and its verdict


def read_results(files: RunFiles, relative: str, pick: Callable[[BaseModel], T]) -> T:
    """``pick`` applied to a results file; a file not in our format is named."""
    data = files.json(relative)
    try:
        return pick(data)
    except (KeyError, TypeError, IndexError, ValueError, StopIteration, AttributeError) as err:
        raise PerceptregError(f"{files.root / relative}: not in the format perceptreg writes ({type(err).__name__}: "
                              f"{err}); make it again with the command in the table") from None


def own_results(results: AttackMetricsFile | InterpolationMetricsFile, files: RunFiles, run: str):
    """The results of ``run`` in a file that holds those of several (the command's RUN and its
    --compare): keyed by each run's path as the command was given it, inside the root; by the
    folder's name when the root has been moved or copied since (absolute keys)."""
    for same in (lambda key: (files.root / key).resolve() == (files.root / run).resolve(),
                 lambda key: Path(key).name == Path(run).name):
        found = [value for key, value in results.runs.items() if same(key)]
        if len(found) == 1:
            return found[0]
    raise KeyError(f"no results of {run!r}")
