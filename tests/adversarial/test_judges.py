import pytest
import torch
from helpers import linear_perception_net, net_with_decoder, pixels, reference_set
from torch import nn

from perceptreg.adversarial import judges as judges_module
from perceptreg.adversarial.judges import (
    JUDGES_ENV,
    KNNJudge,
    ModelJudge,
    default_judges,
    feature_distance,
    format_reading,
    judge_agreement,
    read_perception,
    reading_judge,
    standing_judge_config,
    standing_judge_dir,
)
from perceptreg.data import ImageDataset, to_float
from perceptreg.measures import MeanOf, Rate
from perceptreg.runs import open_run
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
    assert agreement.count == 5
    assert {k: getattr(agreement, k).rate for k in ("adversarial_label", "true_label", "other")} == pytest.approx(
        {"adversarial_label": 0.4, "true_label": 0.4, "other": 0.2})
    assert agreement.other.n == 5 and agreement.other.low < 0.2 < agreement.other.high


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
    with pytest.warns(UserWarning, match="has not been made.*perceptreg train-judge --dataset cifar10"):
        assert [j.name for j in default_judges("cifar10", data)] == ["3-NN pixels"]
    config = standing_judge_config("cifar10", epochs=2, batch_size=20, eval_size=0)
    result = train(config, standing_judge_dir("cifar10"), train_data=data, test_data=data, progress=False)
    assert not result.history[-1]["decoder_collapsed"]  # at lam 0 D never learnt to draw: no collapse to flag
    judges = default_judges("cifar10", data)
    assert [j.name for j in judges] == ["standing judge (vgg)"]  # the pixel judge is left out on natural images
    assert torch.equal(judges[0](to_float(data.images)), result.model.eval().classify(to_float(data.images)).argmax(1))
    monkeypatch.setattr(judges_module, "completed_epochs", lambda folder: 1)  # as if killed after epoch 1
    with pytest.warns(UserWarning, match="is trained up to epoch 1 of 2"):
        assert [j.name for j in default_judges("cifar10", data)] == ["3-NN pixels"]


def swapping_decoder() -> nn.Sequential:
    """P(x) = x with its two pixels swapped (z = the pixels)."""
    swap = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        swap.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    return nn.Sequential(swap, nn.Unflatten(1, (1, 1, 2)))


def pixel_judge() -> ModelJudge:
    """Reads the brighter pixel (logits 2 x0, x1); its features, the input of C's last
    Linear, are the two pixels. Its D holds Linear layers too (z -> 3 z -> ...), not C's."""
    decoder = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Unflatten(1, (1, 1, 2)))
    with torch.no_grad():
        decoder[0].weight.copy_(3 * torch.eye(2))
    net = net_with_decoder(decoder)
    with torch.no_grad():
        net.classifier.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        net.classifier.bias.zero_()
    return ModelJudge(net, "pixels")


def test_a_model_judge_reads_labels_and_the_features_before_its_logits():
    images = torch.tensor([[1.0, 0.0], [0.2, 0.6]]).reshape(2, 1, 1, 2)
    labels, features = pixel_judge().read(images, batch_size=1)
    assert labels.tolist() == [0, 1] and torch.equal(features, images.flatten(1))  # C's input, not its logits nor D's


def test_feature_distance_by_hand():
    first = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    second = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]])
    # orthogonal: 2; one direction at any length: 0; 45 degrees: 2 - 2 cos 45 = 2 - sqrt 2
    assert feature_distance(first, second).tolist() == pytest.approx([2.0, 0.0, 2 - 2 ** 0.5])


def test_read_perception_by_hand():
    # x: bright left, right, left, left; labels 0, 1, 1, 0. P(x) swaps the pixels.
    data = pixels([[1, 0], [0, 1], [1, 0], [1, 0]], [0, 1, 1, 0])
    model = net_with_decoder(swapping_decoder())  # C says 1 when the left pixel is bright
    reading = read_perception(model, data, pixel_judge(), batch_size=3)
    assert reading.judge_accuracy == Rate.count(3, 4)  # the third looks like a 0
    assert reading.perception_read_true == Rate.count(1, 4)  # swapped, only the third reads as its label
    assert reading.model_accuracy == Rate.count(1, 4)  # C reads 1, 0, 1, 1
    assert reading.feature_distance == MeanOf(mean=2.0, low=2.0, high=2.0, n=4)  # orthogonal each time
    assert reading.pixel_mse.mean == 1.0
    # each image beside another: the one bright on the right differs from the two it meets (2), the rest alike (0)
    assert reading.unrelated_distance.mean == 1.0 and reading.images == 4
    line = format_reading(reading)
    assert "x read right 75.0 % [" in line and "P(x) read as the true class 25.0 % [" in line
    assert "feature distance x-P(x) 2.000 [2.000, 2.000] (x-another image 1.000 [" in line
    assert reading.perception_reads == [1, 3]  # the swapped perceptions read as 1, 0, 1, 1
    assert line.endswith("P(x) read most often as 1 75.0 %, 0 25.0 %")
    assert format_reading(reading, ["left", "right"]).endswith("as right 75.0 %, left 25.0 %")


def test_perception_reads_count_every_class_even_one_never_read():
    data = pixels([[0, 1], [0, 1], [0, 1]], [0, 1, 1])  # swapped: every P(x) is bright left, read as 0
    reading = read_perception(net_with_decoder(swapping_decoder()), data, pixel_judge(), batch_size=2)
    assert reading.perception_reads == [3, 0]


def test_a_perception_equal_to_x_is_at_distance_zero():
    data = pixels([[1, 0], [0, 1], [0.6, 0.2]], [0, 1, 0])
    reading = read_perception(net_with_decoder(nn.Unflatten(1, (1, 1, 2))), data, pixel_judge())
    assert reading.feature_distance.mean == pytest.approx(0) and reading.pixel_mse.mean == pytest.approx(0)
    assert reading.perception_read_true == reading.judge_accuracy == Rate.count(3, 3)


def test_the_reading_judge_is_the_given_run_else_a_finished_standing_judge(tmp_path, monkeypatch):
    monkeypatch.setenv(JUDGES_ENV, str(tmp_path))
    data = rgb_set(20)
    assert reading_judge("cifar10", data.image_shape, 10) is None  # none trained: no reading, no warning
    assert reading_judge("mnist5k", (1, 28, 28), 10) is None  # grey digits: only a given judge
    config = standing_judge_config("cifar10", epochs=1, batch_size=20, eval_size=0)
    train(config, standing_judge_dir("cifar10"), train_data=data, test_data=data, progress=False)
    assert reading_judge("cifar10", data.image_shape, 10).name == "standing judge (vgg)"
    given = open_run(standing_judge_dir("cifar10"))  # the same run given by its folder is named by it
    assert reading_judge("cifar10", data.image_shape, 10, given).name == "model cifar10"


def test_a_judge_of_the_judged_models_own_architecture_is_refused():
    # the demo's twin (same architecture, another seed) reads x_adv as the attack transfers to it
    from pathlib import Path
    from types import SimpleNamespace

    from perceptreg.core import models
    from perceptreg.core.config import TrainConfig
    from perceptreg.core.errors import PerceptregError

    def judge_run(config, shape=(1, 28, 28), classes=10):
        return SimpleNamespace(input_shape=shape, num_classes=classes, config=config, path=Path("runs/judge"),
                               model=lambda device: models.mnist())
    twin, other = TrainConfig(seed=1), TrainConfig(arch="custom", model="../reproduce/mnist_judge.py:mnist_judge")
    assert judges_module.architecture(twin) == "mnist"
    assert judges_module.architecture(other) == "custom mnist_judge"
    with pytest.raises(PerceptregError, match="runs/judge cannot judge a model of its own architecture \\(mnist\\)"):
        judges_module.run_judge(judge_run(twin), "mnist5k", (1, 28, 28), 10, judged="mnist")
    with pytest.raises(PerceptregError, match="its own architecture"):
        reference = reference_set()
        judges_module.default_judges("mnist5k", reference, [judge_run(twin, reference.image_shape,
                                                                      len(reference.classes))], judged="mnist")
    assert judges_module.run_judge(judge_run(other), "mnist5k", (1, 28, 28), 10, judged="mnist").name == "model judge"
    assert judges_module.run_judge(judge_run(twin), "mnist5k", (1, 28, 28), 10).name == "model judge"  # judged unknown
