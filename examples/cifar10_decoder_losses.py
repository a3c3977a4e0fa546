"""Issue 35's study: does a decoder loss beyond pixel error draw objects people (and a judge)
recognise on CIFAR-10? The paper's SVHN net at z 256 and z 64, lambda 1e-2 and 1, each
trained with the paper's pixel loss and with ours, feature and deepsim, at matched budgets
(the same epochs, images and batches: the same number of steps, not the same seconds).

    python examples/cifar10_decoder_losses.py --dataset memmap:/data/cifar10-folder-32 \\
        --epochs 20 --train-size 20000 --out runs/cifar10-decoder-losses

Every model is a run folder under --out, trained by ``train_run`` (as `perceptreg train`):
run it again after a kill and each run resumes from its last epoch, finished ones are only
read. Then the dataset's CNN judge (`perceptreg train-judge`, or --judge RUN) reads every
P(x) and the table is printed and written as results.json. The comparator is each model's
own earlier layers ("self"), never the judge. Scaled down, to see it work:

    python examples/cifar10_decoder_losses.py --dataset mnist5k --epochs 1 --train-size 200 --z 32 --lams 1e-2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from perceptreg import runs
from perceptreg.adversarial.judges import read_perception, reading_judge
from perceptreg.core.config import DECODER_LOSSES
from perceptreg.views.train_run import train_run


def study(dataset: str, out: Path, epochs: int, train_size: int | None, z_dims, lams, data_root=None,
          judge=None, device: str = "cpu") -> list[dict]:
    """Train (or resume, or read) every model of the grid; one row of measures per model."""
    rows = []
    for z in z_dims:
        for lam in lams:
            for loss in DECODER_LOSSES:
                folder = out / f"z{z}-lam{lam:g}-{loss}"
                done = runs.completed_epochs(folder) if folder.is_dir() else 0
                options = {"dataset": dataset, "data_root": data_root, "z_dim": z, "lam": lam, "epochs": epochs,
                           "train_size": train_size, "decoder_loss": loss, "device": device}
                if done < epochs:
                    train_run(options, folder, resume=done > 0)
                rows.append({"z": z, "lam": lam, "loss": loss, **measures(runs.open_run(folder), judge, device)})
    return rows


def measures(run, judge, device: str) -> dict:
    """The run's accuracy and pixel error, and the judge's reading of its P(x) where there is a judge."""
    last = run.metrics[-1]
    row = {"test_accuracy": last["test_accuracy"], "test_recon_mse": last["test_recon_mse"]}
    model, test = run.model(device), run.data()[1]
    reader = reading_judge(run.config.dataset, model.input_shape, model.num_classes,
                           judge and runs.open_run(judge), device)
    if reader is not None:
        read = read_perception(model, test, reader, device=device)
        row.update(judge_on_x=read["judge_accuracy"]["rate"], judge_reads_p_as_true=read["perception_read_true"]["rate"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-root")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--z", default="256,64", help="latent sizes, comma-separated")
    parser.add_argument("--lams", default="1e-2,1", help="lambdas, comma-separated")
    parser.add_argument("--judge", help="the judge run (default: the dataset's standing judge)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/cifar10-decoder-losses"))
    args = parser.parse_args()
    rows = study(args.dataset, args.out, args.epochs, args.train_size, [int(z) for z in args.z.split(",")],
                 [float(lam) for lam in args.lams.split(",")], args.data_root, args.judge, args.device)
    for row in rows:
        print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
