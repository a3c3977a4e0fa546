import pytest
import torch
from helpers import linear_perception_net, reference_set
from torch import nn

from perceptreg.adversarial import judges as judges_module
from perceptreg.adversarial.judges import (
    JUDGES_ENV,
    KNNJudge,
    ModelJudge,
    default_judges,
    judge_agreement,
    standing_judge_config,
    standing_judge_dir,
)
from perceptreg.data import ImageDataset, to_float
from perceptreg.training.train import train


def test_knn_judge_by_hand():
    queries = torch.tensor([[0.1, 0.9], [0.9, 0.1], [0.45, 0.5]]).reshape(3, 1, 1, 2)
    assert KNNJudge(reference_set(), k=1)(queries).tolist() == [1, 0, 0]  # the last is nearest [128, 128]
    # k = 3 on [0.45, 0.5]: nearest [128,128] (0), then [10,245] (1) and [0,255] (1): majority 1
    assert KNNJudge(reference_set(), k=3)(queries).tolist() == [1, 0, 1]


def test_knn_judge_breaks_ties_toward_the_nearest():
    # k = 2 on [0.45, 0.5]: [128, 128] (class 0) and [10, 245] (class 1) tie 1 : 1
    assert KNNJudge(reference_set(), k=2)(torch.tensor([[[[0.45, 0.5]]]])).tolist() == [0]


def test_judge_agreement_counting():
    readings = torch.tensor([1, 1, 0, 2, 1])
    adversarial = torch.tensor([1, 1, 1, 1, 2])
    true = torch.tensor([0, 0, 0, 0, 1])
    agreement = judge_agreement(readings, adversarial, true)
    assert agreement["count"] == 5
    assert {k: agreement[k]["rate"] for k in ("adversarial_label", "true_label", "other")} == pytest.approx(
        {"adversarial_label": 0.4, "true_label": 0.4, "other": 0.2})
    assert agreement["other"]["n"] == 5 and agreement["other"]["low"] < 0.2 < agreement["other"]["high"]


def test_model_judge_restores_mode():
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))
    net.train()
    assert ModelJudge(net)(torch.tensor([[[[0.9, 0.1]]]])).tolist() == [0]
    assert net.training




def rgb_set(n: int = 40) -> ImageDataset:
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return ImageDataset(images, torch.arange(n) % 10, tuple(str(c) for c in range(10)), "rgb")


def test_the_standing_judge_lives_under_the_judges_folder_by_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv(JUDGES_ENV, str(tmp_path))
    assert standing_judge_dir("folder:/data/my images/") == tmp_path / "folder_data_my_images"
    assert standing_judge_dir("cifar10") == tmp_path / "cifar10"
    config = standing_judge_config("cifar10", epochs=3)
    assert (config.arch, config.seed, config.lam, config.epochs) == ("vgg", 1, 0.0, 3)  # not the svhn net, seed 0


def test_grey_images_are_read_by_the_pixel_judge_first():
    assert [j.name for j in default_judges("mnist5k", reference_set())] == ["3-NN pixels"]


def test_natural_images_are_read_by_the_standing_cnn_judge_once_it_is_trained(tmp_path, monkeypatch):
    monkeypatch.setenv(JUDGES_ENV, str(tmp_path))
    data = rgb_set()
    with pytest.warns(UserWarning, match="has not been made.*perceptreg train-judge --dataset rgb"):
        assert [j.name for j in default_judges("rgb", data)] == ["3-NN pixels"]
    config = standing_judge_config("rgb", epochs=2, batch_size=20, eval_size=0)
    result = train(config, standing_judge_dir("rgb"), train_data=data, test_data=data, progress=False)
    assert not result.history[-1]["decoder_collapsed"]  # at lam 0 D never learnt to draw: no collapse to flag
    judges = default_judges("rgb", data)
    assert [j.name for j in judges] == ["model rgb"]  # the pixel judge is left out on natural images
    assert torch.equal(judges[0](to_float(data.images)), result.model.eval().classify(to_float(data.images)).argmax(1))
    monkeypatch.setattr(judges_module, "completed_epochs", lambda folder: 1)  # as if killed after epoch 1
    with pytest.warns(UserWarning, match="is trained up to epoch 1 of 2"):
        assert [j.name for j in default_judges("rgb", data)] == ["3-NN pixels"]
