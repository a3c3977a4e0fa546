"""Decoder losses beyond pixel error through `train`, attach, sweep and the CLI (issue 35)."""

import json

import pytest
import torch
from click.testing import CliRunner
from helpers import USER_NET
from safetensors.torch import load_file

from perceptreg import data, runs
from perceptreg.attaching.fitting import fit_decoders
from perceptreg.cli import main
from perceptreg.core.attached import attach
from perceptreg.core.config import DecoderLoss, TrainConfig
from perceptreg.runs import user_models
from perceptreg.sweeps.config import SweepConfig
from perceptreg.training import distributed
from perceptreg.training.train import DiscriminatorDivergedError, check_finite, check_game, train

QUICK = dict(batch_size=32, eval_size=50)
# 160 digits and 1 or 2 epochs are too few to draw: the collapse warning says so, as it should
pytestmark = pytest.mark.filterwarnings("ignore:the decoder has collapsed")


@pytest.fixture(scope="module")
def tiny(mnist5k):
    train_data, test_data = mnist5k
    return data.training_subset(train_data, 160, 0), data.training_subset(test_data, 50, 0)


def run(tmp_path, tiny, name, epochs, resume=False, **settings):
    config = TrainConfig(epochs=epochs, decoder_loss=DecoderLoss("deepsim"), **QUICK, **settings)
    return train(config, tmp_path / name, train_data=tiny[0], test_data=tiny[1], resume=resume, progress=False)


@pytest.mark.slow
def test_deepsim_resumes_bit_identically_with_its_discriminator(tmp_path, tiny, one_thread):
    whole = run(tmp_path, tiny, "whole", 2)
    run(tmp_path, tiny, "parts", 1)
    resumed = run(tmp_path, tiny, "parts", 2, resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    a, b = (load_file(str(tmp_path / n / "state-000002.safetensors")) for n in ("whole", "parts"))
    discriminator = [k for k in a if k.startswith("extra.heads.")]
    assert discriminator and a.keys() == b.keys()  # its weights (and its moments, in the optimizer's) are kept
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng"))
    assert whole.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]
    meta = json.loads((tmp_path / "whole" / "model.json").read_text())
    # the MNIST encoder's ReLUs are modules 1, 3, 5 and 7: every one but the deepest is compared
    assert meta["decoder_loss"] == "deepsim (ours): comparator self [1,3,5] x1, adversarial x30, pixel x0.1"
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["decoder_loss"]["name"] == "deepsim"


def test_a_post_hoc_decoder_learns_with_the_feature_loss(tmp_path, tiny, one_thread):
    result = train(TrainConfig(epochs=1, decoder_epochs=1, mode="post-hoc", lam=0.0, decoder_loss="feature", **QUICK),
                   tmp_path / "p", train_data=tiny[0], test_data=tiny[1], progress=False)
    assert [r["phase"] for r in result.history] == ["classifier", "decoder"]
    assert result.history[1]["train_recon"] > 0 and result.history[1]["train_ce"] is None


def test_training_names_the_comparator_layers_it_resolved(tmp_path, tiny, one_thread, capsys):
    train(TrainConfig(epochs=1, decoder_loss="feature", **QUICK), tmp_path / "named", train_data=tiny[0],
          test_data=tiny[1])  # the config names no layers: the default, all the encoder's ReLUs (1, 3, 5, 7) but the last
    assert "decoder loss: feature (ours): comparator self [1,3,5] x1, pixel x0.1\n" in capsys.readouterr().out


def row(epoch, collapsed, spread):
    return {"epoch": epoch, "decoder_collapsed": collapsed, "recon_spread": spread}


def test_a_game_lost_to_the_discriminator_is_one_line_and_the_last_good_epoch_stays(tmp_path):
    check_game(row(1, True, 0.05), [], tmp_path)  # never drawn yet (a fresh decoder): not the game's fault
    check_game(row(3, False, 0.4), [row(1, True, 0.05), row(2, False, 0.3)], tmp_path)
    with pytest.raises(DiscriminatorDivergedError) as raised:
        check_game(row(3, True, 0.02), [row(1, True, 0.05), row(2, False, 0.3)], tmp_path)
    assert "after epoch 3 the decoder draws nearly one image for all" in str(raised.value)
    assert "the checkpoint of epoch 2" in str(raised.value) and "\n" not in str(raised.value)


def test_a_non_finite_game_names_the_discriminator(tmp_path):
    cluster = distributed.join("cpu")
    with pytest.raises(DiscriminatorDivergedError, match="the discriminator diverged .* at epoch 2, batch 2; the "
                                                         "checkpoint of epoch 1"):
        check_finite([torch.tensor(1.0), torch.tensor(float("nan"))], 2, 0, tmp_path, cluster, discriminator=True)


def test_attached_decoders_learn_with_deepsim_on_the_users_own_layers(digits, one_thread):
    seen = attach(user_models.build(f"{USER_NET}:build"), ["stem", "fc1"], (1, 28, 28))
    rows = fit_decoders(seen, digits[0].subset(torch.arange(64)), epochs=1, progress=False,
                        decoder_loss=DecoderLoss("deepsim", layers=("stem.2", "block1")))
    assert set(rows[0]["train_recon"]) == {"stem", "fc1"} and all(v > 0 for v in rows[0]["train_recon"].values())
    assert all(p.grad is None for p in seen.model.parameters())  # the user's model stays frozen, bit for bit


def test_the_sweep_passes_the_decoder_loss_to_every_member():
    sweep = SweepConfig(lams=(1e-2,), seeds=(0,), decoder_loss=DecoderLoss("feature"))
    assert all(config.decoder_loss.name == "feature" for _, config in sweep.variants())
    with pytest.raises(Exception, match="`ensemble` trains the pixel loss only"):
        SweepConfig(lams=(1e-2,), seeds=(0,), decoder_loss=DecoderLoss("feature"), ensemble=True)


def test_the_help_names_pixel_as_the_papers_and_the_others_as_ours():
    for command in ("train", "attach", "sweep"):
        text = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
        assert "pixel, the paper's squared pixel error [default]; ours: feature" in text, command


@pytest.mark.parametrize("extra, words", [
    (["--decoder-loss", "sharp"], "'sharp' is not one of 'pixel', 'feature', 'deepsim'"),
    (["--decoder-loss", "feature", "--comparator-layers", "nope"], "the model has no layer 'nope'"),
    (["--comparator-layers", "1"], "give --decoder-loss (feature or deepsim) with them"),
])
def test_bad_decoder_loss_options_are_one_error_line(tmp_path, extra, words):
    result = CliRunner().invoke(main, ["train", "--train-size", "100", "--epochs", "1", "--quiet",
                                       "--out", str(tmp_path / "r"), *extra])
    assert result.exit_code != 0 and result.output.count("Error:") == 1 and words in result.output, result.output
    assert not (tmp_path / "r" / runs.CONFIG).exists()


def test_the_judge_is_refused_as_the_comparator(tmp_path, trained_run, monkeypatch):
    monkeypatch.setenv("PERCEPTREG_JUDGES", str(tmp_path / "judges"))
    (tmp_path / "judges").mkdir()
    (tmp_path / "judges" / "mnist5k").symlink_to(trained_run)  # the standing judge of the run's images
    result = CliRunner().invoke(main, ["train", "--train-size", "100", "--epochs", "1", "--quiet", "--out",
                                       str(tmp_path / "r"), "--decoder-loss", "feature", "--comparator",
                                       str(trained_run)])
    assert result.exit_code == 1 and result.output.count("Error:") == 1, result.output
    assert "is the judge that measures the perception" in result.output
