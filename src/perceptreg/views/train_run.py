"""`perceptreg train` and `perceptreg demo` as one call each: resolve the settings
(``training.launch``), train, draw the perception grid (and, for the demo, write the report).

    result = train_run({"lam": 1e-2, "epochs": 5}, "runs/mine")
    result.test_accuracy, result.perception_grid

They live here, above ``figures`` and the report, because they draw; the training itself
is ``training.train``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perceptreg import runs
from perceptreg.adversarial import judges
from perceptreg.core.config import TrainConfig
from perceptreg.display import counted, html_lines
from perceptreg.figures import perception_grid, save_png
from perceptreg.training.launch import fresh_run_dir, launch
from perceptreg.training.train import train, train_to_end
from perceptreg.views.report import Report, write_report


@dataclass(frozen=True)
class TrainRunResult:
    run_dir: Path
    test_accuracy: float  # of the last epoch, on its evaluation sample (``eval_size``)
    test_recon_mse: float | None  # per pixel; None where the decoder has not trained yet
    epochs: int  # trained in all, resumed ones included
    seconds: float  # of this call
    perception_grid: Path | None  # None on the processes of torchrun other than rank 0

    def lines(self) -> list[str]:
        """What `perceptreg train` prints."""
        mse = "-" if self.test_recon_mse is None else f"{self.test_recon_mse:.4f}"
        return [f"test accuracy {self.test_accuracy:.2%}, test reconstruction MSE per pixel {mse} "
                f"({counted(self.epochs, 'epoch')}, {self.seconds:.1f}s)",
                f"run folder: {self.run_dir}", f"perception grid: {self.perception_grid}"]

    def _repr_html_(self) -> str:
        return html_lines(self.lines())


def is_main_process() -> bool:
    """Rank 0 under torchrun (and any process outside it): the one that reports for all."""
    return int(os.environ.get("RANK", "0")) == 0


def train_run(options: dict[str, Any], out: str | Path | None = None, *, resume: bool = False,
              progress: bool = True) -> TrainRunResult:
    """Train a run as `perceptreg train` does: ``options`` are TrainConfig's fields (those
    left out, or None, take the dataset's defaults; ``training.launch`` has the rules of
    ``out``, ``resume`` and ``classifier_from``). Writes the run folder and its perception
    grid (perception.png) of two test images per class."""
    began = time.perf_counter()
    config, out, resume = launch(options, out, resume)
    # the dataset's standing judge reads this run's P(x) later (report, sweep): never its comparator
    model, history, run_dir = train(config, out, resume=resume, progress=progress,
                                    judges=(judges.standing_judge_dir(config.dataset),))
    grid = None
    if is_main_process():  # under torchrun, rank 0 draws for all
        test = runs.open_run(run_dir).data()[1]
        grid = save_png(perception_grid(model, test, n=2 * model.num_classes, device=config.device),
                        run_dir / runs.PERCEPTION)
    last = history[-1]
    return TrainRunResult(run_dir, last["test_accuracy"], last["test_recon_mse"], len(history),
                          time.perf_counter() - began, grid)


@dataclass(frozen=True)
class DemoResult:
    training: TrainRunResult
    report: Report

    def lines(self) -> list[str]:
        """What `perceptreg demo` prints."""
        return [*self.training.lines(), f"report: {self.report.path}"]

    def _repr_html_(self) -> str:
        return html_lines(self.lines())


def demo(out: str | Path = "runs/demo", epochs: int = TrainConfig.epochs, device: str = "cpu",
         progress: bool = True) -> DemoResult:
    """Train the paper's MNIST network (z = 32, lambda = 1e-2) on the embedded 5000 digits into
    ``out`` (a numbered sibling if it holds a run), draw its perception grid, write its report."""
    options = {"dataset": "mnist5k", "arch": "mnist", "lam": 1e-2, "epochs": epochs, "device": device}
    trained = train_run(options, fresh_run_dir(out), progress=progress)
    return DemoResult(trained, write_report(trained.run_dir))


@dataclass(frozen=True)
class JudgeResult:
    run_dir: Path
    test_accuracy: float  # of its last epoch
    epochs: int  # trained in all
    seconds: float  # of this call
    already_trained: bool  # nothing was trained: the judge in ``run_dir`` had finished

    def lines(self) -> list[str]:
        """What `perceptreg train-judge` prints."""
        if self.already_trained:
            return [f"the judge in {self.run_dir} is already trained ({counted(self.epochs, 'epoch')}, test accuracy "
                    f"{self.test_accuracy:.2%})"]
        return [f"judge test accuracy {self.test_accuracy:.2%} ({counted(self.epochs, 'epoch')}, {self.seconds:.0f}s): "
                f"{self.run_dir}"]

    def _repr_html_(self) -> str:
        return html_lines(self.lines())


def train_judge(dataset: str, out: str | Path | None = None, *, progress: bool = True, **overrides) -> JudgeResult:
    """Train ``dataset``'s standing CNN judge (``judges.STANDING_JUDGE``, then ``overrides``:
    epochs, train_size, data_root, device) into ``out`` (default: ``judges.standing_judge_dir``);
    an interrupted judge resumes, a finished one is reported, not trained again."""
    began = time.perf_counter()
    config = judges.standing_judge_config(dataset, **{k: v for k, v in overrides.items() if v is not None})
    out = Path(out or judges.standing_judge_dir(dataset))
    # a run of `train` is the judge only if it has the judge's settings: another run is refused, not reported
    runs.check_writable(out, "trained", resume=True, settings=config.to_dict(),
                        free=frozenset(config.to_dict()) - {"dataset", "arch", "lam", "mode", "seed"})
    _, done = judges.judge_progress(out)
    judge = train_to_end(config, out, progress=progress)
    return JudgeResult(out, judge.metrics[-1]["test_accuracy"], runs.completed_epochs(out), time.perf_counter() - began,
                       done >= config.total_epochs)
