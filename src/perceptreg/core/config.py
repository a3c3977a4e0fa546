"""The configuration of one training run: ``TrainConfig``, a frozen dataclass with one
default per line and its reason. ``train`` reads it; the run folder stores it as config.json.

    config = TrainConfig(lam=1e-2, epochs=20)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import typing
from dataclasses import dataclass
from typing import Any

from perceptreg.core.errors import PerceptregError

# This module imports neither torch nor pydantic at the top: the CLI's --help reads these
# defaults, and stays fast (tests/cli/test_cli_startup.py).
MODES = ("joint", "post-hoc")
MAX_Z_DIM = 4096  # C's first layer and D's first deconvolution grow with z: beyond this a typo, not a study
MAX_DECODER_WIDTH = 8  # the CelebA D at 8x is about 1.4G parameters already
MAX_SIDE = 4096  # of an image's channels, height or width: beyond this a typo, not an image
MAX_EPOCHS = 10_000  # 500x the paper's 20: a typo (1e12) is refused, not run until killed
# A count of images (a subset, a batch, an evaluation sample, images attacked): 10 million is
# 60x CelebA's training set and 8x ImageNet's; a count beyond it is a typo (1e9), refused.
MAX_IMAGES = 10_000_000
MAX_LAYERS = 100  # layers of one attach run, each with its own decoder (a ViT-L has 24 blocks, a ResNet-152 50)
MAX_DECODER_PARAMS = 1_000_000_000  # one layer's decoder budget: 4 GB of float32 weights, 100x the CelebA D
REDUCTIONS = ("sum", "mean")  # of the squared error: summed per image (the paper) or averaged per pixel
# What the decoder learns to minimise: "pixel" is the paper's squared error; "feature" (a
# comparator network's features) and "deepsim" (features + a discriminator + a little pixel
# error, Dosovitskiy & Brox 2016) are ours, beside it (core.decoder_losses).
DECODER_LOSSES = ("pixel", "feature", "deepsim")
INPUT_SHAPES = {"mnist": (1, 28, 28), "svhn": (3, 32, 32), "celeba": (3, 64, 64),
                "vgg": (3, 32, 32)}  # the architectures; the paper's first: 32x32 images get svhn


def _require(checks: list[tuple[bool, str]], config=None) -> None:
    """The first failed check as an error: its message, then the values of ``config``'s
    settings that the message names (`name`), and no others."""
    for ok, message in checks:
        if not ok:
            named = [n for n in re.findall(r"`(\w+)`", message) if config is not None and hasattr(config, n)]
            shown = {n: repr(getattr(config, n)) for n in dict.fromkeys(named)}  # a long list cut: one line
            got = ", ".join(f"{n}={v if len(v) <= 60 else v[:57] + '...'}" for n, v in shown.items())
            raise PerceptregError(message + (f" (got {got})" if got else ""))



@dataclass(frozen=True)
class DecoderLoss:
    """The decoder's objective (core.decoder_losses); recorded in every run's config.

    The comparator is never the judge that measures the perception: a decoder trained to
    match the judge's features draws what that judge reads, and the judge's reading of P(x)
    would then measure the loss, not what the model keeps (training.comparators refuses it)."""

    name: str = "pixel"  # "pixel": the paper's; "feature", "deepsim": ours (DECODER_LOSSES)
    comparator: str = "self"  # "self": the model's own earlier layers; else a run folder (its encoder)
    layers: tuple[str, ...] = ()  # the comparator's modules compared; (): all its ReLUs but the deepest
    pixel_weight: float | None = None  # of the squared pixel error; None: 1 for pixel, 0.1 for feature and deepsim
    feature_weight: float = 1.0  # of the comparator's squared feature error, in the run's reduction
    adversarial_weight: float = 30.0  # deepsim: of the discriminator's hinge loss (measured scale: see docs)

    def __post_init__(self):
        _require([
            (self.name in DECODER_LOSSES, f"`decoder_loss` {self.name!r} is unknown: use one of "
                                          f"{', '.join(DECODER_LOSSES)}"),
            (all(w is None or (w >= 0 and math.isfinite(w)) for w in
                 (self.pixel_weight, self.feature_weight, self.adversarial_weight)),
             "`pixel_weight`, `feature_weight` and `adversarial_weight` must be finite numbers >= 0"),
            (bool(self.comparator), "`comparator` must be self or a run folder"),
        ], self)

    @property
    def pixel_share(self) -> float:
        """The pixel error's weight: the one given, else 1 (pixel) or 0.1 (ours: a little
        pixel error keeps colours and position, as in DeePSiM)."""
        if self.pixel_weight is not None:
            return self.pixel_weight
        return 1.0 if self.name == "pixel" else 0.1

    def describe(self) -> str:
        """One line for reports: "pixel (the paper's)", or ours with its settings."""
        if self.name == "pixel":
            return "pixel (the paper's)"
        adversarial = f", adversarial x{self.adversarial_weight:g}" if self.name == "deepsim" else ""
        layers = ",".join(self.layers) or "default layers"
        return (f"{self.name} (ours): comparator {self.comparator} [{layers}] x{self.feature_weight:g}"
                f"{adversarial}, pixel x{self.pixel_share:g}")


# Adversarial training (issue 36). The norms are the attacks' (adversarial.defaults takes them from here).
NORMS = ("linf", "l2")
ADVERSARIAL_METHODS = ("pgd", "fgsm-rs")  # Madry et al. 2018; Wong et al. 2020, "Fast is better than free"
DECODER_INPUTS = ("x", "x_adv", "both")  # what D learns to reconstruct, from its own F(.)
MAX_ADVERSARIAL_STEPS = 1_000  # 25x Madry's 40 per batch: beyond it a typo, not a training run


@dataclass(frozen=True)
class AdversarialConfig:
    """The threat model of adversarial training, recorded in the run's config.json: C learns
    on x_adv, the worst point of the ``norm`` ball of radius ``eps`` around x that ``method``
    finds; D learns to reconstruct ``decoder_input``. ``steps`` and ``step_size`` left out
    are filled in, so the run records the numbers it trained with.

        AdversarialConfig(eps=0.3)                      # PGD-10, step 2.5 * eps / 10
        AdversarialConfig(eps=8 / 255, method="fgsm-rs")  # one step of 1.25 eps from a random start
    """

    eps: float  # radius: MNIST 0.3 (Madry et al.), CIFAR-10 8/255 (L-inf) or 0.5 (L2)
    method: str = "pgd"  # "pgd" (Madry) or "fgsm-rs": FGSM from a uniform random start (Wong)
    norm: str = "linf"
    steps: int | None = None  # pgd: 10 (Madry used 40 on MNIST, 7 on CIFAR-10); fgsm-rs: 1
    step_size: float | None = None  # pgd: 2.5 * eps / steps (Madry); fgsm-rs: 1.25 * eps (Wong)
    # "x": D reconstructs x from F(x), one more pass of F per batch; "x_adv": x_adv from F(x_adv),
    # no extra pass; "both": each from its own, one batch of twice the size. Measured on MNIST
    # (bench/decoder_input.py, docs/guides/adversarial-training.md): all three within noise in
    # accuracy and robustness; "x" keeps P(x) as good as "both" at less cost.
    decoder_input: str = "x"
    # eps grows linearly from 0 to ``eps`` over this many epochs, batch by batch, the step size
    # with it: PGD training at MNIST's 0.3 from the first batch stays at chance for our budgets
    # (measured: docs/guides/adversarial-training.md); ramps as in Gowal et al. 2018.
    warmup_epochs: int = 0

    def __post_init__(self):
        _require([
            (isinstance(self.eps, (int, float)) and 0 < self.eps < math.inf,
             "`eps` of adversarial training must be a finite number > 0"),
            (self.method in ADVERSARIAL_METHODS, f"`method` of adversarial training must be one of "
                                                 f"{', '.join(ADVERSARIAL_METHODS)}"),
            (self.norm in NORMS, f"`norm` of adversarial training must be one of {', '.join(NORMS)}"),
            (self.steps is None or 1 <= self.steps <= MAX_ADVERSARIAL_STEPS,
             f"`steps` of adversarial training must be in [1, {MAX_ADVERSARIAL_STEPS}]"),
            (self.steps in (None, 1) or self.method == "pgd", "`steps` of fgsm-rs is 1; for more, method pgd"),
            (self.step_size is None or 0 < self.step_size < math.inf,
             "`step_size` of adversarial training must be a finite number > 0"),
            (self.decoder_input in DECODER_INPUTS, f"`decoder_input` must be one of {', '.join(DECODER_INPUTS)}"),
            (isinstance(self.warmup_epochs, int) and 0 <= self.warmup_epochs <= MAX_EPOCHS,
             f"`warmup_epochs` of adversarial training must be in [0, {MAX_EPOCHS}]"),
        ], self)
        steps = self.steps or (10 if self.method == "pgd" else 1)
        step = self.step_size or (2.5 * self.eps / steps if self.method == "pgd" else 1.25 * self.eps)
        object.__setattr__(self, "steps", steps)  # filled in: the run records what it trained with
        object.__setattr__(self, "step_size", step)


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist5k"  # see data.DATASETS; recorded only when data is passed in
    arch: str = "mnist"  # one of models.ARCHITECTURES (data.default_arch(dataset) fits), or "custom"
    model: str | None = None  # FILE.py:FUNCTION returning a PerceptionNet of your own F, C, D (arch "custom")
    z_dim: int | None = None  # ours: the latent's size in a paper architecture (None: the paper's; svhn 64)
    decoder_width: int = 1  # ours: D's channels times this (1: the paper's D)
    source: dict | None = None  # recorded by save_run: the run's copy of the model's source (runs.sources)
    lam: float = 1e-2  # weight of the reconstruction term; the paper sweeps 1e-4 .. 1e2
    reduction: str = "sum"  # "sum": squared error summed per image (the paper's scale); "mean": per pixel
    mode: str = "joint"  # "joint", or "post-hoc": F and C first, then D alone on frozen F
    epochs: int = 20  # the paper's 20 ("iterations" in its text); in post-hoc mode, of F and C
    decoder_epochs: int | None = None  # post-hoc only: epochs of the decoder phase (None: = epochs)
    decoder_batch_size: int | None = None  # post-hoc only: batch size of the decoder phase (None: = batch_size)
    batch_size: int = 64  # the paper gives none; 64 as in pytorch/examples' MNIST
    lr: float = 1e-3  # Adam, as in the paper
    betas: tuple[float, float] = (0.9, 0.999)
    lr_drop_epoch: int | None = None  # after this many epochs lr *= lr_drop_factor (CelebA: 20); None or 0: never
    lr_drop_factor: float = 0.1
    seed: int = 0  # model init, shuffling and the train_size subset (not the train/test split)
    train_size: int | None = None  # a stratified subset of the training set, to scale runs down
    init_output_bias: bool = True  # start D's sigmoid at the mean pixel: avoids the all-black collapse
    device: str = "cpu"  # "cuda" trains in bf16 autocast (fp16 + loss scaling where bf16 is missing)
    data_root: str | None = None  # where file-based datasets live (mnist: downloaded there)
    # post-hoc only: take F and C, frozen, from this run folder and train a new D for them,
    # so joint and post-hoc perception of the very same classifier can be compared
    classifier_from: str | None = None
    compile: bool = False  # torch.compile the step: pays on GPUs and long runs, costs ~30 s to start
    steps_per_epoch: int | None = None  # cap an epoch at this many batches (for very large datasets)
    # Test images evaluated after every epoch, a fixed stratified sample (data.evaluation_subset):
    # evaluation is a forward pass per image per epoch, and a whole large test split can cost
    # more than the epoch's training. None or 0: the whole test split.
    eval_size: int | None = 10_000
    decoder_loss: DecoderLoss = DecoderLoss()  # the decoder's objective (or its name); the default is the paper's
    adversarial: AdversarialConfig | None = None  # ours (issue 36): C learns on adversarial examples

    def __post_init__(self):
        _as_decoder_loss(self)
        _require([
            *_training_checks(self),
            (self.reduction in REDUCTIONS, f"`reduction` must be one of {', '.join(REDUCTIONS)}"),
            (self.mode in MODES, f"`mode` must be one of {', '.join(MODES)}"),
            (self.decoder_epochs is None or 1 <= self.decoder_epochs <= MAX_EPOCHS,
             f"`decoder_epochs` must be in [1, {MAX_EPOCHS:,}]"),
            (self.decoder_batch_size is None or 1 <= self.decoder_batch_size <= MAX_IMAGES,
             f"`decoder_batch_size` must be in [1, {MAX_IMAGES:,}]"),
            (self.lr_drop_epoch is None or self.lr_drop_epoch >= 0, "`lr_drop_epoch` must be >= 0 (0: never)"),
            (self.lr_drop_factor > 0 and math.isfinite(self.lr_drop_factor),
             "`lr_drop_factor` must be a finite number > 0"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "`betas` must be two numbers in [0, 1)"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1, "`steps_per_epoch` must be >= 1"),
            (self.classifier_from is None or self.mode == "post-hoc", "`classifier_from` needs mode post-hoc"),
            (self.model is None or self.arch == "custom", "`model` builds a custom architecture: set arch to custom"),
            (self.z_dim is None or 1 <= self.z_dim <= MAX_Z_DIM, f"`z_dim` must lie in 1..{MAX_Z_DIM}"),
            (1 <= self.decoder_width <= MAX_DECODER_WIDTH, f"`decoder_width` must lie in 1..{MAX_DECODER_WIDTH}"),
            (self.arch != "custom" or (self.z_dim is None and self.decoder_width == 1),
             "`z_dim` and `decoder_width` size a paper architecture; a custom model sizes itself"),
            (self.adversarial is None or self.adversarial.decoder_input == "x" or self.mode == "joint",
             "`decoder_input` x_adv or both needs mode joint (post-hoc, D learns on frozen F from x)"),
        ], self)
        _check_device(self.device)

    @property
    def classifier_epochs(self) -> int:
        """Epochs that train F and C: none when they come from another run."""
        return 0 if self.classifier_from else self.epochs

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole run: what a resumed run and a judge are measured against (runs,
        adversarial), so it stays here; what each epoch trains is ``training.schedule``'s."""
        if self.mode == "joint":
            return self.epochs
        return self.classifier_epochs + (self.decoder_epochs or self.epochs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        return from_dict(cls, values, source)


ATTACH_MODES = ("post-hoc", "joint")


@dataclass(frozen=True)
class AttachConfig:
    """The configuration of an attach run: decoders on layers of a model the user has."""

    model: str  # FILE.py:FUNCTION or package.module:FUNCTION returning the user's nn.Module (images in [0, 1] -> logits)
    layers: tuple[str, ...]  # module names, as in model.named_modules()
    weights: str | None = None  # its state dict: .safetensors, or .pt/.pth (None: only with random_weights)
    model_kwargs: tuple[tuple[str, Any], ...] = ()  # keyword arguments of the model's function
    random_weights: bool = False  # no weights file: the model as its function returns it (random, or its own)
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # per-channel mean, std the model expects
    dataset: str = "mnist5k"  # see data.DATASETS: the images the decoders learn to reconstruct
    data_root: str | None = None
    mode: str = "post-hoc"  # the model frozen; "joint": fine-tuned with CE + lam * reconstruction
    lam: float = 1e-2  # joint only: weight of the layers' mean reconstruction error
    epochs: int = 10  # decoders at 4 depths of a small CNN settle within 10 on MNIST-5k
    batch_size: int = 64
    lr: float = 1e-3  # Adam, as for training
    seed: int = 0  # decoder init (per layer) and shuffling
    train_size: int | None = None  # a stratified subset, to scale runs down
    device: str = "cpu"
    weights_sha256: str | None = None  # recorded by the run: which weights it saw
    source: dict | None = None  # recorded by the run: its copy of the model's source (runs.sources)
    decoder_params: int | None = None  # each layer's decoder at most this big, to compare layers fairly (None: default widths)
    eval_size: int | None = 10_000  # test images scored after each epoch, as in TrainConfig (0 or None: all)
    input_shape: tuple[int, int, int] | None = None  # C, H, W the model takes: folder datasets are resized to it
    decoder_loss: DecoderLoss = DecoderLoss()  # the decoders' objective; the default is the paper's

    def __post_init__(self):
        _as_decoder_loss(self)
        _require([
            (bool(self.layers), "`layers` must name at least one module"),
            (len(set(self.layers)) == len(self.layers), "`layers` must name each module once"),
            (not (self.weights and self.random_weights),
             "`weights` and `random_weights` contradict each other: give the weights file, or random weights"),
            (len(self.layers) <= MAX_LAYERS, f"`layers` must name at most {MAX_LAYERS} modules"),
            (self.mode in ATTACH_MODES, f"`mode` must be one of {', '.join(ATTACH_MODES)}"),
            (self.decoder_params is None or 1 <= self.decoder_params <= MAX_DECODER_PARAMS,
             f"`decoder_params` must be in [1, {MAX_DECODER_PARAMS:,}]"),
            (self.input_shape is None or (len(self.input_shape) == 3 and all(1 <= n <= MAX_SIDE for n in self.input_shape)),
             f"`input_shape` must be three sizes C,H,W, each in 1..{MAX_SIDE}"),
            *_training_checks(self),
        ], self)
        _check_device(self.device)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "AttachConfig":
        return from_dict(cls, values, source)


def _as_decoder_loss(config) -> None:
    """``decoder_loss`` given by name ("deepsim") or as its dict (as config.json holds it) made a ``DecoderLoss``."""
    given = config.decoder_loss
    if isinstance(given, str):
        given = {"name": given}
    if isinstance(given, dict):
        unknown = sorted(given.keys() - {f.name for f in dataclasses.fields(DecoderLoss)})
        if unknown:
            raise PerceptregError(f"`decoder_loss` has no setting {', '.join(unknown)}")
        given = DecoderLoss(**{k: tuple(v) if k == "layers" else v for k, v in given.items()})
    if not isinstance(given, DecoderLoss):
        raise PerceptregError(f"`decoder_loss` must be a DecoderLoss, its name or its dict, got {type(given).__name__}")
    object.__setattr__(config, "decoder_loss", given)


def _training_checks(config) -> list[tuple[bool, str]]:
    """The rules every config that trains shares: lam, epochs, batch size, lr, subset sizes, seed."""
    return [
        (config.lam >= 0 and math.isfinite(config.lam), "`lam` must be a finite number >= 0"),
        (1 <= config.epochs <= MAX_EPOCHS, f"`epochs` must be in [1, {MAX_EPOCHS:,}]"),
        (1 <= config.batch_size <= MAX_IMAGES, f"`batch_size` must be in [1, {MAX_IMAGES:,}]"),
        (config.lr > 0 and math.isfinite(config.lr), "`lr` must be a finite number > 0"),
        (config.train_size is None or 10 <= config.train_size <= MAX_IMAGES,
         f"`train_size` must be in [10, {MAX_IMAGES:,}]"),
        (0 <= config.seed < 2**63, "`seed` must be in [0, 2^63)"),  # torch.manual_seed takes 64 bits
        (config.eval_size is None or 0 <= config.eval_size <= MAX_IMAGES,
         f"`eval_size` must be in [0, {MAX_IMAGES:,}] (0: the whole test split)"),
    ]


def _check_device(name: str) -> None:
    from perceptreg.core.devices import check_device_name  # torch, imported when a config is made
    check_device_name(name)


# Settings a run's config.json must hold: without them a resume or a reader would fall back
# to defaults and silently train or load another run (a config.json of `{}`).
REQUIRED = {"TrainConfig": ("dataset", "arch", "lam", "reduction", "mode", "epochs", "batch_size", "lr", "seed",
                            "train_size"),
            "AttachConfig": ("model", "layers", "dataset", "mode", "epochs", "batch_size", "lr", "seed", "train_size"),
            "AdversarialConfig": ("eps", "method", "norm", "steps", "step_size", "decoder_input")}


def _nested(hint) -> type | None:
    """The config dataclass a setting holds as a JSON object of its own (``adversarial``), or None."""
    return next((arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)), None)


@functools.cache
def file_schema(cls) -> type:
    """The pydantic schema of ``cls``'s JSON form: every field's type, strictly (1.5 is no
    epoch count, "x" no seed, true no batch size), finite numbers, no unknown key."""
    from pydantic import ConfigDict, create_model
    hints = typing.get_type_hints(cls)
    required = REQUIRED.get(cls.__name__, ())

    def schema_of(hint):  # a nested config by its own strict schema (pydantic's strict mode takes only
        # instances of a dataclass, and a file holds its JSON object); an optional one (adversarial) may be None
        if dataclasses.is_dataclass(hint):
            return file_schema(hint)
        return hint if _nested(hint) is None else file_schema(_nested(hint)) | None
    fields = {f.name: (schema_of(hints[f.name]), ... if f.name in required else f.default)
              for f in dataclasses.fields(cls)}
    return create_model(f"{cls.__name__}File", __config__=ConfigDict(strict=True, extra="forbid",
                                                                     allow_inf_nan=False), **fields)


def from_dict(cls, values, source: str):
    """A config dataclass from its JSON form (lists back to tuples), checked by its schema and
    its rules; errors name ``source`` and the setting as written there, not a flag."""
    if not isinstance(values, dict):
        raise PerceptregError(f"{source}: expected a JSON object of settings, found {type(values).__name__}")

    unknown = sorted(values.keys() - {f.name for f in dataclasses.fields(cls)})
    if unknown:  # before the schema: a misspelt key is the likelier mistake than the settings it lacks
        raise PerceptregError(f"{source}: unknown config key(s) {', '.join(unknown)}")

    from pydantic import ValidationError

    def tuples(value):
        if isinstance(value, dict):  # a nested config (decoder_loss)
            return {k: tuples(v) for k, v in value.items()}
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value
    try:
        checked = file_schema(cls).model_validate({k: tuples(v) for k, v in values.items()})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        got = "" if first["type"] == "missing" else f" (got {first.get('input')!r:.40})"
        raise PerceptregError(f"{source}: setting {where}: {first['msg'].lower()}{got}; correct it, or train the "
                              f"run again") from None
    hints = typing.get_type_hints(cls)

    def built(name):  # a nested config's schema model back to its dataclass, whose rules then apply
        value, hint = getattr(checked, name), hints[name]
        nested = hint if dataclasses.is_dataclass(hint) else _nested(hint)
        if value is None or nested is None or isinstance(value, nested):  # a default left as it is
            return value
        return nested(**dict(value))
    try:
        config = cls(**{f.name: built(f.name) for f in dataclasses.fields(cls)})
    except PerceptregError as err:  # a rule of the dataclass: it names the setting as `name`
        raise PerceptregError(f"{source}: {str(err).replace('`', '')}; correct it, or train the run again") from None
    if cls is TrainConfig:
        from perceptreg.core.models import ARCHITECTURES  # torch, only once a file is read

        if config.arch not in (*ARCHITECTURES, "custom"):
            raise PerceptregError(f"{source}: setting arch: {config.arch!r} is no architecture (one of "
                                  f"{', '.join(ARCHITECTURES)}, or custom); correct it, or train the run again")
    return config
