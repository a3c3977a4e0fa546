"""REPRODUCING.md's rows on decoder losses (issue 35, all ours): what the CNN judge and H make
of P(x) on CIFAR-10 when the decoder learns from a feature loss or DeePSiM's (feature +
adversarial + pixel) instead of the paper's pixel error, at matched budgets, read from each
model's perception.json under ROOT/decoder-losses (``decoder_loss_study``); and what a user's
ResNet's deepest layer shows through `attach` with each loss (ROOT/resnet14*/layers.json),
that ResNet also the study's second judge.

    files = RunFiles(Path("reproduce/runs"))
    ours, verdict = DECODER_LOSS_CLAIMS[0].measure(files)
"""

from __future__ import annotations

import runpy
import shlex
from pathlib import Path

from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.attaching.attach_run import run_attach
from perceptreg.attaching.defaults import attach_config
from perceptreg.data.registry import CIFAR10_NORMALIZATION  # examples/cifar_resnet.py's too
from perceptreg.figures.perception import PerceptionFile
from perceptreg.measures.judging import JudgeReading
from perceptreg.runs.files import LAYERS_JSON, PERCEPTION_JSON
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
DEEPEST_GOAL = 0.4  # issue 35's goal for the attached CIFAR ResNet's deepest layer, read by the judge

# A user's ResNet (examples/, as docs/numbers/resnet-cifar10.md trains and attaches it): the study's
# second judge, of another architecture than both the SVHN net and the CNN judge, and the model
# whose layers `attach` shows with each decoder loss
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"  # absolute: the steps run in the root
RESNET = "resnet14"  # the pixel loss's attach run; the others resnet14-LOSS
RESNET_LOSSES = ("pixel", "deepsim")
RESNET_EPOCHS = 4
RESNET_LAYERS = ("layer1", "layer2", "layer3", "avgpool")
RESNET_ATTACK = AttackSettings(eps=0.0314, steps=20)  # 8/255, CIFAR-10's usual radius


def resnet_run(loss: str) -> str:
    return RESNET if loss == "pixel" else f"{RESNET}-{loss}"


def _resnet_step(cifar10: str, loss: str) -> Step:
    """Train the ResNet as its user does (resumes; nothing to do once trained), then attach it with ``loss``."""
    script, train = EXAMPLES / "train_cifar_resnet.py", [cifar10, "--epochs", str(RESNET_EPOCHS)]
    normalize = ",".join(f"{v:g}" for part in CIFAR10_NORMALIZATION for v in part)
    command = (f"{shlex.join(['python', str(script), *train])} && perceptreg attach --model {EXAMPLES}/cifar_resnet.py:resnet14 "
               f"--weights resnet.pt --layers {','.join(RESNET_LAYERS)} --normalize {normalize} --dataset "
               f"{shlex.quote(cifar10)} --train-size {TRAIN_SIZE} --epochs 2 --eps {RESNET_ATTACK.eps:g} --steps "
               f"{RESNET_ATTACK.steps} --attack-images 200 --judge {JUDGE}"
               + ("" if loss == "pixel" else f" --decoder-loss {loss}") + f" --out {resnet_run(loss)}")

    def make():
        runpy.run_path(str(script))["main"](train)  # the user's script, as the command runs it
        config = attach_config(model=f"{EXAMPLES}/cifar_resnet.py:resnet14", weights="resnet.pt", layers=RESNET_LAYERS,
                               normalize=CIFAR10_NORMALIZATION, dataset=cifar10, train_size=TRAIN_SIZE, epochs=2,
                               decoder_loss=loss)
        return run_attach(config, resnet_run(loss), RESNET_ATTACK, attack_images=200, judge=JUDGE)
    return Step(f"{resnet_run(loss)}/{LAYERS_JSON}", command, make)


def study_step(z: int, lam: float) -> str:
    """The step of the study's models at (z, lambda): one step each, so that a (z, lambda) whose
    perception files git keeps (reproduce/runs) is not trained again on a fresh machine."""
    return f"{STUDY}-z{z}-lam{lam:g}"


def _study_step(cifar10: str, z: int, lam: float) -> Step:
    """The study's command at (z, lambda), made once the perception of its last variant is measured."""
    command = (f"python -m reproduce.decoder_loss_study --dataset {shlex.quote(cifar10)} --epochs {EPOCHS} "
               f"--train-size {TRAIN_SIZE} --z {z} --lams {lam:g} --judge {JUDGE} --more-judges {RESNET} --out {STUDY}")
    last = [*decoder_loss_study.variants(Path(STUDY), "vgg")][-1]
    return Step(f"{model_folder(z, lam, last)}/{PERCEPTION_JSON}", command,
                lambda: decoder_loss_study.study(cifar10, Path(STUDY), EPOCHS, TRAIN_SIZE, (z,), (lam,), judge=JUDGE,
                                                 more_judges=(RESNET,)))


def decoder_loss_steps(cifar10: str = CIFAR10) -> dict[str, Step]:
    """The ResNet's steps, then the study's, one per (z, lambda), run in the root after the
    natural steps (the study reads their judge, and the ResNet as its second)."""
    resnets = {resnet_run(loss): _resnet_step(cifar10, loss) for loss in RESNET_LOSSES}
    return {**resnets, **{study_step(z, lam): _study_step(cifar10, z, lam) for z in Z_DIMS for lam in LAMS}}


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
          OURS, "-", study_step(z, lam), recognisable(z, lam, loss))
    for loss in COMPARED for z in Z_DIMS for lam in LAMS]


def deepest_layer(files: RunFiles) -> tuple[str, Verdict]:
    """The judge's reading of the ResNet's deepest attached layer's P(x) with DeePSiM's loss, against
    the goal, beside the pixel loss's (and the layer above, with each)."""
    cells, read = [], {}
    for loss in RESNET_LOSSES:
        table = read_results(files, f"{resnet_run(loss)}/{LAYERS_JSON}", lambda measured: measured)
        deepest, above_it = table.layers[-1], table.layers[-2]
        read[loss] = of_rate(deepest.accuracy_on_p)
        cells.append(f"{loss}: {deepest.judge} (right on x {of_rate(deepest.accuracy_on_x).text()}) reads "
                     f"{deepest.name}'s P(x) as the true class {read[loss].text()} ({above_it.name}'s: "
                     f"{of_rate(above_it.accuracy_on_p).text()})")
    verdict = above(read["deepsim"], DEEPEST_GOAL, "the judge reads the deepest layer's P(x) as the true class")
    return "; ".join(cells), over_models({"the ResNet": verdict})


DECODER_LOSS_CLAIMS.append(Claim(
    f"with DeePSiM's loss, a user's CIFAR ResNet through `attach` ({RESNET_EPOCHS} epochs; decoders fitted 2 epochs "
    f"on {TRAIN_SIZE} images): the judge reads its deepest layer's P(x) as the true class above "
    f"{100 * DEEPEST_GOAL:g} % (the pixel loss's beside it)", OURS, "-", RESNET + "-deepsim", deepest_layer))
