"""A sweep's settings: ``SweepConfig``, one default per line, in a module without torch (the
CLI's --help shows the defaults); ``sweep.run_sweep`` runs it."""

from __future__ import annotations

from dataclasses import dataclass

from perceptreg.core.config import AdversarialConfig, DecoderLoss, TrainConfig
from perceptreg.core.errors import PerceptregError

ENGINES = ("local", "ray")
QUICK = {"train_size": 400, "epochs": 1, "seeds": (0,)}  # `sweep --quick`: a smoke run
MAX_MEMBERS = 1_000  # models in one sweep: 100x the paper's grid of 4 lambdas and post-hoc over 2 seeds


@dataclass(frozen=True)
class SweepConfig:
    dataset: str = "mnist-strips"
    lams: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e2)  # the paper's Fig. 3 grid: tiny, delicate, intermediate, large
    seeds: tuple[int, ...] = (0, 1)  # two at least, for an interval
    post_hoc: bool = True  # add the post-hoc decoder baseline (F and C alone, then D)
    epochs: int = 20  # per model, as the paper; the default MNIST-strips sweep takes about 5 min on 2 cores
    batch_size: int = 64
    train_size: int | None = None  # a stratified subset, to scale the sweep down
    device: str = "cpu"
    data_root: str | None = None
    max_probe_attributes: int = 12  # CelebA has 39 other attributes; probe the first ones
    max_probe_images: int = 10000  # probes fit on a stratified subset of at most this many training images
    workers: int | None = None  # members trained at once, in processes sharing the cores (workers.py); None: auto
    ensemble: bool | None = None  # joint members as vmapped ensembles, one per worker (ensemble.py); None: auto
    engine: str = "local"  # or "ray": members as Ray tasks, here or on a cluster (ray_engine.py)
    address: str | None = None  # engine ray: the cluster's head (default RAY_ADDRESS, else a local instance)
    judge: str | None = None  # a run folder whose model reads each member's P(x); None: natural images' standing judge
    decoder_loss: DecoderLoss = DecoderLoss()  # every member's decoder objective; the default is the paper's
    adversarial: AdversarialConfig | None = None  # every member trains adversarially (issue 36); alone, not in an ensemble

    def __post_init__(self):
        if not self.lams:
            raise PerceptregError("the sweep needs at least one lambda in `lams`")
        if not self.seeds:
            raise PerceptregError("the sweep needs at least one seed in `seeds`")
        members = len(self.seeds) * (len(self.lams) + self.post_hoc)
        if members > MAX_MEMBERS:  # before anything is built per member
            raise PerceptregError(f"`lams` and `seeds` make {members:,} models (lambdas x seeds, and post-hoc); "
                                  f"at most {MAX_MEMBERS:,} in one sweep: split it into several")
        for name, values, shown in (("seeds", self.seeds, str), ("lams", self.lams, "{:g}".format)):
            names = [shown(v) for v in values]  # a member's folder is named by these: one name, one model
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise PerceptregError(f"`{name}` names {', '.join(twice)} more than once: one model would be "
                                      f"measured as several; give each once")
        if self.engine not in ENGINES:
            raise PerceptregError(f"`engine` must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "ray" and self.ensemble:
            raise PerceptregError("`ensemble` trains with the local engine only; drop it or `engine` ray")
        if self.ensemble and self.decoder_loss.name != "pixel":
            raise PerceptregError(f"`ensemble` trains the pixel loss only; drop it for `decoder_loss` "
                                  f"{self.decoder_loss.name}")
        from perceptreg.adversarial.judges import standing_judge_dir  # torch, as below
        from perceptreg.core import devices  # torch: imported when a sweep is configured, not by --help
        from perceptreg.sweeps import workers
        from perceptreg.training.comparators import check_not_judge

        check_not_judge(self.decoder_loss.comparator, [standing_judge_dir(self.dataset), *filter(None, [self.judge])])

        self.variants()  # TrainConfig checks every setting, each lambda included, before any work
        on_cpu = devices.check_device_name(self.device).type == "cpu"
        # Auto, from bench/sweep_throughput.py (docs/guides/sweeps.md): on CPU, members side
        # by side in one-thread workers beat one process of all the cores (1.15x on 2 cores), and
        # the ensemble gains nothing; on a GPU the ensemble pays (1.6-1.8x), extra processes do not.
        if self.workers is None:
            object.__setattr__(self, "workers", min(workers.available_cores(), members) if on_cpu else 1)
        if self.ensemble is None:
            object.__setattr__(self, "ensemble", not on_cpu and self.engine == "local"
                               and self.decoder_loss.name == "pixel")
        workers.check_count(self.workers, self.engine)

    def variants(self) -> list[tuple[str, TrainConfig]]:
        """(name, training config) of every model, seed by seed."""
        from perceptreg.data.registry import training_defaults

        defaults = training_defaults(self.dataset)  # arch and lr schedule; the sweep sets epochs
        common = dict(dataset=self.dataset, arch=defaults["arch"], lr_drop_epoch=defaults.get("lr_drop_epoch"),
                      epochs=self.epochs, batch_size=self.batch_size,
                      train_size=self.train_size, device=self.device, data_root=self.data_root,
                      decoder_loss=self.decoder_loss, adversarial=self.adversarial)
        runs = []
        for seed in self.seeds:
            runs += [(f"lam{lam:g}-seed{seed}", TrainConfig(lam=lam, seed=seed, **common)) for lam in self.lams]
            if self.post_hoc:
                runs.append((f"post-hoc-seed{seed}", TrainConfig(lam=0.0, mode="post-hoc", seed=seed, **common)))
        return runs
