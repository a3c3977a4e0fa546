"""Adversarial training (issue 36): the threat model's config, the examples, the loss the
decoder input picks, bit-identical resume, and the bad input refused in one line."""

import dataclasses
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import load_file
from torch import nn

from perceptreg.core import models
from perceptreg.core.config import AdversarialConfig, TrainConfig
from perceptreg.core.errors import PerceptregError
from perceptreg.core.loss import reconstruction_error
from perceptreg.training import adversarial_training
from perceptreg.training.adversarial_training import Adversary, adversarial_loss, batch_seed
from perceptreg.training.train import train

TINY = dict(train_size=128, batch_size=32, eval_size=40, epochs=2)


@pytest.fixture(scope="module")
def tiny(small_mnist):
    train_data, test_data = small_mnist
    return train_data, test_data.subset(torch.arange(40))


@pytest.mark.parametrize("settings, message", [
    (dict(eps=0.0), "`eps` of adversarial training must be a finite number > 0"),
    (dict(eps=-0.3), "`eps`"),
    (dict(eps=math.nan), "`eps`"),
    (dict(eps=math.inf), "`eps`"),
    (dict(eps=0.3, steps=0), r"`steps` of adversarial training must be in \[1, 1000\]"),
    (dict(eps=0.3, norm="l1"), "`norm` of adversarial training must be one of linf, l2"),
    (dict(eps=0.3, method="trades"), "`method` of adversarial training must be one of pgd, fgsm-rs"),
    (dict(eps=0.3, method="fgsm-rs", steps=3), "`steps` of fgsm-rs is 1"),
    (dict(eps=0.3, step_size=0.0), "`step_size`"),
    (dict(eps=0.3, decoder_input="z"), "`decoder_input` must be one of x, x_adv, both"),
])
def test_bad_threat_models_are_refused_in_one_line(settings, message):
    with pytest.raises(PerceptregError, match=message) as caught:
        AdversarialConfig(**settings)
    assert "\n" not in str(caught.value)


def test_the_config_records_the_numbers_it_trains_with():
    assert (AdversarialConfig(eps=0.3).steps, AdversarialConfig(eps=0.3).step_size) == (10, pytest.approx(0.075))
    fgsm = AdversarialConfig(eps=0.3, method="fgsm-rs")
    assert (fgsm.steps, fgsm.step_size) == (1, pytest.approx(0.375))  # Wong et al.: 1.25 eps
    config = TrainConfig(adversarial=AdversarialConfig(eps=0.3, steps=40, step_size=0.01))
    assert config.to_dict()["adversarial"] == {"eps": 0.3, "method": "pgd", "norm": "linf", "steps": 40,
                                               "step_size": 0.01, "decoder_input": "x", "warmup_epochs": 0}
    assert TrainConfig.from_dict(config.to_dict()) == config
    older = config.to_dict()
    del older["adversarial"]["warmup_epochs"]  # a run from before the warm-up: none
    assert TrainConfig.from_dict(older) == config


def test_a_misspelt_threat_model_in_config_json_is_refused():
    values = TrainConfig(adversarial=AdversarialConfig(eps=0.3)).to_dict()
    values["adversarial"]["epsilon"] = 0.3
    with pytest.raises(PerceptregError, match="setting adversarial.epsilon: extra inputs"):
        TrainConfig.from_dict(values)
    del values["adversarial"]["eps"], values["adversarial"]["epsilon"]
    with pytest.raises(PerceptregError, match="setting adversarial.eps: field required"):
        TrainConfig.from_dict(values)


def test_post_hoc_decoders_learn_from_x():
    with pytest.raises(PerceptregError, match="`decoder_input` x_adv or both needs mode joint"):
        TrainConfig(mode="post-hoc", adversarial=AdversarialConfig(eps=0.3, decoder_input="both"))


def test_examples_lie_in_the_ball_raise_the_loss_and_differ_by_batch(tiny):
    torch.manual_seed(0)
    model = models.build("mnist", 10)
    images, labels = tiny[0].images[:16].float() / 255, tiny[0].labels[:16]
    adversary = Adversary(AdversarialConfig(eps=0.3, steps=3), seed=0)
    adv = adversary.examples(model, images, labels, epoch=1, step=0, batches=4)
    assert (adv - images).abs().max() <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model.classify(adv), labels) > F.cross_entropy(model.classify(images), labels)
    assert torch.equal(adv, adversary.examples(model, images, labels, epoch=1, step=0, batches=4))  # seeded: resumable
    assert not torch.equal(adv, adversary.examples(model, images, labels, epoch=1, step=1, batches=4))
    assert not torch.equal(adv, adversary.examples(model, images, labels, epoch=2, step=0, batches=4))
    seeds = {batch_seed(0, epoch, step) for epoch in range(1, 50) for step in range(200)}
    assert len(seeds) == 49 * 200


def test_warmup_ramps_eps_linearly_batch_by_batch_then_holds(tiny):
    adversary = Adversary(AdversarialConfig(eps=0.3, steps=3, warmup_epochs=2), seed=0)
    scales = [adversary.warmup_scale(epoch, step, batches=4) for epoch in (1, 2, 3) for step in range(4)]
    assert scales == pytest.approx([1 / 8, 2 / 8, 3 / 8, 4 / 8, 5 / 8, 6 / 8, 7 / 8, 1, 1, 1, 1, 1])
    assert Adversary(AdversarialConfig(eps=0.3), seed=0).warmup_scale(1, 0, 4) == 1
    torch.manual_seed(0)
    model = models.build("mnist", 10)
    images, labels = tiny[0].images[:16].float() / 255, tiny[0].labels[:16]
    adv = adversary.examples(model, images, labels, epoch=1, step=0, batches=4)
    assert (adv - images).abs().max() <= 0.3 / 8 + 1e-6  # the ball of the ramped eps


def test_a_negative_or_fractional_warmup_is_refused():
    for bad in (-1, 1.5):
        with pytest.raises(PerceptregError, match="`warmup_epochs` of adversarial training must be in"):
            AdversarialConfig(eps=0.3, warmup_epochs=bad)


class _Recording(nn.Module):
    def __init__(self, module, seen):
        super().__init__()
        self.module, self.seen = module, seen

    def forward(self, z):
        self.seen.append(z.detach())
        return self.module(z)


@pytest.mark.parametrize("decoder_input", ["x", "x_adv", "both"])
def test_decoder_input_picks_what_d_reconstructs(decoder_input):
    torch.manual_seed(0)
    model = models.build("mnist", 10)
    images, adv = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    labels = torch.tensor([0, 1, 2, 3])
    config = TrainConfig(lam=0.5, adversarial=AdversarialConfig(eps=0.3, decoder_input=decoder_input))
    decoder, seen = model.decoder, []
    model.decoder = _Recording(decoder, seen)
    parts = adversarial_loss(model, images, adv, labels, "joint", config)
    model.decoder = decoder
    decoded = {"x": images, "x_adv": adv, "both": torch.cat([images, adv])}[decoder_input]
    with torch.no_grad():  # D saw F of the decoder input, and of nothing else
        assert len(seen) == 1 and torch.allclose(seen[0], model.encoder(decoded))
    with torch.no_grad():
        errors = {"x": reconstruction_error(images, model(images)[2]),
                  "x_adv": reconstruction_error(adv, model(adv)[2])}
        errors["both"] = (errors["x"] + errors["x_adv"]) / 2  # one batch of twice the size: the mean
        ce = F.cross_entropy(model.classify(adv), labels)  # C always learns on x_adv
    assert parts.recon.item() == pytest.approx(errors[decoder_input].item(), rel=1e-5)
    assert parts.ce.item() == pytest.approx(ce.item(), rel=1e-5)
    assert parts.total.item() == pytest.approx(ce.item() + 0.5 * errors[decoder_input].item(), rel=1e-5)


def test_post_hocs_classifier_phase_is_ce_on_x_adv_alone_and_runs_no_decoder():
    torch.manual_seed(0)
    model = models.build("mnist", 10)
    images, adv = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    labels = torch.tensor([0, 1, 2, 3])
    config = TrainConfig(mode="post-hoc", lam=0.5, adversarial=AdversarialConfig(eps=0.3))
    decoder, seen = model.decoder, []
    model.decoder = _Recording(decoder, seen)
    parts = adversarial_loss(model, images, adv, labels, "classifier", config)
    model.decoder = decoder
    with torch.no_grad():
        ce = F.cross_entropy(model.classify(adv), labels)
    assert seen == [] and parts.recon.item() == 0  # no decoder yet
    assert parts.ce.item() == pytest.approx(ce.item(), rel=1e-6) and parts.total.item() == parts.ce.item()


@pytest.mark.slow  # 3 short runs: 20 s alone, over a minute on a busy machine
def test_resume_after_a_stop_reaches_the_same_weights(tmp_path, tiny):
    config = TrainConfig(**TINY, adversarial=AdversarialConfig(eps=0.3, steps=2))
    whole = train(config, tmp_path / "whole", train_data=tiny[0], test_data=tiny[1], progress=False)
    train(TrainConfig(**{**TINY, "epochs": 1}, adversarial=config.adversarial), tmp_path / "parts",
          train_data=tiny[0], test_data=tiny[1], progress=False)
    resumed = train(config, tmp_path / "parts", resume=True, train_data=tiny[0], test_data=tiny[1], progress=False)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("whole", "parts"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["test_robust_accuracy"] for r in whole.history] == [r["test_robust_accuracy"] for r in resumed.history]


@pytest.mark.slow
def test_adversarial_training_changes_the_weights(tmp_path, tiny):
    plain = train(TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "plain", train_data=tiny[0], test_data=tiny[1],
                  progress=False)
    robust = train(TrainConfig(**{**TINY, "epochs": 1}, adversarial=AdversarialConfig(eps=0.3, method="fgsm-rs")),
                   tmp_path / "robust", train_data=tiny[0], test_data=tiny[1], progress=False)
    assert "test_robust_accuracy" not in plain.history[0] and 0 <= robust.history[0]["test_robust_accuracy"] <= 1
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("plain", "robust"))
    assert not all(torch.equal(a[k], b[k]) for k in a)


class _Detached(nn.Module):
    def forward(self, x):
        return x.detach()


def test_a_model_without_input_gradient_is_refused_before_the_folder(tmp_path, tiny):
    torch.manual_seed(0)
    model = models.build("mnist", 10)
    model.encoder = nn.Sequential(_Detached(), model.encoder)
    config = TrainConfig(**TINY, adversarial=AdversarialConfig(eps=0.3))
    with pytest.raises(PerceptregError, match="needs the gradient of the model's logits") as caught:
        train(config, tmp_path / "run", model=model, train_data=tiny[0], test_data=tiny[1], progress=False)
    assert "\n" not in str(caught.value) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("clean, robust, warned", [(0.9, 0.0, True), (0.9, 0.02, False), (0.15, 0.0, False)])
def test_overfitting_is_no_robustness_with_clean_accuracy(clean, robust, warned):
    assert adversarial_training.overfitted(clean, robust, num_classes=10) == warned  # chance: 10 %


@pytest.mark.parametrize("method, robust_of_model, warmup, warned", [
    ("fgsm-rs", False, 0, True), ("fgsm-rs", True, 0, False), ("pgd", False, 0, False),
    ("fgsm-rs", False, 1, False)])  # epoch 1 of a 1-epoch warm-up: C has not met the full eps yet
def test_catastrophic_overfitting_is_warned_in_one_line(monkeypatch, tiny, method, robust_of_model, warmup, warned):
    # a model right on every clean image, and on the attacked ones (robust) or on none
    adversary = Adversary(AdversarialConfig(eps=0.3, method=method, warmup_epochs=warmup), seed=0)
    model = models.build("mnist", 10)
    monkeypatch.setattr(adversary, "attack", lambda *args, **kwargs: lambda images, labels: images + 1)
    labels = adversarial_training.datasets.evaluation_subset(tiny[1], 500).labels
    monkeypatch.setattr(model, "classify", lambda x: F.one_hot(
        labels if robust_of_model or x.max() <= 1 else (labels + 1) % 10, 10).float())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = adversary.measure(model, tiny[1], 1, torch.device("cpu"))
    assert row == {"test_robust_accuracy": 1.0 if robust_of_model else 0.0, "catastrophic_overfitting": warned}
    lines = [str(w.message) for w in caught if "catastrophic overfitting" in str(w.message)]
    assert len(lines) == (1 if warned else 0) and all("\n" not in line for line in lines)
    if warned:
        assert "epoch 1" in lines[0] and "is 0.0% (clean 100.0%)" in lines[0] and "method pgd" in lines[0]


@pytest.mark.parametrize("args, line", [
    (["--adversarial", "pgd", "--adv-eps", "0"], "Error: eps of adversarial training must be a finite number > 0"),
    (["--adversarial", "pgd", "--adv-eps", "inf"], "Error: eps of adversarial training"),
    (["--adversarial", "pgd", "--adv-eps", "0.3", "--adv-steps", "0"], "Error: steps of adversarial training"),
    (["--adversarial", "pgd"], "Error: --adversarial needs --adv-eps"),
    (["--adv-eps", "0.3"], "Error: --adv-* and --decoder-input set up adversarial training"),
    (["--adversarial", "pgd", "--adv-eps", "0.3", "--adv-norm", "l1"], "Error: Invalid value for '--adv-norm'"),
    (["--adversarial", "pgd", "--adv-eps", "0.3", "--adv-warmup-epochs", "-1"],
     "Error: warmup_epochs of adversarial training must be in [0, 10000]"),
    (["--adv-warmup-epochs", "2"], "Error: --adv-* and --decoder-input set up adversarial training"),
])
def test_train_refuses_bad_threat_models_in_one_error_line(tmp_path, args, line):
    from perceptreg.cli import main

    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "run"), *args])
    assert result.exit_code in (1, 2) and result.output.strip().startswith(line), result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_the_gradient_check_reads_a_real_model(tiny):
    model = models.build("mnist", 10)
    adversarial_training.check_input_gradient(model, tiny[0].images[:4].float() / 255)  # no error


def test_a_sweep_passes_the_threat_model_to_every_member_which_trains_alone():
    from perceptreg.sweeps.config import SweepConfig
    from perceptreg.training.ensemble import can_join

    threat = AdversarialConfig(eps=0.3, method="fgsm-rs")
    sweep = SweepConfig(dataset="mnist5k", lams=(1e-2, 1.0), seeds=(0,), adversarial=threat, workers=1)
    members = sweep.variants()
    assert len(members) == 3 and all(config.adversarial == threat for _, config in members)
    # workers and Ray tasks get a member as its JSON form
    assert all(TrainConfig.from_dict(config.to_dict()) == config for _, config in members)
    assert not any(can_join(config) for _, config in members)  # each attacks its own model: no vmapped ensemble
    assert can_join(dataclasses.replace(members[0][1], adversarial=None))
