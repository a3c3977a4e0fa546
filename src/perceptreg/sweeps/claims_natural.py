"""The natural-image claims of REPRODUCING.md, on CIFAR-10 (not SVHN): the paper's claims,
made on SVHN (Sec. 3), CelebA (Secs. 4, 5) and MNIST (Secs. 4, 6), measured on CIFAR-10 by
the measures of ``claims``, read from the runs of the natural steps; and what only natural
images need: an independent CNN judge reading P(x), its own accuracy on x beside each reading.

    files = RunFiles(Path("runs/reproduce"))
    ours, verdict = NATURAL_CLAIMS[0].measure(files)
"""

from __future__ import annotations

from perceptreg import runs
from perceptreg.sweeps.claims import (
    MOST,
    PAPER_SWEEP,
    Claim,
    RunFiles,
    accuracy_falls,
    attack,
    beats_baselines,
    detects_pgd,
    detects_search,
    edits,
    fooled,
    judge_named,
    lambda_ends,
    noise,
    perceived_under_pgd,
    perceived_under_search,
    read_results,
    seed_values,
)
from perceptreg.sweeps.verdicts import NOT_MEASURED, Verdict, above, every, of_rate, over_seeds, paired_difference

SWEEP = "cifar10-sweep"
KEPT = "0.01"  # the lambda of the model attacked and edited, as the MNIST demo's
RUN = f"{SWEEP}/lam{KEPT}-seed0"
COMPARED = ("blur_residual", "bit_depth", "median_filter")  # the pixel statistic means nothing on natural images
NO_JUDGE = Verdict(NOT_MEASURED, "sweep.json holds no judge's reading of P(x) (made without --judge): delete it "
                                 "and rerun `--run --natural`, which measures the trained models again with the judge")


def _readings(summary: dict) -> dict[str, list[dict]] | None:
    """Per lambda, each seed's judge reading of P(x) (``judges.read_perception``); None when
    the sweep was made without a judge."""
    joint = {v: [member.get("reading") for member in members]
             for v, members in summary["per_seed"].items() if v != "post-hoc"}
    return None if any(None in readings for readings in joint.values()) else joint


def _judge(readings: dict[str, list[dict]]) -> str:
    """The judge of the sweep's readings (each member read the same test images with it)."""
    first = next(iter(readings.values()))[0]
    return "judge " + judge_named(first["judge"], first["judge_accuracy"])


def perception_kept(files: RunFiles) -> tuple[str, Verdict]:
    """MSE/pixel of P(x) and the judge's reading of P(x) as the true class, per lambda: does
    the largest lambda keep more than the smallest (paired by seed)?"""
    def pick(summary):
        lams = [v for v in summary["per_seed"] if v != "post-hoc"]
        mse = {v: seed_values(summary, v, "test_recon_mse") for v in lams}
        shown = {v: f"{v}: MSE/pixel {over_seeds(mse[v], scale=1, unit='', digits=4).text()}" for v in lams}
        readings = _readings(summary)
        if readings is None:
            return "; ".join(shown.values()), NO_JUDGE
        read = {v: [r["perception_read_true"]["rate"] for r in readings[v]] for v in lams}
        smallest, largest = lambda_ends(summary)
        fall = over_seeds([a - b for a, b in zip(mse[smallest], mse[largest])], scale=1, unit="", digits=4)
        rise = paired_difference(read[largest], read[smallest])
        ours = (_judge(readings) + "; " + "; ".join(f"{shown[v]}, P(x) read as true {over_seeds(read[v]).text()}"
                                                   for v in lams)
                + f"; MSE fall {fall.text()}, read-as-true rise {rise.text()}")
        paired = f"at lambda {largest} against {smallest}, paired by seed,"
        return ours, every({"MSE/pixel falls": above(fall, 0, f"MSE/pixel fall {paired}"),
                            "P(x) read as true rises": above(rise, 0, f"read-as-true rise {paired}")})
    return read_results(files, f"{SWEEP}/{runs.SWEEP_JSON}", pick)


def object_kept(files: RunFiles) -> tuple[str, Verdict]:
    """At lambda ``KEPT``, each seed's P(x) read as the true class by the judge, over the test images."""
    def pick(summary):
        readings = _readings(summary)
        if readings is None:
            return "-", NO_JUDGE
        read = {f"seed {seed}": of_rate(r["perception_read_true"])
                for seed, r in zip(summary["config"]["seeds"], readings[KEPT])}
        ours = (f"lambda {KEPT}, {_judge(readings)}: P(x) read as the true class, "
                + "; ".join(f"{seed}: {value.text()}" for seed, value in read.items())
                + f" of {readings[KEPT][0]['images']} test images")
        return ours, every({seed: above(value, MOST, "read as true") for seed, value in read.items()})
    return read_results(files, f"{SWEEP}/{runs.SWEEP_JSON}", pick)


CELEBA_EPS = "paper, Sec. 4, Figs. 4, 5 (CelebA, at its eps 0.03)"
NATURAL_CLAIMS = [
    Claim("test accuracy decreases as lambda increases, slowly (we test the direction on CIFAR-10)",
          "paper, Sec. 3.2, Fig. 3 (SVHN)", ", ".join(f"{k}: {v} %" for k, v in PAPER_SWEEP.items()), "cifar10-sweep",
          accuracy_falls(SWEEP, "CIFAR-10's")),
    Claim("the larger lambda, the more P(x) keeps of x: its MSE falls, the judge reads it as the true class more",
          "paper, Sec. 3.2, Fig. 3 (SVHN)", "-", "cifar10-sweep", perception_kept),
    Claim(f"P(x) keeps the object: the judge reads P(x) as the true class for most test images (lambda {KEPT})",
          "paper, Sec. 3.1, Fig. 2 (SVHN: P(x) keeps the centre digit)", "-", "cifar10-sweep", object_kept),
    Claim("PGD (L-inf, eps 0.03, 100 steps, C&W margin loss) changes H's prediction on most images", CELEBA_EPS, "-",
          "cifar10-attack", attack(fooled, RUN)),
    Claim("P(x_adv) looks like the adversarial class (the judge reads P(x_adv) as adversarial more often than as true)",
          CELEBA_EPS, "-", "cifar10-attack", attack(perceived_under_pgd, RUN)),
    Claim("... still, against the strong adaptive attack (C&W margin - beta ||x_adv - P(x_adv)||^2, best of the betas)",
          "ours", "-", "cifar10-attack", attack(perceived_under_search, RUN)),
    Claim("||x - P(x)||^2 separates PGD's images from clean ones better than the blur residual and feature squeezing",
          "ours (the paper makes no detection claim)", "-", "cifar10-attack", attack(beats_baselines(COMPARED), RUN)),
    Claim("||x - P(x)||^2 flags most of PGD's successful attacks at 1 % and 5 % false positives (one- and two-sided)",
          "ours", "-", "cifar10-attack", attack(detects_pgd, RUN)),
    Claim("... and most of the strong adaptive attack's, which aims inside the detector's thresholds", "ours", "-",
          "cifar10-attack", attack(detects_search, RUN)),
    Claim("a latent direction dz = F(x_adv) - F(x) from a targeted attack edits images toward the class",
          "paper, Sec. 5, Fig. 6 (CelebA; we edit CIFAR-10 images toward class 1, automobile)", "-",
          "cifar10-interpolate", edits(RUN)),
    Claim("noise attacked toward a class is perceived as that class", "paper, Sec. 6, Fig. 7 (MNIST)", "-",
          "cifar10-noise", noise(RUN)),
]
