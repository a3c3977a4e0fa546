"""Issue 36's study, made resumable: adversarially trained models with perceptual
regularization, and their robust accuracy under AutoAttack.

    python -m reproduce.robust_study runs/robust-study                 # the full study: hours
    python -m reproduce.robust_study runs/robust-check --scale-down    # minutes: every step, small

- MNIST, the paper's net, lambda 1e-2: PGD training at L-inf eps 0.3 (Madry et al.: 40 steps of
  0.01) on 1000, 2000 and 4000 of the MNIST-5k training digits, and a standard model on 4000
  beside them; AutoAttack (standard) on the first 1000 test digits at eps 0.3. Every MNIST run
  sees 200,000 digits (50 epochs of 4000; more epochs of fewer: 3,150 to 3,200 steps),
  so they differ in data alone (Schmidt et al. 2018), with eps ramped up over the first tenth
  (at 0.3 from the first batch the net stays at chance: 13 epochs of 1000 digits at 10 %) and
  lr dropped 10x for the last fifth.
- CIFAR-10, the svhn net at z 256, lambda 1e-2, 20 epochs (lr dropped 10x for the last 4):
  FGSM-RS training at 8/255 (Wong et al.: step 10/255), and a standard model; AutoAttack on
  the first 1000 test images at 8/255. Then FGSM-RS at a step of 16/255, which Wong et al. see
  overfit catastrophically: the check that the warning fires where it should.

Each step is skipped when its file exists; a run stopped mid-training resumes from its last
epoch (``train_to_end``), so a killed study is started again with the same command.
``--scale-down``: 1 epoch per run, PGD-5 training, AutoAttack on 100 images.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from perceptreg import runs
from perceptreg.attacking.robust import ROBUST_ACCURACY, read_robust_accuracy, robust_accuracy_of_run
from perceptreg.core.config import AdversarialConfig, TrainConfig
from perceptreg.training.train import train_to_end

MNIST_SIZES = (4000, 2000, 1000)  # where does the data limit robust accuracy? (Schmidt et al. 2018)
MNIST_EPOCHS_OF_4000 = 50  # 200,000 digits seen, 3,150 to 3,200 steps of 64, by every MNIST run
CIFAR_FGSM = AdversarialConfig(eps=8 / 255, method="fgsm-rs", step_size=10 / 255)
CIFAR_EPOCHS = 20  # the paper's 20, lr dropped 10x for the last fifth as on MNIST
AUTOATTACK_IMAGES = 1000  # the first 1000 test images: RobustBench's protocol


def study_runs(cifar10: str = "cifar10") -> dict[str, tuple[TrainConfig, float]]:
    """Each run of the study by its folder name: its training config and AutoAttack's eps."""
    found = {"mnist-pgd-4000": (mnist_run(4000, adversarial=True), 0.3),  # the pair the perception study reads
             "mnist-standard-4000": (mnist_run(4000, adversarial=False), 0.3)}
    found |= {f"mnist-pgd-{n}": (mnist_run(n, adversarial=True), 0.3) for n in MNIST_SIZES}
    cifar = dict(dataset=cifar10, arch="svhn", z_dim=256, lam=1e-2, epochs=CIFAR_EPOCHS,
                 lr_drop_epoch=CIFAR_EPOCHS * 4 // 5)
    found["cifar10-fgsm-rs"] = (TrainConfig(**cifar, adversarial=CIFAR_FGSM), 8 / 255)
    found["cifar10-standard"] = (TrainConfig(**cifar), 8 / 255)
    # is the catastrophic-overfitting warning right? Wong et al. (Sec. 5, Fig. 4) see FGSM-RS at a
    # step of 2 eps overfit, and at 1.25 eps not: the warning must fire for this run, not the first
    found["cifar10-fgsm-rs-step2x"] = (TrainConfig(**cifar, adversarial=dataclasses.replace(
        CIFAR_FGSM, step_size=16 / 255)), 8 / 255)
    return found


def mnist_run(digits: int, adversarial: bool) -> TrainConfig:
    """An MNIST run of the study on ``digits`` training digits, at the study's step budget."""
    epochs = MNIST_EPOCHS_OF_4000 * 4000 // digits
    threat = AdversarialConfig(eps=0.3, steps=40, step_size=0.01, warmup_epochs=epochs // 10) if adversarial else None
    return TrainConfig(dataset="mnist5k", lam=1e-2, train_size=digits, epochs=epochs, lr_drop_epoch=epochs * 4 // 5,
                       adversarial=threat)


def scaled_down(config: TrainConfig) -> TrainConfig:
    threat = config.adversarial
    if threat is not None and threat.method == "pgd":
        threat = dataclasses.replace(threat, steps=5, step_size=None)
    return dataclasses.replace(config, epochs=1, lr_drop_epoch=None, adversarial=threat and dataclasses.replace(
        threat, warmup_epochs=0))


def made(root: Path, name: str, cifar10: str = "cifar10") -> runs.Run:
    """The study's run ``name`` under ``root``, trained (or resumed) by the config it was started
    with, or by the study's (on the CIFAR-10 of spec ``cifar10``) where this machine has none of it."""
    folder = root / name
    config = runs.read_config(folder) if (folder / runs.CONFIG).exists() else study_runs(cifar10)[name][0]
    return train_to_end(config, folder, progress=False)


def run_study(root: Path, *, scale_down: bool = False, cifar10: str = "cifar10", only: str = "",
              device: str = "cpu") -> list[str]:
    """Trains (or resumes) every run of the study under ``root``, then measures each; returns
    the lines it printed. ``only``: the runs whose names start with it (e.g. "mnist"). A run
    measured already is only read: its robust_accuracy.json needs no checkpoint (git keeps that
    file alone in reproduce/runs), so a fresh machine does not train it again for this."""
    lines = []
    for name, (config, eps) in study_runs(cifar10).items():
        if not name.startswith(only):
            continue
        config = dataclasses.replace(scaled_down(config) if scale_down else config, device=device)
        if (root / name / ROBUST_ACCURACY).exists():
            result = read_robust_accuracy(root / name)
        else:
            result = robust_accuracy_of_run(train_to_end(config, root / name, progress=False), norm="linf", eps=eps,
                                            images=100 if scale_down else AUTOATTACK_IMAGES, device=device)
        lines += [f"{name} ({config.train_size or 'all'} training images, {config.epochs} epochs):",
                  *("  " + line for line in result.lines())]
        print("\n".join(lines[-len(result.lines()) - 1:]), flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--scale-down", action="store_true", help="1 epoch, PGD-5, AutoAttack on 100 images")
    parser.add_argument("--cifar10", default="cifar10", help="the CIFAR-10 dataset spec (its data root)")
    parser.add_argument("--only", default="", help="runs whose names start with this, e.g. mnist")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    run_study(args.root, scale_down=args.scale_down, cifar10=args.cifar10, only=args.only, device=args.device)


if __name__ == "__main__":
    main()
