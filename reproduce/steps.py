"""The runs REPRODUCING.md reads, made inside one folder, one step each: the file the step
makes, the command a user types for it in that folder (the page quotes it), and the library
call that does that command's work, run in this process (``make_runs``).

    make_runs(Path("reproduce/runs"), STEPS)  # a step whose file exists is skipped
"""

from __future__ import annotations

import dataclasses
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
MODEL_SEEDS = (0, 1, 2)  # verdicts.MIN_MODELS: the trained models each attack, edit and noise row is measured on
DEMO = "demo"  # the MNIST run that is attacked and edited (seed 0; the others demo-seedN)
MNIST_JUDGE = "judge-cnn"  # the MNIST model judge: another architecture (mnist_judge.py) than the demo's
JUDGE_NET = f"{Path(__file__).resolve().parent / 'mnist_judge.py'}:mnist_judge"  # absolute: steps run in the root
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


BETAS = (0, 0.01, 0.1, 1, 10)  # the strong adaptive attack's betas
RESTARTS = 5  # random restarts of every attack of the MNIST rows, plain and adaptive
CURVE_STEPS = (25, 50, 100, 200)  # the search again at these steps: has it converged?
SEARCH = Strength(adaptive_search=BETAS, fprs=DEFAULT_FPRS)
NATURAL_ATTACK = AttackSettings(eps=0.03, steps=100, loss="margin")  # --eps 0.03 --steps 100 --loss margin


def attack_step(run: str, compare: str, judge: str, command: str, settings: AttackSettings = AttackSettings(),
                strength: Strength = SEARCH, **options) -> Step:
    """evaluate-attack of ``run`` beside ``compare``, read by ``judge``, with the adaptive search."""
    return Step(f"{run}/{runs.ATTACK_METRICS}", command,
                lambda: evaluate.evaluate_attack(open_run(run), settings, compare=compare, judge_runs=(judge,),
                                                 strength=strength, **options))


def _listed(values: tuple) -> str:
    return ",".join(map(str, values))


def seed_run(name: str, seed: int) -> str:
    """The folder of a MNIST model of ``seed``: ``name`` for seed 0 (the runs made before seeds), else name-seedN."""
    return name if seed == 0 else f"{name}-seed{seed}"


@dataclass(frozen=True)
class Scale:
    """How much each MNIST model step does: the page's (the defaults), or a smoke test's, which
    makes every step in minutes to show it works (its numbers mean nothing)."""
    epochs: int = 20
    train_size: int | None = None
    attack_steps: int = 100
    images: int | None = None  # attacked (and as many held out); None: evaluate-attack's default
    restarts: int = RESTARTS
    curve_steps: tuple[int, ...] = CURVE_STEPS
    per_class: int = 100  # noise images per class; edited images
    fit_images: int | None = None


SMOKE = Scale(epochs=1, train_size=500, attack_steps=5, images=30, restarts=2, curve_steps=(2, 5), per_class=2,
              fit_images=10)


def _epochs_of(scale: Scale) -> dict:
    """A post-hoc decoder's epochs where the scale is not the page's (there: the default, 20)."""
    return {} if scale.epochs == Scale.epochs else {"epochs": scale.epochs}


def _epochs(scale: Scale) -> str:
    return "".join(f" --epochs {epochs}" for epochs in _epochs_of(scale).values())


def _model_steps(seed: int, scale: Scale) -> dict[str, Step]:
    """The steps of the MNIST model of ``seed``: train it and its post-hoc twin, attack, noise, edits."""
    demo, post_hoc = seed_run(DEMO, seed), seed_run("post-hoc", seed)
    sized = f" --train-size {scale.train_size}" if scale.train_size else ""
    settings = AttackSettings(steps=scale.attack_steps, restarts=scale.restarts)
    # the convergence curve costs three times the search (25 + 50 + 100 + 200 steps against 100):
    # the first model shows it, the others repeat the search alone
    curve_steps = scale.curve_steps if seed == MODEL_SEEDS[0] else ()
    strength = dataclasses.replace(SEARCH, curve_steps=curve_steps)
    curves = f" --curve-steps {_listed(curve_steps)}" if curve_steps else ""
    images = {} if scale.images is None else {"images": scale.images}
    given = f" --images {scale.images}" if scale.images else ""
    fit = f" --fit-images {scale.fit_images}" if scale.fit_images else ""
    attack = f"--steps {scale.attack_steps}"
    return {
        seed_run("demo", seed): Step(f"{demo}/{runs.MODEL_META}", f"perceptreg train --lam 1e-2 --epochs {scale.epochs}"
                                     f"{sized} --seed {seed} --out {demo}",
                                     lambda: train(TrainConfig(lam=1e-2, epochs=scale.epochs, seed=seed,
                                                               train_size=scale.train_size), demo)),
        seed_run("post-hoc", seed): Step(f"{post_hoc}/{runs.MODEL_META}", f"perceptreg train --classifier-from {demo}"
                                         f"{_epochs(scale)} --out {post_hoc}",
                                         lambda: train_run.train_run({"classifier_from": demo, **_epochs_of(scale)},
                                                                     post_hoc)),
        seed_run("attack", seed): attack_step(
            demo, post_hoc, MNIST_JUDGE, f"perceptreg evaluate-attack {demo} --judge {MNIST_JUDGE} --compare {post_hoc} "
            f"{attack} --restarts {scale.restarts}{given} --adaptive-search {_listed(BETAS)}{curves}",
            settings, strength, **images),
        seed_run("noise", seed): Step(f"{demo}/{runs.NOISE_METRICS}",
                                      f"perceptreg attack {demo} --from-noise --n {scale.per_class} {attack}",
                                      lambda: noise.attack_from_noise(open_run(demo), AttackSettings(
                                          steps=scale.attack_steps), images_per_class=scale.per_class)),
        seed_run("interpolate", seed): Step(
            f"{demo}/{runs.INTERPOLATION_METRICS}", f"perceptreg interpolate {demo} --target 8 --images "
            f"{scale.per_class}{fit} {attack} --compare {post_hoc}",
            lambda: interpolation.interpolate(open_run(demo), EditSettings(
                target=8, images=scale.per_class, **({"fit_images": scale.fit_images} if scale.fit_images else {})),
                AttackSettings(steps=scale.attack_steps), compare=open_run(post_hoc))),
    }


def mnist_steps(seeds: tuple[int, ...] = MODEL_SEEDS, scale: Scale = Scale()) -> dict[str, Step]:
    """The MNIST table's steps: the judge, then each seed's model steps, then (at the page's
    scale only: hours) the sweeps."""
    sized = {"train_size": scale.train_size} if scale.train_size else {}
    judge = {MNIST_JUDGE: Step(f"{MNIST_JUDGE}/{runs.MODEL_META}",
                               f"perceptreg train --model {JUDGE_NET} --lam 0 --epochs {scale.epochs} --seed 1"
                               + "".join(f" --train-size {size}" for size in sized.values()) + f" --out {MNIST_JUDGE}",
                               lambda: train_run.train_run({"model": JUDGE_NET, "lam": 0.0, "epochs": scale.epochs,
                                                            "seed": 1, **sized}, MNIST_JUDGE))}
    models = {name: step for seed in seeds for name, step in _model_steps(seed, scale).items()}
    return {**judge, **models, **({} if scale == SMOKE else SWEEP_STEPS)}


SWEEP_STEPS = {
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
STEPS = mnist_steps()


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
