"""Tiny models and datasets whose numbers can be worked out by hand, shared by the tests."""

import json
from pathlib import Path

import torch
from torch import nn

from perceptreg import data
from perceptreg.core import models


def tiny_dataset():
    # 4 images of 1x1x2: pixel values 0 or 255, labels 0/1
    images = torch.tensor([[0, 255], [255, 0], [255, 255], [0, 0]], dtype=torch.uint8).reshape(4, 1, 1, 2)
    return data.ImageDataset(images, torch.tensor([0, 1, 0, 0]), ("a", "b"), "tiny")


def net_with_decoder(decoder):
    # z = the two pixels; C says "b" when the first pixel is bright
    classifier = nn.Linear(2, 2)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        classifier.bias.copy_(torch.tensor([0.5, -0.5]))
    return models.PerceptionNet(nn.Flatten(), classifier, decoder, (1, 1, 2))



def linear_perception_net(decoder):
    net = net_with_decoder(decoder)
    with torch.no_grad():
        net.classifier.weight.copy_(torch.eye(2))
        net.classifier.bias.zero_()
    return net  # logits = the two pixels


def batch_norm_dropout_net():
    """Batch norm and dropout: a net whose train mode gives other logits than its eval mode."""
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5))
    decoder = nn.Sequential(nn.Linear(16, 4), nn.Sigmoid(), nn.Unflatten(1, (1, 2, 2)))
    net = models.PerceptionNet(encoder, nn.Linear(16, 3), decoder, (1, 2, 2))
    with torch.no_grad():  # running statistics unlike a batch's own, so train mode shows
        net.encoder[2].running_mean.fill_(0.3)
        net.encoder[2].running_var.fill_(2.0)
    return net


def reference_set():
    # 1x1x2 images; class 0 brighter on the left (as the linear nets read), class 1 on the right
    pixels = torch.tensor([[0, 255], [10, 245], [255, 0], [245, 10], [128, 128]], dtype=torch.uint8)
    return data.ImageDataset(pixels.reshape(5, 1, 1, 2), torch.tensor([1, 1, 0, 0, 0]), ("a", "b"), "ref")


def pixels(rows, labels):
    images = torch.tensor(rows).mul(255).round().to(torch.uint8).reshape(-1, 1, 1, 2)
    return data.ImageDataset(images, torch.tensor(labels), ("a", "b"), "tiny")


def identity_classifier():
    """logits = the two pixels of a 1x1x2 image: class 0 when x0 > x1."""
    linear = nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(2))
        linear.bias.zero_()
    return nn.Sequential(nn.Flatten(), linear)


def image(a, b):
    return torch.tensor([[[[a, b]]]])


# A classifier written outside the library, as a user would (`--model USER_NET:build`).
USER_NET = str(Path(__file__).with_name("user_net.py"))


def route(call, follow, path):
    """Run ``call()`` and return its route: every perceptreg function, in call order, that
    was handed ``follow`` (a run object) or ``path`` (its folder) as an argument, as
    "module.function"; generators are counted where they start."""
    import inspect
    import sys

    stops = []

    def watch(frame, event, arg):
        if event != "call" or not frame.f_globals.get("__name__", "").startswith("perceptreg"):
            return
        code = frame.f_code
        if code.co_flags & inspect.CO_GENERATOR and frame.f_lasti >= 0 and frame.f_back is None:
            return
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        values = [frame.f_locals.get(name) for name in names]
        if any((follow is not None and v is follow) or (isinstance(v, Path) and v == path) for v in values):
            stops.append(f"{frame.f_globals['__name__']}.{code.co_qualname}")

    sys.setprofile(watch)
    try:
        call()
    finally:
        sys.setprofile(None)
    return stops


class ShiftAttack:
    """A torchattacks-style attack of a user's own (``--attack helpers:ShiftAttack``): every
    pixel ``shift`` brighter, clamped; ``shape`` and ``dtype`` break what it returns on purpose."""

    def __init__(self, model, eps=0.1, shift=None, shape=None, dtype=None):
        self.model, self.eps = model, eps
        self.shift, self.shape, self.dtype = eps if shift is None else shift, shape, dtype

    def __call__(self, images, labels):
        out = (images + self.shift).clamp(0, 1) if self.shift >= 0 else images + self.shift
        if self.shape:
            out = out.reshape(self.shape)
        return out.to(self.dtype) if self.dtype else out


class ProgressBars:
    """Stands in for tqdm (monkeypatched into a module): records each bar's total, description
    and the steps it was advanced, since tqdm itself skips redraws and a closed bar leaves no line."""

    def __init__(self):
        self.bars = []

    def __call__(self, iterable=None, total=None, desc="", **options):
        bar = {"total": total, "desc": desc, "steps": 0, "postfix": None}
        self.bars.append(bar)

        class Bar:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return None

            def __iter__(self):
                for item in iterable:
                    bar["steps"] += 1
                    yield item

            def update(self, n=1):
                bar["steps"] += n

            def set_postfix_str(self, text):
                bar["postfix"] = text

            def close(self):
                return None
        return Bar()


def rewrite_state(run, change):
    """Damage a run's state.json on purpose, then seal it again (``manifest.sealed``), so the
    test reaches the damage it names instead of state.json's own checksum."""
    import json

    from perceptreg.storage.schema import sealed

    path = Path(run) / "state.json"
    state = json.loads(path.read_text())
    state.pop("checksum", None)
    change(state)
    path.write_text(json.dumps(sealed(state)))


def colour_folder(root: Path, per_class: int = 4) -> str:
    """A folder dataset of 32x32 colour images, ``per_class`` of a cat and of a dog in each of
    train/ and test/ (a colour each, shades along the index): ``folder:ROOT``."""
    from PIL import Image

    for split in ("train", "test"):
        for c, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (32, 32), (200 * c, 20 * i, 60)).save(root / split / name / f"{i}.png")
    return f"folder:{root}"


def read_sealed(path):
    """A results file as a command wrote it, asserting it is sealed (``schema.write_sealed``)
    with the checksum of what it holds."""
    import json

    from perceptreg.storage.schema import sealed

    values = json.loads(Path(path).read_text())
    assert values["checksum"] == sealed({k: v for k, v in values.items() if k != "checksum"})["checksum"], path
    return values


def edits_file(results: dict[str, dict], eps: float = 0.2) -> dict:
    """interpolation_metrics.json's content around hand-written mean-direction readings, by
    run ({run: {"target", "alphas", "directions": {"mean": {"flip_curve", "flip_interval"}}}}):
    the keys its schema requires and these readings leave out, filled in (each reader's
    interval its value, the per-image direction the mean one)."""
    import dataclasses

    from perceptreg.adversarial.attacks import AttackSettings

    def completed(entry: dict) -> dict:
        mean = entry["directions"]["mean"]
        curve = mean["flip_curve"]
        interval = {reader: [[v, v] for v in values] for reader, values in curve.items()} | mean["flip_interval"]
        direction = {"flip_curve": curve, "flip_interval": interval}
        return {"images": 10, **entry, "directions": {
            "per-image": direction, "mean": {**direction, "fitted_on": {"images": 10, "source": None}}}}
    return {"attack": dataclasses.asdict(AttackSettings(eps)), "runs": {k: completed(v) for k, v in results.items()}}


def sweep_file(per_seed: dict[str, list[dict]], **config) -> dict:
    """sweep.json's content around hand-written members by lambda ({variant: [measures of
    each seed]}): each member's measures its schema requires and these leave out filled in
    (``MEMBER``), the rows their means, the config ``config`` over SweepConfig's defaults."""
    import dataclasses

    from perceptreg.sweeps.config import SweepConfig
    from perceptreg.sweeps.summary import MemberMeasures, SweepRecord, SweepRow, SweepSummary

    def completed(given: dict) -> MemberMeasures:
        reading = given.get("reading") and {**READING, **given["reading"]}
        return MemberMeasures(**{**MEMBER, **given, **({"reading": reading} if reading else {})})
    members = {v: [completed(m) for m in seeds] for v, seeds in per_seed.items()}
    record = SweepRecord(**{**{f.name: f.default for f in dataclasses.fields(SweepConfig)}, **config})
    return SweepSummary(config=record, rows=[SweepRow.over_seeds(v, m) for v, m in members.items()], per_seed=members,
                        pixel_probes={}, pixel_mlp_probes={}, judge=None).model_dump(mode="json", exclude={"checksum"})


MEMBER = {"test_accuracy": 0.5, "test_recon_mse": 0.02, "shape_spread": 1.0, "ce_share": 0.9, "centre_to_edge": 1.0,
          "decoder_collapsed": False, "probes": {}, "mlp_probes": {}}
SPREAD = {"mean": 0.5, "low": 0.4, "high": 0.6, "n": 100}  # a mean over images with its interval
READING = {"judge": "3-NN pixels", "images": 100, "judge_accuracy": {"rate": 0.5, "low": 0.4, "high": 0.6, "n": 100},
           "perception_read_true": {"rate": 0.5, "low": 0.4, "high": 0.6, "n": 100},
           "model_accuracy": {"rate": 0.5, "low": 0.4, "high": 0.6, "n": 100}, "feature_distance": SPREAD,
           "unrelated_distance": SPREAD, "pixel_mse": SPREAD, "perception_reads": [50, 50]}


def layer_row(**given) -> dict:
    """A layers.json row as attach writes it: 4 of 10 images attacked successfully, the judge
    reading P(x) right 9 of 10 times, 1 of the 4 P(x_adv) as adversarial, 2 as true, 0 of
    the x_adv as adversarial and 3 as true; ``given`` over these."""
    from perceptreg.measures import rate

    def reading(adversarial: int, true: int, n: int) -> dict:
        return {"adversarial_label": rate(adversarial, n), "true_label": rate(true, n),
                "other": rate(n - adversarial - true, n), "count": n}
    return {"name": "stem", "shape": [16, 14, 14], "decoder_parameters": 1234, "test_recon_mse": 0.0123,
            "attack_success_rate": 0.4, "successful_attacks": 4, "judge": "3-NN pixels", "accuracy_on_p": rate(9, 10),
            "p_adv_read_as_adversarial": 0.25, "p_adv_read_as_true": 0.5, "detector_roc_auc": 0.75,
            "p_adv_read": reading(1, 2, 4), "x_adv_read": reading(0, 3, 4), "detector_roc_auc_interval": [0.5, 1.0],
            **given}


def layers_file(*rows: dict, eps: float = 0.2, **given) -> dict:
    """layers.json's content around ``rows`` (``layer_row``): post-hoc, 90 % accurate, PGD on 10 images."""
    attack = {"attack": "PGD", "eps": eps, "steps": 2, "norm": "linf", "alpha": None, "seed": 0, "loss": "ce",
              "restarts": 1, "schedule": "constant", "best_iterate": False, "images": 10}
    return {"mode": "post-hoc", "decoder_loss": "pixel (the paper's)", "accuracy": 0.9, "accuracy_before": 0.9, "attack": attack, "layers": list(rows),
            **given}


# --- results files by hand ------------------------------------------------------------------------

WRITTEN = Path(__file__).parent / "adversarial" / "data"  # attack and noise metrics as evaluate-attack wrote them
BY_NAME = {"runs", "judges", "reached", "judges_on_P(x_adv)", "at_fpr", "tests", "baselines"}  # keyed by a name
BY_NAME_TWICE = {"undetected"}  # by side, then by false-positive rate
MEASURED_IF_ASKED = {"paired", "adaptive", "adaptive_search", "convergence", "attack_options", "checksum"}


def completed(partial, template):
    """A results file written by hand with only what a test reads (``partial``), completed
    with every other key its schema asks for from ``template``, a file a command wrote:
    what the test names keeps its value, the rest is the template's."""
    if isinstance(partial, list):
        return [completed(item, template[0]) for item in partial]
    if not isinstance(partial, dict) or not isinstance(template, dict):
        return partial
    out = {key: value for key, value in template.items() if key not in MEASURED_IF_ASKED and key not in partial}
    for key, value in partial.items():
        like = template.get(key)
        if key in BY_NAME and isinstance(value, dict):
            first = next(iter(like.values()))
            out[key] = {name: completed(item, first) for name, item in value.items()}
        elif key in BY_NAME_TWICE:
            first = next(iter(next(iter(like.values())).values()))
            out[key] = {side: {name: completed(item, first) for name, item in by.items()} for side, by in value.items()}
        else:
            out[key] = completed(value, like) if like is not None else value
    return out


def attack_metrics(partial: dict) -> dict:
    """attack_metrics.json by hand: ``partial`` completed (``completed``) as evaluate-attack writes it."""
    import json

    return completed(partial, json.loads((WRITTEN / "attack_metrics_f9ee0de.json").read_text()))


def noise_metrics(partial: dict) -> dict:
    """noise_metrics.json by hand: ``partial`` completed as `attack --from-noise` writes it."""
    import json

    return completed(partial, json.loads((WRITTEN / "noise_metrics_f9ee0de.json").read_text()))


def metrics_row(epoch: int, **given) -> dict:
    """A metrics.jsonl row of `train` as its schema has it (runs.metrics_rows), ``given`` changed."""
    return {"epoch": epoch, "phase": "joint", "lr": 0.001, "train_loss": 1.5, "train_ce": 0.5, "train_recon": 100.0,
            "test_accuracy": 0.5, "test_recon_mse": 0.02, "seconds": 1.0, **given}


def metrics_lines(*epochs: int) -> str:
    """metrics.jsonl holding a row of each of ``epochs``."""
    return "".join(json.dumps(metrics_row(epoch)) + "\n" for epoch in epochs)
