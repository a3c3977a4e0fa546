"""REPRODUCING.md's rows on robust models (issue 36, all ours): the study's robust accuracy
(``robust_study``) and what its robust MNIST model perceives beside the standard one
(``robust_perception``), read from ROOT/robust-study, with their steps and claims.

    files = RunFiles(Path("reproduce/runs"))
    ours, verdict = ROBUST_CLAIMS[0].measure(files)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from perceptreg import runs as runs_files
from perceptreg.adversarial.summary import AttackSummary
from perceptreg.attacking.robust import ROBUST_ACCURACY
from perceptreg.core.config import AdversarialConfig
from perceptreg.sweeps.config import SweepConfig
from perceptreg.sweeps.sweep import run_sweep
from reproduce import robust_perception, robust_study
from reproduce.claims import Claim
from reproduce.from_attacks import detects_search, perceived_under_pgd, perceived_under_search
from reproduce.from_sweeps import accuracy_falls
from reproduce.reading import Measure, RunFiles, own_results, read_results
from reproduce.steps import Step
from reproduce.verdicts import Verdict, above, exceeds, of_rate, over_models

STUDY = "robust-study"  # the study's folder under the root
PAIR = "mnist"
GOAL = 0.8  # issue 36's goal: AutoAttack robust accuracy of the 4000-digit PGD model at eps 0.3
ROBUST_RUN = robust_perception.PAIRS[PAIR].robust


# Fig. 3's question asked of robustness: the lambda sweep with PGD training (PGD-10 to keep it
# affordable: about 2 minutes a member on 2 cores), five seeds so that its interval decides
SWEEP = f"{STUDY}/sweep"
SWEEP_LAMS, SWEEP_SEEDS = (1e-4, 1e-2, 1.0, 1e2), (0, 1, 2, 3, 4)
SWEEP_THREAT = AdversarialConfig(eps=0.3, steps=10, warmup_epochs=2)


def robust_steps() -> dict[str, Step]:
    """The study's commands, run in the root: its MNIST runs with AutoAttack, the attacks read
    by judges, and the lambda sweep with adversarial training."""
    study = Path(STUDY)
    sweep = SweepConfig(dataset="mnist5k", train_size=4000, lams=SWEEP_LAMS, seeds=SWEEP_SEEDS, post_hoc=False,
                        adversarial=SWEEP_THREAT)
    return {"robust-study": Step(f"{STUDY}/mnist-pgd-1000/{ROBUST_ACCURACY}",
                                 f"python -m reproduce.robust_study {STUDY} --only mnist",
                                 lambda: robust_study.run_study(study, only="mnist")),
            "robust-perception": Step(f"{STUDY}/{robust_perception.attack_folder(PAIR, 'pgd-4x')}/"
                                      f"{robust_perception.ROBUST}/{runs_files.ATTACK_METRICS}",
                                      f"python -m reproduce.robust_perception {STUDY}",
                                      lambda: robust_perception.measure(study, PAIR)),
            "robust-sweep": Step(f"{SWEEP}/{runs_files.SWEEP_JSON}",
                                 f"perceptreg sweep --dataset mnist5k --train-size 4000 --lams "
                                 f"{','.join(f'{lam:g}' for lam in SWEEP_LAMS)} --seeds {','.join(map(str, SWEEP_SEEDS))} "
                                 f"--no-post-hoc --adversarial pgd --adv-eps 0.3 --adv-steps 10 --adv-warmup-epochs 2 "
                                 f"--out {SWEEP}", lambda: run_sweep(sweep, SWEEP))}


def _autoattack(files: RunFiles, run: str):
    return read_results(files, f"{STUDY}/{run}/{ROBUST_ACCURACY}", lambda result: result)


def robust_at_goal(files: RunFiles) -> tuple[str, Verdict]:
    """The 4000-digit PGD model's clean and AutoAttack robust accuracy, against the goal."""
    result = _autoattack(files, ROBUST_RUN)
    robust = of_rate(result.robust)
    return (f"{result.images} test digits ({result.selection}), L-inf eps {result.eps:g}: clean "
            f"{of_rate(result.clean).text()}, AutoAttack {robust.text()}, PGD-50 {of_rate(result.pgd_robust).text()}"
            + "".join(f"; warned: {line}" for line in result.warnings), above(robust, GOAL, "AutoAttack robust accuracy"))


def data_limits(files: RunFiles) -> tuple[str, Verdict]:
    """AutoAttack robust accuracy at 1000, 2000 and 4000 training digits, at one budget."""
    measured = {n: of_rate(_autoattack(files, f"mnist-pgd-{n}").robust) for n in sorted(robust_study.MNIST_SIZES)}
    cells = "; ".join(f"{n} digits: {rate.text()}" for n, rate in measured.items())
    smallest, largest = min(measured), max(measured)
    return cells, exceeds(measured[largest], measured[smallest],
                          (f"{largest} digits' robust accuracy", f"{smallest} digits'"))


def in_pair(pick: Callable[[AttackSummary, RunFiles, str], tuple[str, Verdict]], attack: str,
            model: str) -> Measure:
    """``pick`` of ``model`` (robust or standard) under ``attack``: both are in the results file
    of the robust model's copy, the standard one as its --compare."""
    folder = f"{STUDY}/{robust_perception.attack_folder(PAIR, attack)}"
    results = f"{folder}/{robust_perception.ROBUST}/{runs_files.ATTACK_METRICS}"

    def measure(files: RunFiles) -> tuple[str, Verdict]:
        run = f"{folder}/{model}"
        ours, verdict = read_results(files, results, lambda found: pick(own_results(found, files, run), files, run))
        return ours, over_models({model: verdict})  # one trained model: labelled so
    return measure


ROBUST, STANDARD = robust_perception.ROBUST, robust_perception.STANDARD
SEC_4 = "P(x_adv) looks like the adversarial class (the paper's Sec. 4 claim)"
AFTER_SEC_4 = "ours, after the paper's Sec. 4 (Appendix A, Fig. 14 on MNIST)"
LARGE_EPS = "ours, after Tsipras et al. 2019 (large-eps examples of robust models look like the class)"
OF_MODEL = {ROBUST: "the PGD-trained model", STANDARD: "the standard model trained beside it"}
PERCEPTION_ROWS = [  # (the attack's words, whose, the attack's folder, the reading)
    ("under AutoAttack at the training eps 0.3", AFTER_SEC_4, "autoattack-1x", perceived_under_pgd),
    ("under the strong adaptive attack, started from AutoAttack's images", "ours", "autoattack-1x",
     perceived_under_search),
    ("under PGD at 2x the training eps (0.6; margin loss, 100 steps)", LARGE_EPS, "pgd-2x", perceived_under_pgd),
    ("under PGD at 4x (1.2: the whole image cube)", LARGE_EPS, "pgd-4x", perceived_under_pgd),
]
ROBUST_CLAIMS = [
    Claim(f"PGD training (eps 0.3, 40 steps, lambda 1e-2, 4000 digits) makes the paper's MNIST net robust: AutoAttack "
          f"robust accuracy above {100 * GOAL:g} %", "ours (issue 36's goal; Madry et al. 2018)", "-", "robust-study",
          robust_at_goal),
    Claim("robust accuracy grows with the training digits at one budget (200,000 digits seen)",
          "ours, after Schmidt et al. 2018", "-", "robust-study", data_limits),
    *(Claim(f"{SEC_4}, {words}: {OF_MODEL[model]}", whose, "-", "robust-perception", in_pair(pick, attack, model))
      for words, whose, attack, pick in PERCEPTION_ROWS for model in (ROBUST, STANDARD)),
    Claim("||x - P(x)||^2 flags most of the strong adaptive attack's successes on the PGD-trained model", "ours", "-",
          "robust-perception", in_pair(detects_search, "autoattack-1x", ROBUST)),
    Claim("robust accuracy decreases as lambda increases, as clean accuracy does (PGD-10 training at eps 0.3, 4000 "
          "digits, PGD-10 robust accuracy on 500 test digits)", "ours, after the paper's Sec. 3.2, Fig. 3", "-",
          "robust-sweep", accuracy_falls(SWEEP, slowly=False, measure="test_robust_accuracy", named="robust accuracy")),
]
