"""The runs REPRODUCING.md reads, made inside one folder, one step each: the file the step
makes, the command a user types for it in that folder (the page quotes it), and the library
call that does that command's work, run in this process (``make_runs``).

    make_runs(Path("runs/reproduce"), STEPS)  # a step whose file exists is skipped
"""

from __future__ import annotations

import math
import os
import shlex
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from perceptreg import runs
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.defaults import DEFAULT_FPRS
from perceptreg.adversarial.run_attacks import Strength
from perceptreg.attacking import evaluate, noise
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.edits import interpolation
from perceptreg.edits.study import EditSettings
from perceptreg.runs import open_run
from perceptreg.sweeps.config import SweepConfig
from perceptreg.sweeps.sweep import run_sweep
from perceptreg.training.train import train
from perceptreg.views import train_run

STRIPS_IMAGES = 4000  # MNIST-strips' training images: the MNIST-5k split's 4000 centre digits
SVHN_IMAGES = 73_257  # SVHN's training set, which mnist-strips:73257 matches in number
BATCH = 64  # the sweep's batch size
LARGE_EPOCHS = 10
# The 4000-image sweep again, for as many optimizer steps as the 73,257-image one (182 epochs:
# 11,466 steps against 11,450): does the larger set win by its images or by its steps?
MATCHED_EPOCHS = round(LARGE_EPOCHS * math.ceil(SVHN_IMAGES / BATCH) / math.ceil(STRIPS_IMAGES / BATCH))
SEEDS = (0, 1, 2, 3, 4)  # verdicts.MIN_SEEDS: fewer make an interval over seeds that decides nothing
DEMO = "demo"  # the MNIST run that is attacked and edited
SWEEP = "cifar10-sweep"  # the natural-image sweep
KEPT = "0.01"  # the lambda of the natural-image model attacked and edited, as the MNIST demo's
RUN = f"{SWEEP}/lam{KEPT}-seed0"
JUDGE = "cifar10-judge"
POST_HOC = f"{SWEEP}/post-hoc-seed0"
CIFAR10 = "cifar10"  # the dataset spec the natural steps read by default: the canonical download


@dataclass(frozen=True)
class Step:
    """One run the page reads, made by one command."""
    output: str  # the file it makes, under the root
    command: str  # what a user types in the root to make it: the page quotes it
    make: Callable[[], object]  # the library call that does the command's work, run in the root


SEARCH = Strength(adaptive_search=(0, 0.01, 0.1, 1, 10), fprs=DEFAULT_FPRS)  # the strong adaptive attack's betas
NATURAL_ATTACK = AttackSettings(eps=0.03, steps=100, loss="margin")  # --eps 0.03 --steps 100 --loss margin


def attack_step(run: str, compare: str, judge: str, command: str, settings: AttackSettings = AttackSettings(),
                **options) -> Step:
    """evaluate-attack of ``run`` beside ``compare``, read by ``judge``, with the adaptive search."""
    return Step(f"{run}/{runs.ATTACK_METRICS}", command,
                lambda: evaluate.evaluate_attack(open_run(run), settings, compare=compare, judge_runs=(judge,),
                                                 strength=SEARCH, **options))


def _listed(values: tuple) -> str:
    return ",".join(map(str, values))


STEPS = {
    "demo": Step(f"{DEMO}/{runs.MODEL_META}", f"perceptreg train --lam 1e-2 --epochs 20 --out {DEMO}",
                 lambda: train(TrainConfig(lam=1e-2, epochs=20), DEMO)),
    "judge": Step(f"judge/{runs.MODEL_META}", "perceptreg train --lam 1e-2 --epochs 20 --seed 1 --out judge",
                  lambda: train(TrainConfig(lam=1e-2, epochs=20, seed=1), "judge")),
    "post-hoc": Step(f"post-hoc/{runs.MODEL_META}", f"perceptreg train --classifier-from {DEMO} --out post-hoc",
                     lambda: train_run.train_run({"classifier_from": DEMO}, "post-hoc")),
    "attack": attack_step(DEMO, "post-hoc", "judge", f"perceptreg evaluate-attack {DEMO} --judge judge "
                          "--compare post-hoc --adaptive-search 0,0.01,0.1,1,10"),
    "noise": Step(f"{DEMO}/{runs.NOISE_METRICS}", f"perceptreg attack {DEMO} --from-noise --n 100",
                  lambda: noise.attack_from_noise(open_run(DEMO), AttackSettings(), images_per_class=100)),
    "interpolate": Step(f"{DEMO}/{runs.INTERPOLATION_METRICS}",
                        f"perceptreg interpolate {DEMO} --target 8 --images 100 --compare post-hoc",
                        lambda: interpolation.interpolate(open_run(DEMO), EditSettings(target=8, images=100),
                                                          compare=open_run("post-hoc"))),
    "sweep-4000": Step(f"sweep-4000/{runs.SWEEP_JSON}", f"perceptreg sweep --seeds {_listed(SEEDS)} --out sweep-4000",
                       lambda: run_sweep(SweepConfig(seeds=SEEDS), "sweep-4000")),
    "sweep-73257": Step(f"sweep-73257/{runs.SWEEP_JSON}", f"perceptreg sweep --dataset mnist-strips:{SVHN_IMAGES} "
                        f"--seeds 0 --no-post-hoc --epochs {LARGE_EPOCHS} --out sweep-73257",
                        lambda: run_sweep(SweepConfig(dataset=f"mnist-strips:{SVHN_IMAGES}", seeds=(0,),
                                                      post_hoc=False, epochs=LARGE_EPOCHS), "sweep-73257")),
    "sweep-4000-steps": Step(f"sweep-4000-steps/{runs.SWEEP_JSON}", "perceptreg sweep --seeds 0 --no-post-hoc "
                             f"--epochs {MATCHED_EPOCHS} --out sweep-4000-steps",
                             lambda: run_sweep(SweepConfig(seeds=(0,), post_hoc=False, epochs=MATCHED_EPOCHS),
                                               "sweep-4000-steps")),
}


def natural_steps(cifar10: str = CIFAR10) -> dict[str, Step]:
    """The natural-image table's steps, as STEPS, reading CIFAR-10 as the dataset spec ``cifar10``
    (quoted in the commands as a shell needs it)."""
    spec = shlex.quote(cifar10)
    attack = "--eps 0.03 --steps 100 --loss margin"
    return {
        "cifar10-judge": Step(f"{JUDGE}/{runs.MODEL_META}",
                              f"perceptreg train-judge --dataset {spec} --train-size 20000 --out {JUDGE}",
                              lambda: train_run.train_judge(cifar10, JUDGE, train_size=20000)),
        "cifar10-sweep": Step(f"{SWEEP}/{runs.SWEEP_JSON}", f"perceptreg sweep --dataset {spec} "
                              f"--lams 1e-4,1e-3,1e-2,1e2 --seeds 0,1 --epochs 20 --train-size 20000 --judge {JUDGE} "
                              f"--out {SWEEP}",
                              lambda: run_sweep(SweepConfig(dataset=cifar10, lams=(1e-4, 1e-3, 1e-2, 1e2),
                                                            seeds=(0, 1), epochs=20, train_size=20000, judge=JUDGE),
                                                SWEEP)),
        "cifar10-attack": attack_step(RUN, POST_HOC, JUDGE, f"perceptreg evaluate-attack {RUN} --judge "
                                      f"{JUDGE} {attack} --images 500 --held-out 1000 "
                                      f"--adaptive-search 0,0.01,0.1,1,10 --compare {POST_HOC}",
                                      settings=NATURAL_ATTACK, images=500, held_out=1000),
        "cifar10-noise": Step(f"{RUN}/{runs.NOISE_METRICS}",
                              f"perceptreg attack {RUN} --judge {JUDGE} --from-noise --n 100 {attack}",
                              lambda: noise.attack_from_noise(open_run(RUN), NATURAL_ATTACK, images_per_class=100,
                                                              judge_run=open_run(JUDGE))),
        "cifar10-interpolate": Step(f"{RUN}/{runs.INTERPOLATION_METRICS}", f"perceptreg interpolate {RUN} "
                                    f"--judge {JUDGE} --target 1 --images 100 --eps 0.03 --steps 50 "
                                    f"--compare {POST_HOC}",
                                    lambda: interpolation.interpolate(
                                        open_run(RUN), EditSettings(target=1, images=100),
                                        AttackSettings(eps=0.03, steps=50), compare=open_run(POST_HOC),
                                        judge=open_run(JUDGE))),
    }


@contextmanager
def _inside(folder: Path):
    """In ``folder`` as the current folder (contextlib.chdir, which Python 3.10 lacks)."""
    back = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(back)


def make_runs(root: Path, steps: dict[str, Step]) -> None:
    """Make every step of ``steps`` whose output is missing, in order, inside ``root``: the
    commands' folders are relative to it, and the results files key the runs by them."""
    root.mkdir(parents=True, exist_ok=True)
    with _inside(root):
        for step in steps.values():
            if Path(step.output).exists():
                continue
            print(f"+ {step.command}", flush=True)
            try:
                step.make()
            except PerceptregError as err:
                raise PerceptregError(f"`{step.command}` failed in {root}: {err}; fix it and run this again "
                                      "(the steps already made are skipped)") from None
