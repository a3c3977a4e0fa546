import pytest
import torch
from user_net import net

from perceptreg import data
from perceptreg.attaching.fitting import evaluate_layers, fine_tune, fit_decoders
from perceptreg.core.attached import attach
from perceptreg.core.errors import PerceptregError

LAYERS = ["stem", "block1", "block2", "fc1"]


pytestmark = pytest.mark.usefixtures("one_thread")


# --- fitting ------------------------------------------------------------------------------------

def test_one_pass_equals_fitting_each_layer_alone(digits):
    train = digits[0].subset(torch.arange(200))
    together = attach(net(), ["stem", "fc1"], (1, 28, 28))
    fit_decoders(together, train, epochs=1, batch_size=50, seed=3, progress=False)
    for layer in ("stem", "fc1"):
        model = net()
        torch.rand(11)  # the global RNG elsewhere: a decoder's init depends on (seed, layer) alone
        alone = attach(model, [layer], (1, 28, 28))
        fit_decoders(alone, train, epochs=1, batch_size=50, seed=3, progress=False)
        mine, theirs = alone.decoder(layer).state_dict(), together.decoder(layer).state_dict()
        assert all(torch.allclose(mine[k], theirs[k], atol=1e-5) for k in mine)
    untrained = attach(net(), ["stem"], (1, 28, 28)).decoder("stem").state_dict()
    assert not torch.allclose(untrained["2.weight"], together.decoder("stem").state_dict()["2.weight"])


@pytest.mark.slow  # over 2 s alone: the fast lane leaves it out
def test_fitting_learns_to_reconstruct(digits):
    train, test = digits
    seen = attach(net(), LAYERS, (1, 28, 28))
    history = fit_decoders(seen, train, epochs=3, batch_size=32, progress=False, test_data=test)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert set(history[-1]["test_recon_mse"]) == set(LAYERS)
    assert history[-1]["train_recon"]["stem"] < history[0]["train_recon"]["stem"]
    images = data.to_float(test.images)
    baseline = (images - data.to_float(train.images).mean()).square().mean().item()  # the mean pixel
    quality = evaluate_layers(seen, test)
    assert quality["recon_mse"] == pytest.approx(history[-1]["test_recon_mse"])
    assert quality["recon_mse"]["stem"] < 0.5 * baseline
    assert 0.0 <= quality["accuracy"] <= 1.0


@pytest.mark.slow
def test_fine_tune_trains_the_model_and_freezes_it_again(digits):
    train, test = digits
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = attach(model, ["block2"], (1, 28, 28))
    result = fine_tune(seen, train, lam=1e-3, epochs=2, batch_size=32, progress=False, test_data=test)
    assert result["accuracy_after"] > result["accuracy_before"] + 0.2
    assert result["accuracy_after"] == result["history"][-1]["test_accuracy"]
    assert {"train_ce", "train_recon", "test_recon_mse"} <= set(result["history"][0])
    assert not torch.equal(before["stem.0.weight"], model.stem[0].weight)
    assert not torch.equal(before["stem.1.running_mean"], model.stem[1].running_mean)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    seen.train()
    assert not model.training


def test_fine_tuning_keeps_the_numbers_of_its_own_loss_before_core_loss(mnist5k):
    """Fine-tuning now takes the objective of core.loss (layers_loss); these numbers are
    those of its own joint_loss at main f9ee0de, on the same seeded case."""
    train, test = data.training_subset(mnist5k[0], 200, 0), data.training_subset(mnist5k[1], 100, 0)
    torch.manual_seed(0)
    seen = attach(net(), ["stem", "block2"], (1, 28, 28), seed=0)
    result = fine_tune(seen, train, lam=1e-2, epochs=2, batch_size=50, seed=1, progress=False, test_data=test)
    last = result["history"][-1]
    assert last["train_ce"] == pytest.approx(1.76059490442276, rel=1e-5)
    assert last["train_recon"] == pytest.approx({"stem": 67.57003498077393, "block2": 70.51891326904297}, rel=1e-5)
    assert last["test_recon_mse"] == pytest.approx({"stem": 0.08503597105400415, "block2": 0.09148541662204264},
                                                   rel=1e-5)
    assert (result["accuracy_before"], result["accuracy_after"]) == (0.1, 0.57)


# --- any torch Dataset or DataLoader ------------------------------------------------------------

def test_a_tensor_dataset_and_a_dataloader_give_the_image_datasets_numbers(digits):
    from torch.utils.data import DataLoader, TensorDataset

    train, test = digits[0].subset(torch.arange(120)), digits[1].subset(torch.arange(100))
    tables = []
    for kind in ("ours", "tensors", "loader"):
        seen = attach(net(), ["stem", "fc1"], (1, 28, 28))
        if kind == "ours":
            fitted_on, tested_on = train, test
        elif kind == "tensors":  # uint8, shuffled by fit_decoders' own seeded order
            fitted_on, tested_on = TensorDataset(train.images, train.labels), TensorDataset(test.images, test.labels)
        else:  # floats in [0, 1], in the batches fit_decoders draws for epoch 1 (seed 3)
            order = torch.randperm(120, generator=torch.Generator().manual_seed(3 * 100_003 + 1)).split(40)
            fitted_on = DataLoader(TensorDataset(data.to_float(train.images), train.labels), batch_sampler=order)
            tested_on = DataLoader(TensorDataset(data.to_float(test.images), test.labels), batch_size=33)
        history = fit_decoders(seen, fitted_on, epochs=1, batch_size=40, seed=3, progress=False, test_data=tested_on)
        tables.append((history[0]["train_recon"], evaluate_layers(seen, tested_on)))
    (ours, ours_eval), (tensors, tensors_eval), (loader, loader_eval) = tables
    assert tensors == ours and tensors_eval == ours_eval  # the same numbers, bit for bit
    assert loader == pytest.approx(ours, rel=1e-5) and loader_eval["accuracy"] == ours_eval["accuracy"]
    assert loader_eval["recon_mse"] == pytest.approx(ours_eval["recon_mse"], rel=1e-5)


def test_data_of_another_shape_names_the_models(digits):
    from torch.utils.data import TensorDataset

    seen = attach(net(), ["stem"], (1, 28, 28))
    wrong = TensorDataset(torch.zeros(4, 3, 28, 28), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(PerceptregError, match=r"train_data has images of shape \(3, 28, 28\).*takes \(1, 28, 28\)"):
        fit_decoders(seen, wrong, epochs=1, progress=False)


def test_one_progress_bar_spans_every_batch_of_every_epoch(digits, monkeypatch):
    from helpers import ProgressBars

    from perceptreg.attaching import fitting

    bars = ProgressBars()
    monkeypatch.setattr(fitting, "tqdm", bars)
    seen = attach(net(), ["stem"], (1, 28, 28))
    fit_decoders(seen, digits[0].subset(torch.arange(60)), epochs=3, batch_size=25)
    assert bars.bars == [{"total": 9, "desc": "fitting decoders", "steps": 9, "postfix": "epoch 3/3"}]  # 3 x 3 batches
