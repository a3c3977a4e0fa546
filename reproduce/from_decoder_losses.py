"""REPRODUCING.md's rows on decoder losses (issue 35, all ours): what the CNN judge and H make
of P(x) on CIFAR-10 when the decoder learns from a feature loss or DeePSiM's (feature +
adversarial + pixel) instead of the paper's pixel error, at matched budgets, read from each
model's perception.json under ROOT/decoder-losses (``decoder_loss_study``).

    files = RunFiles(Path("runs/reproduce"))
    ours, verdict = DECODER_LOSS_CLAIMS[0].measure(files)
"""

from __future__ import annotations

import shlex
from pathlib import Path

from perceptreg.figures.perception import PerceptionFile
from perceptreg.measures.judging import JudgeReading
from perceptreg.runs.files import PERCEPTION_JSON
from reproduce import decoder_loss_study
from reproduce.claims import Claim
from reproduce.reading import Measure, RunFiles, read_results
from reproduce.steps import CIFAR10, JUDGE, Step
from reproduce.verdicts import Verdict, above, every, of_rate, over_models

STUDY = "decoder-losses"  # the study's folder under the root
Z_DIMS, LAMS, EPOCHS, TRAIN_SIZE = (256, 64), (1e-2, 1.0), 20, 20000
# issue 35's goals: the judge reads P(x) as the true class, over all images and where H is
# right; H reads P(x) as it reads x
JUDGE_GOAL, WHERE_RIGHT_GOAL, CONSISTENCY_GOAL = 0.5, 0.7, 0.8


def decoder_loss_steps(cifar10: str = CIFAR10) -> dict[str, Step]:
    """The study's command, run in the root after the natural steps (it reads their judge)."""
    lams = ",".join(f"{lam:g}" for lam in LAMS)
    z_dims = ",".join(map(str, Z_DIMS))
    command = (f"python -m reproduce.decoder_loss_study --dataset {shlex.quote(cifar10)} --epochs {EPOCHS} "
               f"--train-size {TRAIN_SIZE} --z {z_dims} --lams {lams} --judge {JUDGE} --out {STUDY}")
    return {"decoder-losses": Step(f"{STUDY}/{decoder_loss_study.RESULTS}", command, lambda: decoder_loss_study.study(
        cifar10, Path(STUDY), EPOCHS, TRAIN_SIZE, Z_DIMS, LAMS, judge=JUDGE))}


def model_folder(z: int, lam: float, loss: str) -> str:
    return f"{STUDY}/z{z}-lam{lam:g}-{loss}"


def _perception(files: RunFiles, z: int, lam: float, loss: str) -> tuple[PerceptionFile, JudgeReading]:
    """A model's perception.json and the reading in it of the natural rows' CNN judge (``JUDGE``;
    the 3-NN pixel judge says little of natural images, and other judges may sit beside it)."""
    def read(measured: PerceptionFile) -> tuple[PerceptionFile, JudgeReading]:
        (cnn,) = [reading for reading in measured.judges if reading.judge == f"model {JUDGE}"]
        return measured, cnn
    return read_results(files, f"{model_folder(z, lam, loss)}/{PERCEPTION_JSON}", read)


def recognisable(z: int, lam: float, loss: str) -> Measure:
    """The CNN judge's reading of ``loss``'s P(x) at (z, lam), beside the pixel loss's, with
    H's consistency; the verdict asks all three of issue 35's goals of one trained model."""
    def measure(files: RunFiles) -> tuple[str, Verdict]:
        (ours, read), (pixel, read_pixel) = _perception(files, z, lam, loss), _perception(files, z, lam, "pixel")
        judge, where, agrees = of_rate(read.p_read_true), read.p_read_true_where_right, of_rate(ours.h_consistency)
        parts = {"judge": above(judge, JUDGE_GOAL, "the judge reads P(x) as the true class"),
                 "H": above(agrees, CONSISTENCY_GOAL, "H reads P(x) as it reads x")}
        if where is not None:
            parts["where H is right"] = above(of_rate(where), WHERE_RIGHT_GOAL, "where H is right")
        blurred = read.blurred_read_true
        cell = (f"{read.judge} (right on x {of_rate(read.accuracy_on_x).text()}, {ours.images} test images): P(x) read "
                f"as true {judge.text()}, where H is right {of_rate(where).text() if where else '-'}, x blurred to the "
                f"same error {of_rate(blurred).text() if blurred else '-'}; H reads P(x) as x "
                f"{agrees.text()}; the pixel loss at the same setting: {of_rate(read_pixel.p_read_true).text()}, "
                f"H {of_rate(pixel.h_consistency).text()}")
        return cell, over_models({loss: every(parts)})
    return measure


OURS = "ours (issue 35's goals; after Dosovitskiy & Brox 2016)"
COMPARED = {"feature": " (through the model's own earlier layers)", "deepsim": " (the same + a discriminator + pixel error)",
            "feature-vgg": " (the feature loss through a VGG the study trains, seed 2, not the judge)"}
DECODER_LOSS_CLAIMS = [
    Claim(f"with the {loss} loss{COMPARED[loss]}, P(x) is recognisable on CIFAR-10 (SVHN net, z {z}, lambda {lam:g}, {EPOCHS} epochs of "
          f"{TRAIN_SIZE} images): the judge reads it as the true class above {100 * JUDGE_GOAL:g} % (above "
          f"{100 * WHERE_RIGHT_GOAL:g} % where H is right), and H reads it as x above {100 * CONSISTENCY_GOAL:g} %",
          OURS, "-", "decoder-losses", recognisable(z, lam, loss))
    for loss in COMPARED for z in Z_DIMS for lam in LAMS]
