"""An attach run, start to end: build the user's model, attach decoders to its layers, fit
them (or fine-tune the model), measure every layer under attack, and write the run folder
with its layers.json (this module is that file's home)."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from perceptreg import data as datasets
from perceptreg import figures, runs
from perceptreg.adversarial.attacks import AttackSettings
from perceptreg.adversarial.evaluation import evaluate_layers_under_attack
from perceptreg.adversarial.judges import KNNJudge, architecture, standing_judge_dir
from perceptreg.attaching.defaults import attack_images_for, work_line
from perceptreg.attaching.fitting import evaluate_layers, fine_tune, fit_decoders
from perceptreg.attaching.judging import attach_judge
from perceptreg.attaching.normalization import advice, expected_normalization, own_statistics
from perceptreg.attaching.results import LayersAttack, LayerTable, layers_table
from perceptreg.core.attached import attach
from perceptreg.core.config import MAX_IMAGES, AttachConfig
from perceptreg.core.devices import resolve_device
from perceptreg.core.errors import PerceptregError
from perceptreg.measures.consistency import measure_perception
from perceptreg.runs import checkpoint, user_models
from perceptreg.storage import fileio
from perceptreg.storage.schema import write_sealed


def read_layers(run: runs.Run) -> LayerTable:
    """The validated layers.json of an attach run (read once per run object)."""
    return LayerTable.model_validate(run.read_json(runs.LAYERS_JSON, LayerTable, "write it again with `perceptreg attach`"))


NEAR_CHANCE = 1.5  # a given model below 1.5x chance accuracy is most likely wrongly loaded or fed
ACCURACY_SAMPLE = 1000  # test images the given model's accuracy is checked on before fitting


@dataclass(frozen=True)
class AttachResult:
    """An attach run (``run_attach``): its folder, its measures as layers.json holds them
    (``LayerTable``: mode, accuracy, the attack, a row per layer), and the seconds it took."""
    run_dir: Path
    layers: LayerTable
    seconds: float

    @property
    def accuracy(self) -> float:
        """The model's test accuracy after the fitting (after fine-tuning, in joint mode)."""
        return self.layers.accuracy

    @property
    def accuracy_before(self) -> float:
        """Before the fitting: the same as ``accuracy`` in post-hoc mode, where the model is frozen."""
        return self.layers.accuracy_before

    def lines(self) -> list[str]:
        """What `perceptreg attach` prints: the layers' table, the accuracy, the folder."""
        tuned = f" (before fine-tuning {self.accuracy_before:.2%})" if self.layers.mode == "joint" else ""
        return [layers_table(self.layers), f"test accuracy {self.accuracy:.2%}{tuned}; decoder loss "
                f"{self.layers.decoder_loss}; {self.seconds:.1f}s",
                f"run folder: {self.run_dir} ({runs.LAYERS_JSON}, {runs.LAYERS_PNG}, {runs.LAYERS_ATTACK_PNG})"]

    def _repr_html_(self) -> str:
        return self.layers._repr_html_()


def run_attach(config: AttachConfig, run_dir: str | Path, attack: AttackSettings = AttackSettings(),
               attack_images: int | None = None, progress: bool = True, say: Callable[[str], None] = print,
               judge: runs.Run | str | Path | None = None) -> AttachResult:
    """Build the user's model (``config.model``, ``config.weights``), attach decoders to its
    layers, fit them (or fine-tune, in joint mode), and write the run folder: config.json,
    metrics.jsonl, model.safetensors + model.json, layers.json, layers.png, layers_attack.png,
    and source/ (a copy of the model's file, so that the run opens from any folder).
    model.json comes last: a run without it never finished and may be started again.
    ``say`` prints what the user should know before the long work: the given model's accuracy,
    the work's sizes, the judge and its accuracy on x (``attaching.judging``).
    ``attack_images``: default the dataset's (``registry.attach_sizes``: 500 on digits, 100 on natural images).
    ``judge``: the run (or its folder) whose model reads the perceptions (default: ``attaching.judging``'s).
    ``attack`` without eps: the radius of the dataset's images (``AttackSettings.for_images``)."""
    began = time.perf_counter()
    run_dir = Path(run_dir)
    if attack_images is not None and not 1 <= attack_images <= MAX_IMAGES:  # beyond the test split: a typo
        raise PerceptregError(f"`attack_images` must be in [1, {MAX_IMAGES:,}], got {attack_images}")
    runs.check_writable(run_dir, "attached")  # before any work; again under the lock
    judge = None if judge is None else runs.open_run(judge)
    device = str(resolve_device(config.device))
    model, config = _given_model(config)
    train_data, test_data = _attach_data(config)
    if config.train_size and config.train_size > len(train_data):  # the whole split: recorded so, not as a size
        config = dataclasses.replace(config, train_size=None)
    attack = attack.for_images(config.dataset, train_data.image_shape)
    attack_images = attack_images or attack_images_for(config.dataset, train_data.image_shape[0])
    eval_data = datasets.evaluation_subset(test_data, config.eval_size)  # what each epoch is scored on
    seen = attach(model, config.layers, train_data.image_shape, normalize=config.normalize,
                  pixel_mean=train_data.pixel_mean(), seed=config.seed, decoder_params=config.decoder_params)
    if seen.num_classes != len(train_data.classes):  # its labels would index other logits, or none
        raise PerceptregError(f"{config.model}: the model gives {seen.num_classes} logits, but {config.dataset} has "
                              f"{len(train_data.classes)} classes; give a dataset of the model's classes, in its order")
    _check_given_accuracy(seen, eval_data, config, device, say, train_data)
    pool = test_data.subset(datasets.spread_over_classes(test_data.labels, min(attack_images, len(test_data))))
    say(work_line(config, len(train_data), len(eval_data), len(pool), train_data.image_shape[0]))
    reader, line = attach_judge(config.dataset, train_data, pool, judge, device, architecture(config))
    say(line)
    with checkpoint.writer_lock(run_dir):  # one writer per run folder, taken once the inputs are checked
        config = runs.prepare_attached(run_dir, config)  # with its copy of the model's source
        judges = (standing_judge_dir(config.dataset), *([judge.path] if judge else []))  # never the comparator
        history, before = _fit(seen, config, train_data, eval_data, device, progress, judges)
        for row in history:
            runs.append_metrics(run_dir, row)
        summary, adversarial = _measure(seen, config, history, before, attack, pool, reader, train_data, device,
                                        progress)
        write_sealed(run_dir / runs.LAYERS_JSON, summary.model_dump(exclude={"checksum"}))
        _draw(run_dir, seen, pool, adversarial, device)
        runs.save_attached(run_dir, seen, config, train_data.classes)  # model.json last: the run is complete
    return AttachResult(run_dir, summary, time.perf_counter() - began)


def _measure(seen, config: AttachConfig, history: list[dict], before: float | None, attack: AttackSettings, pool,
             reader, train_data, device: str, progress: bool) -> tuple[LayerTable, torch.Tensor]:
    """layers.json's table (the fitting's last test numbers, each layer under ``attack`` on
    ``pool`` read by ``reader``, and its consistency measures), and the adversarial images."""
    under_attack, adversarial = evaluate_layers_under_attack(
        seen, attack.build(seen, progress=progress), pool, reader, device=device, progress=progress)
    # the judges of the consistency measures: the run's judge (if any) and the 3-NN pixel judge, of another design
    panel = [j for j in (reader,) if j is not None]
    panel += [] if isinstance(reader, KNNJudge) else [KNNJudge(train_data, device=device)]
    perceived = [measure_perception(seen.at(name), pool, panel, device=device) for name in seen.layers]
    last = history[-1]  # measured on the test set after the last epoch: the run's numbers
    layers = [{"name": d["layer"], "shape": list(d["activation_shape"]), "decoder_parameters": d["decoder_parameters"],
               "test_recon_mse": last["test_recon_mse"][d["layer"]], **measured, "perception": perception}
              for d, measured, perception in zip(seen.describe(), under_attack, perceived)]
    accuracy = last["test_accuracy"]
    _require_finite_measures(layers, len(pool), accuracy)  # before the schema, which would refuse a NaN rate
    summary = LayerTable(mode=config.mode, decoder_loss=config.decoder_loss.describe(),
                         accuracy_before=accuracy if before is None else before, accuracy=accuracy,
                         attack=LayersAttack(attack="PGD", **dataclasses.asdict(attack), images=len(pool)),
                         layers=layers)
    return summary, adversarial


def _given_model(config: AttachConfig) -> tuple[torch.nn.Module, AttachConfig]:
    """The user's model with its weights, and the config with their digest recorded."""
    if not config.weights and not config.random_weights:
        raise PerceptregError("`weights`: no weights file; give the model's state dict (.safetensors, .pt or .pth), "
                              "or `random_weights` to perceive the model as its function returns it (random "
                              "weights, or those it loads itself)")
    model = user_models.build(config.model, config.model_kwargs)
    if config.weights:
        fileio.load_weights(model, user_models.read_weights(config.weights), Path(config.weights))
        config = dataclasses.replace(config, weights_sha256=datasets.digest_of(Path(config.weights)))
    not_finite = [name for name, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]
    if not_finite:  # every measure of the run would be NaN
        raise PerceptregError(f"{config.weights or config.model}: {not_finite[0]} holds NaN or inf"
                              f"{f' (and {len(not_finite) - 1} more tensors)' if len(not_finite) > 1 else ''}; "
                              f"give weights whose values are all finite")
    return model, config


def _attach_data(config: AttachConfig):
    """(train, test): the training subset of ``config.train_size``, and the whole test split."""
    train_data, test_data = datasets.load_dataset(config.dataset, config.data_root, config.input_shape)
    if config.input_shape and train_data.image_shape != tuple(config.input_shape):  # only folders are resized
        raise PerceptregError(f"`input_shape` {','.join(map(str, config.input_shape))}: {config.dataset}'s images are "
                              f"{','.join(map(str, train_data.image_shape))} and only folder: datasets are resized; "
                              f"give a dataset of the model's input shape")
    return datasets.training_subset(train_data, config.train_size, config.seed), test_data


def _fit(seen, config: AttachConfig, train_data, eval_data, device: str, progress: bool,
         judges=()) -> tuple[list[dict], float | None]:
    """The fitting's history, and the accuracy before it where fine-tuning changed the model."""
    settings = dict(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                    device=device, progress=progress, test_data=eval_data, decoder_loss=config.decoder_loss,
                    judges=judges)
    if config.mode == "joint":
        tuned = fine_tune(seen, train_data, lam=config.lam, **settings)
        return tuned["history"], tuned["accuracy_before"]
    return fit_decoders(seen, train_data, **settings), None  # the model is frozen: the same before and after


def _draw(run_dir: Path, seen, pool, adversarial: torch.Tensor, device: str) -> None:
    """layers.png (x, then P at each layer) and layers_attack.png (x, x_adv, then P_layer(x_adv))."""
    shown = torch.arange(min(10, len(pool)))
    x = datasets.to_float(pool.images[shown]).to(device)
    figures.save_png(figures.layers_grid(seen, x, pool.labels[shown], pool.classes), run_dir / runs.LAYERS_PNG)
    figures.save_png(figures.layers_grid(seen, x, pool.labels[shown], pool.classes, adversarial[shown]),
                     run_dir / runs.LAYERS_ATTACK_PNG)


def _require_finite_measures(layers: list[dict], images: int, accuracy: float) -> None:
    """layers.json holds numbers or the run stops: a NaN reads as a measure in every table."""
    for row in layers:
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise PerceptregError(
                f"layer {row['name']}: {', '.join(bad)} came out NaN or infinite ({row['successful_attacks']} of "
                f"{images} attacks succeeded, test accuracy {accuracy:.1%}); "
                f"layers.json is not written. Check the model's weights and the decoders' fit (a lower `lr`)")


def _check_given_accuracy(seen, test_data, config: AttachConfig, device: str, say: Callable[[str], None],
                          train_data) -> None:
    """Say the given model's accuracy before the fitting starts, and warn (at once, not
    after the fitting) when it is near chance: the weights, or the input normalization (one
    of the dataset's usual ones, or ``train_data``'s own statistics), are the likely causes."""
    sample = test_data.subset(datasets.spread_over_classes(test_data.labels, min(ACCURACY_SAMPLE, len(test_data))))
    accuracy = evaluate_layers(seen, sample, device=device, layers=[])["accuracy"]
    say(f"your model's accuracy on {len(sample)} test images of {config.dataset}, before fitting: {accuracy:.1%}")
    chance = 1 / seen.num_classes
    guess = None if config.normalize else expected_normalization(seen, sample, config.dataset, accuracy, device,
                                                                 own_statistics(train_data))
    if guess is not None:  # before the work: every measure of the run would be of inputs it never saw
        raise PerceptregError(advice(guess, accuracy, len(sample), config.dataset))
    if accuracy < NEAR_CHANCE * chance:
        causes = ("`random_weights` was given" if config.random_weights and not config.weights
                  else f"the weights {config.weights} may not be this model's")
        say(f"Warning: the model is near chance ({accuracy:.1%}, chance {chance:.1%}): {causes}, or it expects "
            f"normalized inputs (`normalize` MEAN,STD per channel)")
