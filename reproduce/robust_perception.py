"""Issue 36's question asked of the robust study's models: what does a robust model perceive?

    python -m reproduce.robust_perception runs/robust-study            # after reproduce.robust_study
    python -m reproduce.robust_perception runs/robust-study --page     # the table docs/numbers/robust.md quotes

Each attack is run on the robust model and, on the same images, on the standard one beside it
(``evaluate_attack``'s ``compare``: McNemar's paired test), read by a judge of another
architecture than both (the MNIST judge of ``mnist_judge.py``; on natural images the dataset's
standing CNN judge), with x_adv's own reading beside P(x_adv)'s, so transfer is told apart
from perception (issue 37). The attacks, at multiples of the training eps:

- AutoAttack's standard ensemble at 1x, with the strong adaptive attacker (``steps.SEARCH``:
  margin and CE, betas 0 to 10, aiming inside the detector's band) against the detector;
- our PGD (100 steps, margin loss) at 2x and 4x: large-eps examples against a robust model
  look like the adversarial class (Tsipras et al. 2019). At 4x on MNIST (1.2) the ball holds
  the whole image cube: the attacker may draw any image.

evaluate-attack writes RUN/attack_metrics.json, one per run, so each attack gets a folder of
its own, ROOT/perception/<pair>-<attack>/, holding hard-linked copies of the two runs (their
files are never written in place: sealed writes replace them). A step whose results exist is
skipped: a killed study is started again with the same command.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from perceptreg import figures, runs
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.defaults import AUTOATTACK, OURS
from perceptreg.adversarial.run_attacks import Strength
from perceptreg.adversarial.summary import Rate
from perceptreg.attacking.evaluate import AttackReport, evaluate_attack
from perceptreg.runs import open_run
from perceptreg.views import train_run
from reproduce import from_attacks, robust_study
from reproduce.reading import RunFiles
from reproduce.steps import JUDGE_NET, SEARCH

ROBUST, STANDARD = "robust", "standard"  # the copies' names inside each attack's folder
MNIST_JUDGE = "mnist-judge"
ATTACKED, HELD_OUT = 500, 500  # MNIST-5k's 1000 test digits: half attacked, half set the detector's thresholds
GRID, SHOWN = "grid.png", 10  # each attack's figure, in its folder: the first images of both models


@dataclass(frozen=True)
class Pair:
    """A robust run and the standard run trained beside it, and the eps both were measured at."""
    robust: str
    standard: str
    eps: float
    judge: str | None  # a run folder under the root; None: the dataset's standing judge


PAIRS = {"mnist": Pair("mnist-pgd-4000", "mnist-standard-4000", 0.3, MNIST_JUDGE),
         "cifar10": Pair("cifar10-fgsm-rs", "cifar10-standard", 8 / 255, None)}
# name: (attack, multiple of the training eps, what is measured beside it)
ATTACKS = {"autoattack-1x": (AUTOATTACK, 1, SEARCH), "pgd-2x": (OURS, 2, Strength()),
           "pgd-4x": (OURS, 4, Strength())}


def attack_folder(pair: str, attack: str) -> str:
    return f"perception/{pair}-{attack}"


def linked_copy(source: Path, target: Path) -> None:
    """``source`` run folder at ``target``, its files hard links (copies across devices);
    its lock and earlier attack results are left behind."""
    shutil.copytree(source, target, copy_function=_link,
                    ignore=shutil.ignore_patterns(".lock", "attack_*"))


def _link(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def measure(root: Path, pair_name: str, *, images: int = ATTACKED, held_out: int = HELD_OUT,
            steps: int = 100, judge_epochs: int = 20, cifar10: str = "cifar10", device: str = "cpu") -> list[Path]:
    """Every attack of ``ATTACKS`` on the pair's two runs under ``root``, each skipped where its
    results exist; returns the results files. The MNIST judge is trained first, on the
    pair's training digits (lam 0: a classifier of real digits only). ``cifar10``: the spec a
    CIFAR-10 run missing here is trained on (as `robust_study --cifar10`)."""
    pair = PAIRS[pair_name]
    written = [root / attack_folder(pair_name, name) / ROBUST / runs.ATTACK_METRICS for name in ATTACKS]
    if all(results.exists() for results in written):
        return written
    for name in (pair.robust, pair.standard):  # where this machine lacks them (git keeps results alone)
        robust_study.made(root, name, cifar10)
    if pair.judge is not None and not (root / pair.judge / runs.MODEL_META).exists():
        digits = runs.read_config(root / pair.robust).train_size
        train_run.train_run({"model": JUDGE_NET, "lam": 0.0, "seed": 1, "train_size": digits,
                             "epochs": judge_epochs}, root / pair.judge)
    for results, (name, (attack, multiple, strength)) in zip(written, ATTACKS.items()):
        folder = root / attack_folder(pair_name, name)
        if results.exists():
            continue
        for copy, source in ((ROBUST, pair.robust), (STANDARD, pair.standard)):
            if not (folder / copy).exists():
                linked_copy(root / source, folder / copy)
        settings = AttackSettings(eps=pair.eps * multiple, steps=steps,
                                  **({} if attack == AUTOATTACK else {"loss": "margin"}))
        print(f"+ {pair_name} {name}: {attack} at eps {settings.eps:g}", flush=True)
        robust = open_run(folder / ROBUST)
        report = evaluate_attack(robust, settings, compare=folder / STANDARD, images=images,
                                 held_out=held_out, judge_runs=() if pair.judge is None else (root / pair.judge,),
                                 strength=strength, attack=attack, device=device)
        draw(report, robust.classes, f"{attack} at eps {settings.eps:g}", folder / GRID)
    return written


def draw(report: AttackReport, classes: tuple[str, ...], attack: str, path: Path) -> Path:
    """The first ``SHOWN`` attacked images of the robust model (x, x_adv, P(x), P(x_adv)) above
    those of the standard one: the same images, the same attack."""
    panels = [figures.attack_grid(evaluation, torch.arange(SHOWN), classes,
                                  f"{model} model, {attack}: x, x_adv, P(x), P(x_adv)")
              for model, evaluation in zip((ROBUST, STANDARD), report.evaluations)]
    return figures.save_png(figures.stack_panels(panels), path)


def page(root: Path, pair_name: str) -> str:
    """The table of docs/numbers/robust.md: per attack, model and judge, robust accuracy and
    the judge's readings of the successful attacks (x_adv and P(x_adv) as the adversarial
    class, P(x_adv) as the true one), the paper's Sec. 4 claim's verdict over the judges
    (``from_attacks``: P(x_adv) read as adversarial beyond the transfer and more than as
    true), and under the adaptive search the share of its successes the detector misses."""
    lines = ["| attack | model | robust accuracy | judge (right on x) | x_adv as adversarial | "
             "P(x_adv) as adversarial | P(x_adv) as true | Sec. 4 claim | detector misses (5 % FPR) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, (_, _, strength) in ATTACKS.items():
        files = RunFiles(root / attack_folder(pair_name, name))
        for run in (ROBUST, STANDARD):
            summary = from_attacks.own_results(files.json(f"{ROBUST}/{runs.ATTACK_METRICS}"), files, run)
            judges = summary.judges
            rows = [(name, str(summary.robust_accuracy), {j: r.on_x_adv for j, r in judges.items()},
                     {j: r.on_perception_adv for j, r in judges.items()},
                     from_attacks.perceived_under_pgd(summary, files, run)[1], "")]
            search = summary.adaptive_search
            if strength.adaptive_search and search:
                missed = search.undetected["one-sided"]["0.05"]
                rows.append((f"{name}, adaptive search", f"success {search.attack_success}",
                             search.judges_on_adversarial, search.judges_on_perception_adv,
                             from_attacks.perceived_under_search(summary, files, run)[1],
                             str(Rate.count(round(missed.rate * missed.n), search.successful_attacks))))
            for attack, accuracy, on_x_adv, on_perception, verdict, misses in rows:
                for judge, reading in on_perception.items():
                    lines.append(f"| {attack} | {run} | {accuracy} | {judge} ({judges[judge].accuracy_on_x}) | "
                                 f"{on_x_adv[judge].adversarial_label} | {reading.adversarial_label} | "
                                 f"{reading.true_label} | {verdict.outcome} | {misses} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--pair", default="mnist", choices=tuple(PAIRS))
    parser.add_argument("--page", action="store_true", help="print the table of what has been measured")
    parser.add_argument("--scale-down", action="store_true", help="50 images attacked, 50 held out, 5 steps")
    parser.add_argument("--cifar10", default="cifar10", help="the CIFAR-10 dataset spec a missing run is trained on")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.page:
        print(page(args.root, args.pair))
        return
    sizes = dict(images=50, held_out=50, steps=5, judge_epochs=1) if args.scale_down else {}
    measure(args.root, args.pair, cifar10=args.cifar10, device=args.device, **sizes)


if __name__ == "__main__":
    main()
