"""REPRODUCING.md: each claim (``claims``), whose it is (the paper's, with its section and
figure, or ours), the command that measures it here (``steps``), our number with its 95 %
interval, and a verdict computed from that number and its interval (``verdicts``), read from
the run folders (``reading``); then the provenance: the commit of this code and the SHA-256
of every run file the page read. Nothing in it is typed by hand.

    page = reproducing_page("reproduce/runs")
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from perceptreg import runs
from perceptreg.core.errors import PerceptregError
from reproduce.claims import CLAIMS, NATURAL_CLAIMS, Claim
from reproduce.from_decoder_losses import DECODER_LOSS_CLAIMS, decoder_loss_steps
from reproduce.from_robust import ROBUST_CLAIMS, STUDY, robust_steps
from reproduce.provenance import commit
from reproduce.reading import RunFiles, read_results
from reproduce.steps import CIFAR10, STEPS, SWEEP, Step, natural_steps
from reproduce.verdicts import MIN_MODELS, MIN_SEEDS, MOST, NOT_MEASURED, Verdict

REPO = Path(__file__).resolve().parent.parent  # the steps run the repository's scripts by absolute paths
ABOUT = ("Rates carry their 95 % Wilson interval, AUCs their DeLong interval, means over seeds their Student-t "
         f"interval, labelled uninformative below {MIN_SEEDS} seeds. The verdict is computed from "
         "those intervals: it holds when the whole interval lies on the claimed side, does not hold when it "
         "lies on the other, and is undecided when it straddles the line or comes from too few seeds; "
         f"\"most\" means more than {100 * MOST:g} %. A verdict over the images of fewer than {MIN_MODELS} "
         "trained models (seeds) says so (\"one model\"): its interval covers the images, not the training. A row "
         "whose runs collapsed (a decoder that shows nothing of its inputs: a failed training) is \"not "
         "comparable\". \"paper\" rows are the paper's claims, with the section and figure that make them and "
         "its words quoted; \"ours\" rows are measurements the paper does not make; \"ours, after the paper's "
         "Sec. N\" rows test more than the paper claims there, its words quoted beside them. Each reading by a "
         "judge names the judge and its own accuracy on the clean images x; a model judge has another "
         "architecture than the model it judges, and its reading of x_adv (how far the attack transfers) is "
         "shown beside its reading of P(x_adv). The last column names the code that wrote the run files "
         "of the row.")
NATURAL = ("CIFAR-10, not SVHN: the paper makes its claims on SVHN (Sec. 3), CelebA (Secs. 4, 5) and MNIST "
           "(Secs. 4, 6) and has no CIFAR-10 experiment. These rows measure which of its claims carry over to "
           "natural images, on the paper's SVHN network (CIFAR-10's default), with the budget the commands give. "
           "The judge is an independent CNN (`perceptreg train-judge`: another architecture and seed, trained on "
           "real images only). Made by adding `--natural --cifar10 SPEC` to `--run`; here SPEC is `{}`.")

DECODER_LOSSES = ("On CIFAR-10 the paper's pixel loss draws a blur (the rows above). These rows train the same "
                  "network with decoder losses of ours beside it (docs/guides/decoder-losses.md): a feature loss "
                  "through the model's own earlier layers, and DeePSiM's (Dosovitskiy & Brox 2016: feature + "
                  "adversarial + a small pixel term), at the same budget as the pixel run whose reading each row "
                  "quotes. The judge is the natural rows' CNN judge, never the comparator; a user's ResNet "
                  "(examples/cifar_resnet.py, trained by examples/train_cifar_resnet.py) reads beside it in each "
                  "model's perception.json, and its own layers, attached with each loss, make the last row. Made by "
                  "adding `--natural` to `--run`, after the natural rows' runs.")

ROBUST = ("Every model above is a standard classifier. These rows ask the paper's questions of an adversarially "
          "trained one (PGD, Madry et al. 2018), beside a standard model trained alike (`python -m "
          "reproduce.robust_study`, `reproduce.robust_perception`; docs/guides/adversarial-training.md), read from "
          f"`{STUDY}/` under the root. Robust accuracy is AutoAttack's standard ensemble (Croce & Hein 2020) on the "
          "first test digits of each class. Made by adding `--robust` to `--run`.")


def _command(step: str, steps: dict[str, Step], root: Path) -> str:
    """The quoted command of ``step``, then those of the same step for the other seeds (step-seedN),
    with the repository's files (examples/, reproduce/) named from ``root``, where they are typed:
    the page is the same on every machine."""
    if step not in steps:
        return "- (not made at this scale)"
    others = [name for name in steps if name.startswith(f"{step}-seed")]
    repo = os.path.relpath(REPO, root.resolve())
    return "; ".join(f"`{steps[name].command.replace(str(REPO), repo)}`" for name in (step, *others))


def _table(claims: list[Claim], steps: dict[str, Step], files: RunFiles, made_by: str) -> list[str]:
    """The Markdown table of ``claims``, each row quoting the command of its step in ``steps``."""
    lines = ["| claim | whose | paper's number | command | ours | verdict | code |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for claim in claims:
        files.versions.clear()  # what this row reads
        try:
            ours, verdict = claim.measure(files)
        except FileNotFoundError as missing:
            ours, verdict = "-", Verdict(NOT_MEASURED, f"{Path(str(missing)).name} is missing (`{made_by}` makes it)")
        cells = (claim.claim, claim.whose(), claim.paper, _command(claim.step, steps, files.root), ours, verdict.text(),
                 files.code_of(list(files.versions)))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def natural_spec(files: RunFiles, cifar10: str | None) -> str:
    """The CIFAR-10 dataset spec the natural commands quote: the one the natural sweep under the
    root was made with, which ``cifar10`` (None: take it from the sweep) must be; CIFAR10 before
    that sweep is made (nothing quoted was run yet)."""
    if not (files.root / SWEEP / runs.SWEEP_JSON).exists():
        return cifar10 or CIFAR10
    ran = read_results(files, f"{SWEEP}/{runs.SWEEP_JSON}", lambda summary: summary.config.dataset)
    if cifar10 not in (None, ran):
        raise PerceptregError(f"{files.root / SWEEP / runs.SWEEP_JSON} was made with --dataset {ran}, not {cifar10}: "
                              f"give --cifar10 {shlex.quote(ran)}, so that the page quotes the commands that were run")
    return ran


def reproducing_page(root: str | Path, cifar10: str | None = None, mnist: dict[str, Step] = STEPS) -> str:
    """The Markdown page for the run folders under ``root``; the natural-image commands quoted
    with the CIFAR-10 dataset spec ``cifar10`` (what ``--run --natural`` ran them with; None:
    the one the natural sweep under ``root`` was made with), the MNIST ones as ``mnist`` gives
    them (``steps.mnist_steps``: its seeds and scale)."""
    files = RunFiles(Path(root))
    cifar10 = natural_spec(files, cifar10)
    lines = ["# Reproducing the paper's claims", "",
             f"Generated by `python -m reproduce {root} --run` (from the repository root) from the run folders "
             f"that the commands below make inside that folder; do not edit by hand. {ABOUT}", ""]
    lines += _table(CLAIMS, mnist, files, "--run")
    lines += ["", "## Natural images (CIFAR-10)", "", NATURAL.format(cifar10), ""]
    lines += _table(NATURAL_CLAIMS, natural_steps(cifar10), files, "--run --natural")
    lines += ["", "## Decoder losses on CIFAR-10 (ours)", "", DECODER_LOSSES, ""]
    lines += _table(DECODER_LOSS_CLAIMS, decoder_loss_steps(cifar10), files, "--run --natural")
    lines += ["", "## Robust models (ours)", "", ROBUST, ""]
    lines += _table(ROBUST_CLAIMS, robust_steps(), files, "--run --robust")
    lines += ["", "## Provenance", "", f"Code: commit {commit()}.", "", "Run files read (SHA-256):", ""]
    lines += [f"- `{name}` {digest}" for name, digest in sorted(files.hashes.items())] or ["- none yet"]
    return "\n".join(lines) + "\n"
