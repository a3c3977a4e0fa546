"""The lambda sweep (the paper's Fig. 3), measured: one model per lambda and seed, plus the
post-hoc baseline, then accuracy, reconstruction, where the perception misses (error maps
and their centre-to-edge ratio), and linear and small-MLP probes on frozen z for what the task did not
ask (MNIST-strips: the side digits and both colours; CelebA: the other attributes).

    summary = run_sweep(SweepConfig(dataset="mnist-strips"), "runs/sweep")

Each model trains in its own run folder, so a killed sweep resumes model by model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from perceptreg import data as datasets
from perceptreg import figures, measures, runs
from perceptreg.adversarial import judges
from perceptreg.core import devices, models
from perceptreg.core.config import TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.display import tqdm
from perceptreg.figures import plots
from perceptreg.runs import checkpoint
from perceptreg.storage import fileio, schema
from perceptreg.storage.fileio import CheckpointError
from perceptreg.sweeps import ray_engine, workers
from perceptreg.sweeps.config import SweepConfig
from perceptreg.sweeps.summary import (
    MemberMeasures,
    SweepRecord,
    SweepRow,
    SweepSummary,
    check_rerun,
    sweep_table,
)


def parse_list(text: str, kind: type, name: str, example: str) -> tuple:
    """"1e-4,1e-2" -> (0.0001, 0.01): a comma-separated list of ``kind`` (checked later by the configs)."""
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise PerceptregError(f"`{name}` {text!r}: give {kind.__name__}s separated by commas, e.g. {example}") from None


def _variant(config: TrainConfig) -> str:
    return "post-hoc" if config.mode == "post-hoc" else f"{config.lam:g}"


def _measure(model, train_config: TrainConfig, train_data, test_data, device, max_attributes: int,
             judge=None) -> tuple[MemberMeasures, torch.Tensor]:
    """A member's measures, and its mean error map (drawn, not kept in sweep.json)."""
    # the judge reads P(x) in evaluate's forward pass, not in one of its own
    reader = None if judge is None else judges.PerceptionReader(judge)
    quality = measures.evaluate(model, test_data, device=device, each_batch=None if reader is None else reader.add)
    reading = None if reader is None else reader.result()
    # Post-hoc F never saw the reconstruction term: its CE share is 1 by construction.
    lam = 0.0 if train_config.mode == "post-hoc" else train_config.lam
    shares = measures.gradient_shares(model, train_data, lam, train_config.reduction, device=device)
    errors = measures.error_map(model, test_data, device=device)
    train_z, test_z = measures.latents(model, train_data, device=device), measures.latents(model, test_data, device=device)
    targets = {"label (the task)": (train_data.labels, test_data.labels)}
    for name in list(train_data.attributes)[:max_attributes]:
        targets[name] = (train_data.attributes[name], test_data.attributes[name])
    probes = {name: measures.linear_probe(train_z, a.long(), test_z, b.long()) for name, (a, b) in targets.items()}
    mlp_probes = {name: measures.mlp_probe(train_z, a.long(), test_z, b.long()) for name, (a, b) in targets.items()}
    judged = {} if reading is None else dict(
        judge_accuracy=reading.judge_accuracy.rate, perception_read_true=reading.perception_read_true.rate,
        feature_distance=reading.feature_distance.mean, reading=reading)
    member = MemberMeasures(test_accuracy=quality["accuracy"], test_recon_mse=quality["recon_mse"],
                            shape_spread=quality["shape_spread"], ce_share=shares["ce_share"],
                            centre_to_edge=measures.centre_to_edge_ratio(errors), probes=probes,
                            mlp_probes=mlp_probes, decoder_collapsed=quality["decoder_collapsed"], **judged)
    return member, errors


class ProbedImages(BaseModel):
    """The images the raw-pixel probes were fitted on: the sweep's data, the first seed's subset."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: str
    data_root: str | None
    train_size: int | None
    seed: int
    max_probe_images: int
    max_probe_attributes: int


class PixelProbesFile(schema.Sealed):
    """pixel_probes.json (sealed): the raw-pixel probes, linear and MLP, by attribute, and the
    images they were fitted on."""
    model_config = ConfigDict(extra="forbid")
    fitted_on: ProbedImages
    linear: dict[str, float]
    mlp: dict[str, float]


def pixel_probes(out: Path, config: SweepConfig, train_data, test_data) -> PixelProbesFile:
    """The probes on raw pixels: how much of each attribute a linear (and a small MLP)
    read-out gets from the image itself, the reference the probes on z are read against.
    They depend on the data alone, not on any model, so a sweep run again (resumed, extended
    by a lambda) reads them from pixel_probes.json instead of fitting them again; a file for
    other data, or a damaged one, is fitted again and replaced."""
    fitted_on = ProbedImages(dataset=config.dataset, data_root=config.data_root, train_size=config.train_size,
                             seed=config.seeds[0], max_probe_images=config.max_probe_images,
                             max_probe_attributes=config.max_probe_attributes)
    path = out / runs.PIXEL_PROBES
    if path.is_file():
        with contextlib.suppress(CheckpointError):  # a cache: damaged means fit again, not stop
            saved = PixelProbesFile.model_validate(schema.load_sealed_file(path, PixelProbesFile, ""))
            if saved.fitted_on == fitted_on:
                return saved
    train_pixels, test_pixels = (datasets.to_float(d.images).flatten(1) for d in (train_data, test_data))
    names = list(train_data.attributes)[:config.max_probe_attributes]
    probes = PixelProbesFile(fitted_on=fitted_on, **{
        kind: {name: probe(train_pixels, train_data.attributes[name].long(), test_pixels,
                           test_data.attributes[name].long()) for name in names}
        for kind, probe in (("linear", measures.linear_probe), ("mlp", measures.mlp_probe))})
    schema.write_sealed(path, probes.model_dump(exclude={"checksum"}))
    return probes


def probe_subset(full_train, config: SweepConfig, seed: int):
    """The images a member of ``seed`` is probed on: its own training subset (as `train`
    draws it), capped at ``max_probe_images``. A probe on frozen z needs a few thousand; a
    full-batch fit on 73k raw pixels would cost more than the training."""
    trained_on = datasets.training_subset(full_train, config.train_size, seed)
    return datasets.training_subset(trained_on, config.max_probe_images, seed)


# what a sweep writes into its folder (and pixel_probes.json, the raw-pixel probes kept for the next run)
SWEEP_FILES = (runs.SWEEP_JSON, runs.SWEEP_MD, runs.SWEEP_PERCEPTION, runs.SWEEP_ATTENTION, runs.SWEEP_PROBES)


@dataclass(frozen=True)
class SweepResult:
    """A sweep run (``run_sweep``): its folder, its summary as sweep.json holds it, the
    models it holds and the seconds this call took."""
    folder: Path
    summary: SweepSummary
    models: int
    seconds: float

    def lines(self) -> list[str]:
        """What `perceptreg sweep` prints: the table, then where it went."""
        return [sweep_table(self.summary), f"{self.models} models in {self.seconds:.0f}s; written to {self.folder}: "
                                           f"{', '.join(SWEEP_FILES)}"]

    def _repr_html_(self) -> str:
        return self.summary._repr_html_()


def run_sweep(config: SweepConfig, out_dir: str | Path | None = None, progress: bool = True,
              extend: bool = False) -> SweepResult:
    """Train (or resume) every model of the sweep, measure each, and write into ``out_dir``
    (default runs/sweep-<dataset>) the ``SWEEP_FILES``: sweep.json, sweep.md, sweep_perception.png, sweep_attention.png,
    sweep_probes.png (and pixel_probes.json, the raw-pixel probes kept for the next run). A folder
    that holds a sweep of other lambdas, seeds or epochs is refused unless ``extend`` (``summary.check_rerun``)."""
    began = time.perf_counter()
    variants = config.variants()  # checks the dataset name before anything is written
    if config.engine == "ray":  # Ray installed, its address answering: before anything is written
        ray_engine.check(config.address, config.device)
    else:  # the members train here: CUDA that this machine lacks fails now, not in the first member
        devices.resolve_device(config.device)
    judge_run = runs.open_run(config.judge) if config.judge else None  # a bad judge folder: before anything is written
    out = runs.check_output_path(out_dir or Path("runs") / f"sweep-{config.dataset.replace(':', '-').replace('/', '-')}")
    runs.check_writable(out, "sweep")  # before the data is loaded; again under the lock
    check_rerun(out, config, extend)
    members = [(train_config, out / name) for name, train_config in variants]
    with checkpoint.writer_lock(out):  # one sweep per folder; each member has its own lock too
        runs.check_writable(out, "sweep")
        _claim_members(members)
        fileio.write_json(out / runs.SWEEP_CONFIG, dataclasses.asdict(config))  # only once claimed
        summary = _train_and_measure(config, out, variants, members, judge_run, progress)
    return SweepResult(out, summary, len(variants), time.perf_counter() - began)


def _claim_members(members: list[tuple[TrainConfig, Path]]) -> None:
    """Refuse the sweep before it trains anything if a member's folder holds a model trained
    with other settings (its row would mix two sweeps), and publish each member's last epoch
    where a kill left it behind (finished members are not trained again, so nothing else would)."""
    for train_config, run_dir in members:
        if not run_dir.exists():
            continue
        with checkpoint.writer_lock(run_dir):
            runs.check_writable_for_training(run_dir, train_config, resume=runs.completed_epochs(run_dir) > 0)
            runs.settle(run_dir)


def _train_and_measure(config: SweepConfig, out: Path, variants, members, judge_run,
                       progress: bool) -> SweepSummary:
    full_train, test_data = workers.load_dataset_once(config.dataset, config.data_root,
                                                      datasets.image_shape_for(config.dataset))
    judge = judges.reading_judge(config.dataset, test_data.image_shape, len(test_data.classes),  # before training
                                 judge_run, config.device)
    # Train first (side by side with several workers; finished members are skipped), then measure.
    if config.engine == "ray":  # each member a task with the threads a local worker would have
        ray_engine.train_all(members, workers.threads_per_worker(config.workers), config.address, progress)
    else:
        workers.train_all(members, config.workers, progress, ensemble=config.ensemble)
    probed_on = {seed: probe_subset(full_train, config, seed) for seed in config.seeds}  # members share their seed's
    pixel = pixel_probes(out, config, probed_on[config.seeds[0]], test_data)
    measured: dict[str, list[MemberMeasures]] = {}
    first_models, error_maps = {}, {}
    for name, train_config in sorted(variants, key=lambda v: (v[1].mode, v[1].lam)):  # rows by lambda, post-hoc last
        model = runs.open_run(out / name).model(config.device)
        member, errors = _measure(model, train_config, probed_on[train_config.seed], test_data, config.device,
                                  config.max_probe_attributes, judge)
        if train_config.adversarial is not None:  # measured by the training's last epoch, as it trained
            member = member.model_copy(update={"test_robust_accuracy": runs.read_metrics(out / name)[-1][
                "test_robust_accuracy"]})
        measured.setdefault(_variant(train_config), []).append(member)
        first_models.setdefault(_variant(train_config), model)
        error_maps.setdefault(_variant(train_config), errors)
        if progress:
            tqdm.write(f"{name}: test accuracy {member.test_accuracy:.3f}, MSE/pixel "
                       f"{member.test_recon_mse:.4f}, shape spread {member.shape_spread:.2f}, "
                       f"CE share of F's gradient {member.ce_share:.3f}, centre/edge {member.centre_to_edge:.2f}"
                       + (f", robust accuracy {member.test_robust_accuracy:.3f}" if train_config.adversarial else "")
                       + (" [decoder collapsed]" if member.decoder_collapsed else "")
                       + (f"; {judges.format_reading(member.reading, test_data.classes)}" if judge else ""))
    summary = SweepSummary(config=SweepRecord(**dataclasses.asdict(config)),
                           rows=[SweepRow.over_seeds(variant, members) for variant, members in measured.items()],
                           per_seed=measured, pixel_probes=pixel.linear, pixel_mlp_probes=pixel.mlp,
                           judge=None if judge is None else judge.name)
    schema.write_sealed(out / runs.SWEEP_JSON, summary.model_dump(exclude={"checksum"}))
    fileio.atomic_write(out / runs.SWEEP_MD, lambda tmp: tmp.write_text(sweep_table(summary)))
    _figures(out, first_models, error_maps, test_data, summary)
    return summary


@torch.no_grad()
def _figures(out: Path, trained: dict, error_maps: dict[str, torch.Tensor], test_data, summary: SweepSummary) -> None:
    shown = datasets.spread_over_classes(test_data.labels, 8)
    x = datasets.to_float(test_data.images[shown])
    def label(variant: str) -> str:
        return variant if variant == "post-hoc" else f"lam {variant}"

    columns = [x]
    for model in trained.values():
        with models.evaluating(model):
            columns.append(model.perceive(x.to(next(model.parameters()).device)).float().cpu())
    names = ["x"] + [label(v) for v in trained]
    grid = torch.stack(columns, 1).flatten(0, 1)  # (images * columns, C, H, W), row by row
    figures.save_png(figures.image_grid(grid, len(columns), names * len(shown)), out / runs.SWEEP_PERCEPTION)
    first = {v: summary.per_seed[v][0] for v in trained}
    plots.heatmaps({f"{label(v)}, centre/edge {first[v].centre_to_edge:.2f}": error_maps[v] for v in trained},
                   out / runs.SWEEP_ATTENTION)
    rows = summary.rows
    plots.line_plot(range(len(rows)), {"linear probes on frozen z": {
        probe: [row.probes[probe].mean for row in rows] for probe in rows[0].probes}},
        out / runs.SWEEP_PROBES, xlabel="lambda", ylabel="probe test accuracy", ylim=(0, 1.02),
        xticklabels=[row.variant for row in rows])
