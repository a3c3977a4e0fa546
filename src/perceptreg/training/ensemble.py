"""Sweep members of one architecture trained together as one vmapped ensemble.

    results = train_ensemble([(TrainConfig(lam=1e-2, seed=0), "runs/a"), (TrainConfig(lam=1.0, seed=1), "runs/b")])

Joint members that differ only in ``lam`` and ``seed`` run the same layers on batches of
the same size. Their weights are stacked along a new first dimension
(``torch.func.stack_module_state``) and one ``vmap`` of the loss over that dimension turns
each layer of every member into one grouped convolution or batched matmul: fewer, larger
kernel calls, which pays where a small model leaves the machine idle between calls (a GPU
above all). One backward pass on the sum of the members' losses gives each member its own
gradient (a member's loss does not depend on another's weights), and one fused Adam over
the stacked tensors equals one Adam per member, since Adam is elementwise.

Each member still reads its own seed's subset in its own seed's order, with its own
lambda, and ends as a normal run folder (the files `train` writes, epoch by epoch), so
`open_run`, `report`, `--resume` and the sweep's measurement read it unchanged. Its
weights equal the member trained alone up to float rounding: the grouped kernels sum in
another order than one model's kernels (tests/test_ensemble.py states the tolerance).
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path

import torch
from torch.func import functional_call, stack_module_state, vmap

from perceptreg import data as datasets
from perceptreg import runs
from perceptreg.core import models
from perceptreg.core.config import TrainConfig
from perceptreg.core.devices import amp_dtype as autocast_dtype_for
from perceptreg.core.devices import resolve_device
from perceptreg.core.errors import PerceptregError
from perceptreg.core.loss import perceptual_loss
from perceptreg.measures import evaluate
from perceptreg.runs import checkpoint
from perceptreg.training import distributed, schedule
from perceptreg.training.train import (
    FINITE_CHECK_EVERY,
    TrainResult,
    check_finite,
    epoch_row,
    epoch_shuffle,
    initial_model,
    warn_collapsed,
)

Member = tuple[TrainConfig, Path]
SHARED_BY_MEMBERS = ("lam", "seed")  # the settings members may differ in; all others are equal


def can_join(config: TrainConfig) -> bool:
    """Whether a member can train in an ensemble: joint, of one of the paper's architectures.
    Post-hoc members change phase (and frozen parts) mid-run; a custom model may hold
    buffers (BatchNorm statistics) or randomness (Dropout) that vmap would not keep per member.
    An adversarial member attacks its own model batch by batch: it trains alone (``train``)."""
    return config.mode == "joint" and config.model is None and not config.compile and config.adversarial is None


def _group_key(config: TrainConfig) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in config.to_dict().items() if k not in SHARED_BY_MEMBERS))


def jobs(members: list[Member], workers: int = 1) -> list[list[Member]]:
    """The members as units of work: every group that can share an ensemble split into
    ``workers`` near-equal ensembles (one per worker process), then every other member alone.
    The ensembles come first: they are the longest jobs, so a pool finishes them side by side."""
    groups: dict[tuple, list[Member]] = {}
    alone = []
    for config, run_dir in members:
        if can_join(config):
            groups.setdefault(_group_key(config), []).append((config, Path(run_dir)))
        else:
            alone.append([(config, Path(run_dir))])
    ensembles = [group[i::workers] for group in groups.values() for i in range(min(workers, len(group)))]
    return ensembles + alone


def train_ensemble(members: list[Member], train_data: datasets.ImageDataset | None = None,
                   test_data: datasets.ImageDataset | None = None) -> list[TrainResult]:
    """Train, or resume, ``members`` (configs equal but for lam and seed) as one ensemble.

    ``train_data`` is the full training set; each member takes its ``train_size`` subset of it
    with its own seed, as `train` does. A killed ensemble resumes: members whose folders
    got one epoch further (the kill fell between two members' checkpoints) wait while the
    others catch up, then all continue together.
    """
    members = [(config, Path(run_dir)) for config, run_dir in members]
    configs = [config for config, _ in members]
    _check_members(configs)
    if train_data is None or test_data is None:
        shape = datasets.image_shape_for(configs[0].dataset, configs[0].arch)
        train_data, test_data = datasets.load_dataset(configs[0].dataset, configs[0].data_root, shape)
    total = configs[0].total_epochs
    with contextlib.ExitStack() as locks:
        for _, run_dir in members:  # one writer per folder, as for `train`
            locks.enter_context(checkpoint.writer_lock(run_dir))
        results = {}
        while True:
            reached = [runs.completed_epochs(run_dir) for _, run_dir in members]
            lowest = min(reached)
            if lowest >= total:
                break
            behind = [m for m, epoch in zip(members, reached) if epoch == lowest]
            until = min((epoch for epoch in reached if epoch > lowest), default=total)
            for result in _train_together(behind, lowest, until, train_data, test_data):
                results[result.run_dir] = result
    return [results.get(run_dir) or _finished(config, run_dir) for config, run_dir in members]


def _check_members(configs: list[TrainConfig]) -> None:
    if not configs:
        raise PerceptregError("an ensemble needs at least one member")
    for config in configs:
        if not can_join(config):
            raise PerceptregError(f"member lam={config.lam:g}, seed={config.seed} cannot train in an ensemble: "
                                  f"only joint members of the paper's architectures can (train it alone)")
        if _group_key(config) != _group_key(configs[0]):
            raise PerceptregError("ensemble members may differ only in `lam` and `seed`; group them by "
                                  "their other settings (ensemble.jobs does)")


def _finished(config: TrainConfig, run_dir: Path) -> TrainResult:
    """A member that had completed before this call: its model and history as saved."""
    run = runs.open_run(run_dir)
    return TrainResult(run.model(config.device), list(run.metrics), run_dir)


class _Part:
    """One member inside the ensemble: its data, and a model and optimizer of its own that
    hold its slice of the stacked tensors when it is evaluated and checkpointed."""

    def __init__(self, config: TrainConfig, run_dir: Path, done: int, full_train: datasets.ImageDataset,
                 scaler: torch.amp.GradScaler, device: torch.device):
        self.config, self.run_dir = config, run_dir
        self.data = datasets.training_subset(full_train, config.train_size, config.seed)
        self.model = initial_model(config, self.data)
        runs.prepare(run_dir, config, resume=done > 0)  # checked and written only now, as `train` does
        self.model.to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=config.betas, fused=True)
        if done > 0:
            runs.load_state(run_dir, self.model, self.optimizer, scaler, world=1)
        self.history = runs.history_up_to(run_dir, done)
        # Training draws nothing from the global generator (the order has its own): each
        # member's state stays the one `train` would save with its checkpoints.
        self.rng = torch.get_rng_state()


def _train_together(members: list[Member], done: int, until: int, full_train: datasets.ImageDataset,
                    test_data: datasets.ImageDataset) -> list[TrainResult]:
    """Epochs ``done`` + 1 .. ``until`` of ``members``, which have all completed ``done``."""
    configs = [config for config, _ in members]
    first = configs[0]
    device = resolve_device(first.device)
    amp_dtype = autocast_dtype_for(device)  # as `train`: bf16 autocast on CUDA, none on CPU
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    parts = [_Part(config, run_dir, done, full_train, scaler, device) for config, run_dir in members]
    eval_data = datasets.evaluation_subset(test_data, first.eval_size)  # as `train`; members share eval_size

    # --- the stacked model: (M, ...) tensors, one fused Adam over them ---------------------------
    params, buffers = stack_module_state([part.model for part in parts])
    names = list(params)
    optimizer = torch.optim.Adam([params[n] for n in names], lr=first.lr, betas=first.betas, fused=True)
    if done > 0:
        _stack_moments(optimizer, [part.optimizer for part in parts])
    losses = _member_losses(copy.deepcopy(parts[0].model).to("meta"), first.reduction)
    lams = torch.tensor([config.lam for config in configs], dtype=torch.float32, device=device)  # (M,)
    pools, labels_pool, which, sources = _pools([part.data for part in parts])
    count = len(parts[0].data)

    for epoch in range(done + 1, until + 1):
        for group in [*optimizer.param_groups, *(g for part in parts for g in part.optimizer.param_groups)]:
            group["lr"] = schedule.lr_at(first, epoch)
        began = time.perf_counter()
        batch_size = schedule.batch_size_at(first, epoch)
        sizes = datasets.global_batch_sizes(count, batch_size)[:first.steps_per_epoch]
        # each member's order, drawn as data.batches draws it for `train`
        order = torch.stack([torch.randperm(count, generator=epoch_shuffle(c, epoch)) for c in configs])  # (M, N)
        sums = torch.zeros(len(parts), 3, device=device)  # summed (total, ce, recon) per member
        recent: list[torch.Tensor] = []
        for step, index in enumerate(order.split(batch_size, dim=1)[:len(sizes)]):  # index: (M, B)
            if step % datasets.RELEASE_EVERY == datasets.RELEASE_EVERY - 1:
                for source in sources:
                    source.release_pages()
            images = datasets.to_float(pools[which, index].to(device, non_blocking=True))  # (M, B, C, H, W)
            labels = labels_pool[which, index].to(device, non_blocking=True)  # (M, B)
            with torch.autocast(device.type, amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                member_parts = losses(params, buffers, images, labels, lams)  # (M, 3): total, ce, recon
            optimizer.zero_grad(set_to_none=True)
            # d(sum of losses)/d(member m's weights) = d(loss m)/d(member m's weights)
            scaler.scale(member_parts[:, 0].sum()).backward()
            scaler.step(optimizer)
            scaler.update()
            member_parts = member_parts.detach()
            sums += member_parts
            recent.append(member_parts[:, 0])
            if len(recent) == FINITE_CHECK_EVERY or step == len(sizes) - 1:
                _check_finite(recent, epoch, step + 1 - len(recent), parts, device)
                recent = []

        # a member's images/s: its own images over the ensemble's time (the ensemble's is M times it)
        images_per_second = sum(sizes) / (time.perf_counter() - began)
        _close_epoch(parts, epoch, (sums / len(sizes)).tolist(), [params[n] for n in names], optimizer, scaler,
                     eval_data, device, amp_dtype, images_per_second, began)
    for part in parts:
        if until == part.config.total_epochs and part.history and part.history[-1]["decoder_collapsed"]:
            warn_collapsed(part.history[-1])
    return [TrainResult(part.model, part.history, part.run_dir) for part in parts]


def _close_epoch(parts: list[_Part], epoch: int, means: list[list[float]], stacked: list[torch.Tensor], optimizer,
                 scaler, eval_data, device, amp_dtype, images_per_second: float, began: float) -> None:
    """Each member's end of ``epoch``, as `train`'s: its weights taken out of the stack,
    evaluated, its metrics line, then its checkpoint (with its own RNG state)."""
    for m, part in enumerate(parts):
        _unstack(part, m, stacked, optimizer)
        quality = evaluate(part.model, eval_data, device=device, autocast_dtype=amp_dtype)
        row = epoch_row(part.config, epoch, means[m], quality, images_per_second, time.perf_counter() - began)
        part.history.append(row)
        runs.append_metrics(part.run_dir, row)
        torch.set_rng_state(part.rng)
        runs.save_checkpoint(part.run_dir, part.model, part.optimizer, scaler, part.config,
                             part.data.classes, epoch, row, world=1)


def _member_losses(base: models.PerceptionNet, reduction: str):
    """(stacked params, stacked buffers, images (M, B, ...), labels (M, B), lams (M,)) -> (M, 3)
    losses: ``base`` (weights on the meta device) run with each member's weights."""
    def member(params, buffers, images, labels, lam):
        logits, _, recon = functional_call(base, (params, buffers), (images,))
        return torch.stack(list(perceptual_loss(logits, labels, images, recon, lam, reduction)))
    return vmap(member)


def _pools(datas: list[datasets.ImageDataset]):
    """The members' images as (U, N, C, H, W) and labels as (U, N), U the distinct subsets,
    and ``which`` (M, 1): member m's subset. Members of one seed, or all members without
    ``train_size``, share a subset; a lone one is a view, not a copy (memory-mapped data stays so)."""
    sources = list({id(d): d for d in datas}.values())
    which = torch.tensor([[next(i for i, s in enumerate(sources) if s is d)] for d in datas])
    if len(sources) == 1:
        return sources[0].images.unsqueeze(0), sources[0].labels.unsqueeze(0), which, sources
    return (torch.stack([s.images for s in sources]), torch.stack([s.labels for s in sources]), which, sources)


def _stack_moments(optimizer: torch.optim.Optimizer, member_optimizers: list[torch.optim.Optimizer]) -> None:
    """The members' resumed Adam state as the ensemble's: moments stacked, the step shared."""
    for i, param in enumerate(optimizer.param_groups[0]["params"]):
        states = [o.state[o.param_groups[0]["params"][i]] for o in member_optimizers]
        optimizer.state[param] = {k: torch.stack([s[k] for s in states]).to(param) if v.dim() > 0 else v.clone()
                                  for k, v in states[0].items()}


@torch.no_grad()
def _unstack(part: _Part, m: int, stacked: list[torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
    """Member ``m``'s weights and Adam state into its own model and optimizer."""
    for param, whole in zip(part.model.parameters(), stacked):
        param.copy_(whole[m])
        state = optimizer.state[whole]
        part.optimizer.state[param] = {k: v[m].clone() if v.dim() > 0 else v.clone() for k, v in state.items()}


def _check_finite(recent: list[torch.Tensor], epoch: int, first_batch: int, parts: list[_Part],
                  device: torch.device) -> None:
    finite = torch.isfinite(torch.stack(recent))  # (batches, M)
    if bool(finite.all()):  # the device sync, once per FINITE_CHECK_EVERY batches
        return
    m = int((~finite).any(0).nonzero()[0])
    # train's check names the batch and the member's folder, whose last checkpoint is kept
    check_finite([r[m] for r in recent], epoch, first_batch, parts[m].run_dir, distributed.Cluster(0, 1, device))
