"""Issue 35's study: does a decoder loss beyond pixel error draw objects people (and judges)
recognise on CIFAR-10? The paper's SVHN net at z 256 and z 64, lambda 1e-2 and 1, each
trained with the paper's pixel loss and with ours, feature and deepsim, at matched budgets
(the same epochs, images and batches: the same number of steps, not the same seconds).

    python -m reproduce.decoder_loss_study --dataset memmap:/data/cifar10-folder-32 \\
        --epochs 20 --train-size 20000 --out runs/cifar10-decoder-losses

Every model is a run folder under --out, trained by ``train_to_end`` with `perceptreg train`'s options:
run it again after a kill and each run resumes from its last epoch, finished ones are only
read. Each finished model is then measured (once: a rerun keeps what was measured of the same
model with the same judges) as `perceptreg perceive` and `perceptreg invert` measure it: H's consistency on P(x), the latent and a perceptual distance, the spread of
nearby latents' perceptions, every judge's reading of P(x) (the dataset's CNN judge, or
--judge RUN, plus --more-judges), and the judge's reading of the inversion x' of the same
latent, a reference without any decoder. The table is printed and written as
results.json; per (z, lambda) a grid draws x, then P(x) and x' of each loss
(grid-z256-lam1.png). The comparator of feature and deepsim is each model's own earlier
layers ("self"); feature-vgg is the feature loss through a VGG the study trains first (OUT/comparator,
lambda 0, seed 2; --comparator-arch), a comparator network perceptreg keeps as a run. Neither is
ever a judge: the standing judge is a VGG of seed 1. Scaled down, to see it work:

    python -m reproduce.decoder_loss_study --dataset mnist5k --epochs 1 --train-size 200 --z 32 --lams 1e-2 \\
        --comparator-arch mnist --comparator-epochs 1 --read-size 100 --inverted 10
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from perceptreg import data, runs
from perceptreg.adversarial.judges import reading_judge, standing_judge_dir
from perceptreg.core.config import DECODER_LOSSES, DecoderLoss
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import evaluating
from perceptreg.figures.grids import Cell, image_grid, save_png
from perceptreg.figures.inversion import invert
from perceptreg.figures.perception import perceive
from perceptreg.storage import fileio
from perceptreg.training.launch import launch
from perceptreg.training.train import train_to_end

RESULTS = "results.json"  # the study's table, a row per model, in --out
COMPARATOR = "comparator"  # the comparator network feature-vgg learns through, a run in --out
NOT_YET = object()  # a reader not looked for yet (None: looked for, there is none)
SHOWN = 10  # images per grid: one of each class (invert's images are spread round-robin over the classes)


def variants(out: Path, comparator_arch: str) -> dict[str, dict]:
    """The decoders of the grid by their folder's name: each decoder loss with the model's own
    earlier layers as its comparator, and the feature loss through the study's comparator
    network (feature-vgg)."""
    return {**{loss: {"decoder_loss": loss} for loss in DECODER_LOSSES},
            f"feature-{comparator_arch}": {"decoder_loss": DecoderLoss("feature", comparator=str(out / COMPARATOR))}}


def trained(options: dict, folder: Path) -> runs.Run:
    """The run of ``options`` (`perceptreg train`'s) in ``folder``, with all its epochs
    (``train_to_end``); the standing judge, which reads it later, is refused as its comparator."""
    config = launch(options, folder).config
    return train_to_end(config, folder, judges=(standing_judge_dir(config.dataset),))


def study(dataset: str, out: Path, epochs: int, train_size: int | None, z_dims, lams, data_root=None,
          judge=None, more_judges=(), read_size: int = 1000, inverted: int = 100, device: str = "cpu",
          comparator_arch: str = "vgg", comparator_epochs: int = 10, losses=None) -> list[dict]:
    """Train (or resume, or read) the comparator, then every model of the grid (``losses``: of
    those variants only; None: all); one row of measures per model, merged into OUT/results.json
    as each (z, lambda) is done. A (z, lambda) whose rows there were measured of the same models
    with the same judges and sizes (``measured_with``), its grid drawn, is kept as it is."""
    chosen = variants(out, comparator_arch)
    unknown = sorted(set(losses or ()) - set(chosen))
    if unknown:
        raise PerceptregError(f"--losses: no variant {unknown[0]!r}; the study's are {', '.join(chosen)}")
    chosen = {name: decoder for name, decoder in chosen.items() if losses is None or name in losses}
    common = {"dataset": dataset, "data_root": data_root, "train_size": train_size, "device": device}
    if f"feature-{comparator_arch}" in chosen:  # a classifier (lambda 0: no decoder term), not the judge's seed 1
        trained({**common, "arch": comparator_arch, "lam": 0.0, "seed": 2, "epochs": comparator_epochs},
                out / COMPARATOR)
    rows, reader = [], NOT_YET  # the judge that reads x' and the grids: one for every model, as they share the data
    kept = {_key(row): row for row in (fileio.read_json(out / RESULTS) if (out / RESULTS).exists() else [])}
    for z in z_dims:
        for lam in lams:
            models = {name: trained({**common, "z_dim": z, "lam": lam, "epochs": epochs, **decoder},
                                    out / f"z{z}-lam{lam:g}-{name}") for name, decoder in chosen.items()}
            settings = {name: measured_with(run, judge, more_judges, read_size, inverted) for name, run in models.items()}
            grid = out / f"grid-z{z}-lam{lam:g}.png"
            known = [kept.get((z, lam, name)) for name in models]
            if grid.exists() and all(row and row.get("measured_with") == settings[row["loss"]] for row in known):
                print(f"z {z}, lambda {lam:g}: measured already, with these judges and sizes ({RESULTS})", flush=True)
                rows += known
                continue
            drawn = {}  # variant -> (its run, the inversions of the grid's images)
            for name, run in models.items():
                print(f"measuring {run.path.name}: perception, judges, inversion", flush=True)
                if reader is NOT_YET:
                    reader = main_reader(run, judge, device)
                row, x_prime = measures(run, judge, more_judges, read_size, inverted, reader, device)
                rows.append({"z": z, "lam": lam, "loss": name, **row, "measured_with": settings[name]})
                drawn[name] = run, x_prime[:SHOWN]
            comparison_grid(drawn, grid, reader, device)
            write_results(out / RESULTS, rows)  # each (z, lambda) as it is measured: a kill keeps those done
    return rows


def measured_with(run: runs.Run, judge, more_judges, read_size: int, inverted: int) -> dict:
    """What a row's measures depend on: the model (its model.json, which changes with every
    checkpoint), the judges and the sizes; a row measured with the same is not measured again."""
    model = hashlib.sha256(fileio.guarded(run.path / runs.MODEL_META).read_bytes()).hexdigest()
    return {"model": model, "judge": judge and str(judge), "more_judges": [str(j) for j in more_judges],
            "read_size": read_size, "inverted": inverted}


def measures(run: runs.Run, judge, more_judges, read_size: int, inverted: int, reader, device: str
             ) -> tuple[dict, torch.Tensor]:
    """The run's accuracy, what `perceive` and `invert` measure of its perception (``judge``
    and ``more_judges`` reading P(x)), and the inversions x' (of ``inverted`` test images spread
    round-robin over the classes), which ``reader`` (``main_reader``; None: none) reads."""
    last = run.metrics[-1]
    seen = perceive(run, n=SHOWN, judge=judge, more_judges=more_judges, read_size=read_size, device=device)
    m = seen.measures
    row = {"test_accuracy": last["test_accuracy"], "test_recon_mse": last["test_recon_mse"],
           "h_consistency": m.h_consistency.rate, "latent_distance": m.latent_distance.mean,
           "perceptual_distance": m.perceptual_distance.mean,
           "unrelated_perceptual_distance": m.unrelated_perceptual_distance.mean, "spread": m.spread.mean,
           "judges": {j.judge: {"on_x": j.accuracy_on_x.rate, "p_read_true": j.p_read_true.model_dump(),
                                "p_read_true_where_h_right": j.p_read_true_where_right and j.p_read_true_where_right.rate,
                                "blurred_read_true": j.blurred_read_true and j.blurred_read_true.rate,
                                "p_bias": j.p_bias} for j in m.judges}}
    x_prime = invert(run, n=inverted, device=device)
    row.update(inversion_h_agrees=x_prime.h_agrees.rate, inversion_seconds=x_prime.seconds)
    if reader is not None:
        labels = run.data()[1].labels
        labels = labels[data.spread_over_classes(labels, inverted)]
        row["judge_reads_inversion_as_true"] = (reader(x_prime.inverted.to(device)).cpu() == labels).double().mean().item()
    return row, x_prime.inverted


def main_reader(run: runs.Run, judge, device: str):
    """``judge``'s model (default: the dataset's standing CNN judge) as a reader of ``run``'s
    images; None where there is none (grey digits without ``judge``)."""
    test = run.data()[1]
    return reading_judge(run.config.dataset, test.image_shape, len(test.classes), judge and runs.open_run(judge), device)


@torch.no_grad()
def comparison_grid(drawn: dict[str, tuple[runs.Run, torch.Tensor]], out: Path, reader, device: str) -> Path:
    """One column per class: x, then for each loss its P(x) and its inversion x' of the same
    images, each captioned with ``reader``'s reading (``main_reader``; None: uncaptioned)."""
    first = next(iter(drawn.values()))[0]
    test = first.data()[1]
    index = data.spread_over_classes(test.labels, SHOWN)
    x, labels = data.to_float(test.images[index]).to(device), test.labels[index]
    shown, names = [x], ["x"]
    for loss, (run, x_prime) in drawn.items():
        model = run.model(device)
        with evaluating(model):
            shown.append(model.perceive(x).float())
        shown.append(x_prime.to(device))
        names += [f"P(x) {loss}", f"x' {loss}"]
    cells = []
    for name, images in zip(names, shown):
        read = reader(images).cpu() if reader is not None else labels
        cells += [Cell(name, caption=f"judge: {test.classes[r]}" if reader else "", wrong=bool(r != t),
                       alt=f"{name} of a test {test.classes[t]}") for r, t in zip(read.tolist(), labels.tolist())]
    title = (f"{first.config.dataset}, {first.config.arch} net z {first.config.z_dim}, lambda {first.config.lam:g}: test images x, the "
             f"perception P(x) of each decoder loss and the inversion x' of the same latent (no decoder)")
    return save_png(image_grid(torch.cat(shown), SHOWN, cells, title=title), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-root")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--z", default="256,64", help="latent sizes, comma-separated")
    parser.add_argument("--lams", default="1e-2,1", help="lambdas, comma-separated")
    parser.add_argument("--judge", help="the judge run (default: the dataset's standing judge)")
    parser.add_argument("--more-judges", action="append", default=[], help="another judge run (repeatable)")
    parser.add_argument("--comparator-arch", default="vgg", help="the architecture of the comparator network")
    parser.add_argument("--comparator-epochs", type=int, default=10, help="its training epochs")
    parser.add_argument("--losses", help="only these variants, comma-separated (default: all)")
    parser.add_argument("--read-size", type=int, default=1000, help="test images the judges read")
    parser.add_argument("--inverted", type=int, default=100, help="test images inverted per model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/cifar10-decoder-losses"))
    args = parser.parse_args()
    if args.inverted < SHOWN:
        parser.error(f"--inverted must be at least {SHOWN}: the grid shows that many inversions")
    try:
        rows = study(args.dataset, args.out, args.epochs, args.train_size, [int(z) for z in args.z.split(",")],
                     [float(lam) for lam in args.lams.split(",")], args.data_root, args.judge, args.more_judges,
                     args.read_size, args.inverted, args.device, args.comparator_arch,
                     args.comparator_epochs, args.losses and args.losses.split(","))
    except PerceptregError as err:
        parser.error(str(err))
    for row in rows:
        print(json.dumps(row))


def _key(row: dict) -> tuple:
    return row["z"], row["lam"], row["loss"]


def write_results(path: Path, rows: list[dict]) -> None:
    """Merge ``rows`` into results.json by (z, lam, loss): studies of other grids in the same
    folder (say one process per lambda) keep their rows."""
    kept = fileio.read_json(path) if path.exists() else []  # bounded, and a FIFO or folder named
    merged = {_key(row): row for row in kept} | {_key(row): row for row in rows}
    text = json.dumps(sorted(merged.values(), key=_key), indent=1)
    fileio.atomic_write(path, lambda tmp: tmp.write_text(text))  # a kill leaves the old table or the new


if __name__ == "__main__":
    main()
