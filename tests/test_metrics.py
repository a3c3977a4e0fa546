import pytest
import torch
from torch import nn

from perceptreg import data, models
from perceptreg.metrics import COLLAPSE_RATIO, evaluate


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


def test_perfect_decoder():
    result = evaluate(net_with_decoder(nn.Unflatten(1, (1, 1, 2))), tiny_dataset(), batch_size=3)
    assert result["accuracy"] == pytest.approx(0.75)  # image 2 ([1, 1], labelled "a") is called "b"
    assert result["recon_mse"] == 0.0
    assert result["recon_spread"] == pytest.approx(1.0)
    assert not result["decoder_collapsed"]


class Constant(nn.Module):
    def forward(self, z):
        return torch.full((len(z), 1, 1, 2), 0.5)


def test_constant_decoder_is_collapsed_and_mse_is_hand_computed():
    result = evaluate(net_with_decoder(Constant()), tiny_dataset())
    assert result["recon_mse"] == pytest.approx(0.25)  # every pixel is 0 or 1, recon 0.5
    assert result["recon_spread"] == 0.0 < COLLAPSE_RATIO
    assert result["decoder_collapsed"]


def test_evaluate_keeps_training_mode_and_batching_does_not_matter():
    net = models.mnist()
    train, test = data.mnist5k_split()
    subset = test.subset(torch.arange(0, 1000, 7))
    a = evaluate(net, subset, batch_size=13)
    b = evaluate(net, subset, batch_size=1000)
    assert net.training
    assert a["accuracy"] == b["accuracy"]
    assert a["recon_mse"] == pytest.approx(b["recon_mse"], rel=1e-6)


# --- ROC ---------------------------------------------------------------------------------------

from perceptreg import attacks
from perceptreg.metrics import KNNJudge, ModelJudge, evaluate_attack, judge_agreement, roc_auc, roc_curve


@pytest.mark.parametrize("negative, positive, auc", [
    ([0, 1, 2], [3, 4], 1.0),  # perfectly separated
    ([3, 4], [0, 1, 2], 0.0),  # perfectly inverted
    ([1, 3], [2, 4], 0.75),  # 3 of the 4 (positive, negative) pairs ordered right
    ([1, 2], [2, 3], 0.875),  # the tie 2 = 2 counts half: (1 + 1 + 0.5 + 1) ... / 4
    ([5, 5], [5], 0.5),  # all tied
])
def test_roc_auc_by_hand(negative, positive, auc):
    assert roc_auc(torch.tensor(negative, dtype=torch.float), torch.tensor(positive, dtype=torch.float)) == pytest.approx(auc)


def test_roc_curve_by_hand():
    fpr, tpr = roc_curve(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0]))
    # thresholds 4, 3, 2, 1: flagged {4}, {4, 3}, {4, 3, 2}, all
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    area = torch.trapezoid(tpr, fpr).item()
    assert area == pytest.approx(roc_auc(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0])))


# --- judges ------------------------------------------------------------------------------------

def reference_set():
    # 1x1x2 images; class 0 brighter on the left (as the linear nets below read), class 1 on the right
    pixels = torch.tensor([[0, 255], [10, 245], [255, 0], [245, 10], [128, 128]], dtype=torch.uint8)
    return data.ImageDataset(pixels.reshape(5, 1, 1, 2), torch.tensor([1, 1, 0, 0, 0]), ("a", "b"), "ref")


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
    assert judge_agreement(readings, adversarial, true) == pytest.approx(
        {"adversarial_label": 0.4, "true_label": 0.4, "other": 0.2, "count": 5})


# --- an attack, measured -----------------------------------------------------------------------

def linear_perception_net(decoder):
    net = net_with_decoder(decoder)
    with torch.no_grad():
        net.classifier.weight.copy_(torch.eye(2))
        net.classifier.bias.zero_()
    return net  # logits = the two pixels


def pixels(rows, labels):
    images = torch.tensor(rows).mul(255).round().to(torch.uint8).reshape(-1, 1, 1, 2)
    return data.ImageDataset(images, torch.tensor(labels), ("a", "b"), "tiny")


def test_evaluate_attack_counts_by_hand():
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))  # P(x) = x: a useless detector
    tiny = pixels([[0.6, 0.4], [0.4, 0.6], [0.2, 0.8]], [0, 0, 1])
    pgd = attacks.PGD(net, eps=0.15, alpha=0.05, steps=4, random_start=False)
    result = evaluate_attack(net, pgd, tiny, judges=[KNNJudge(reference_set(), k=1)])
    s = result.summary
    # image 0: right, pushed to [0.45, 0.55]: fooled. image 1: wrong to begin with.
    # image 2: right, pushed to [0.35, 0.65]: still right.
    assert result.success.tolist() == [True, False, False]
    assert s["clean_accuracy"] == pytest.approx(2 / 3) and s["robust_accuracy"] == pytest.approx(1 / 3)
    assert s["attack_success_rate"] == pytest.approx(0.5) and s["successful_attacks"] == 1
    assert s["detector"]["roc_auc"] == pytest.approx(0.5)  # every score is 0
    judge = s["judges"]["1-NN pixels"]
    # x_adv of image 0, [0.45, 0.55], is nearest the reference [128, 128]: class 0, the true one
    assert judge["on_x_adv"] == pytest.approx({"adversarial_label": 0.0, "true_label": 1.0, "other": 0.0, "count": 1})
    assert judge["accuracy_on_x"] == 1.0


def test_evaluate_attack_targeted_success_needs_the_target():
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))
    tiny = pixels([[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]], [0, 0, 1])
    pgd = attacks.PGD(net, eps=0.15, alpha=0.05, steps=4, random_start=False)
    result = evaluate_attack(net, pgd, tiny, targets=torch.tensor([1, 1, 1]))
    # image 2 is already of the target class: not eligible; image 1 is too far
    assert result.success.tolist() == [True, False, False]
    assert result.summary["attack_success_rate"] == pytest.approx(0.5)


def test_model_judge_restores_mode():
    net = linear_perception_net(nn.Unflatten(1, (1, 1, 2)))
    net.train()
    assert ModelJudge(net)(torch.tensor([[[[0.9, 0.1]]]])).tolist() == [0]
    assert net.training


# --- what a representation keeps -----------------------------------------------------------------

from perceptreg.metrics import centre_to_edge_ratio, error_map, latents, linear_probe, mean_and_interval


def test_linear_probe_finds_a_linear_label_and_not_a_random_one():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(600, 8, generator=generator)
    linear_label = (z[:, :3] @ torch.tensor([2.0, -1.0, 0.5]) > 0).long() + 2 * (z[:, 3] > 0).long()  # 4 classes
    random_label = torch.randint(0, 4, (600,), generator=generator)
    assert linear_probe(z[:400], linear_label[:400], z[400:], linear_label[400:]) > 0.9
    assert 0.1 < linear_probe(z[:400], random_label[:400], z[400:], random_label[400:]) < 0.4  # chance: 0.25


def test_linear_probe_is_deterministic():
    z = torch.randn(100, 4, generator=torch.Generator().manual_seed(1))
    y = (z[:, 0] > 0).long()
    assert linear_probe(z[:60], y[:60], z[60:], y[60:]) == linear_probe(z[:60], y[:60], z[60:], y[60:])


def test_error_map_and_latents_by_hand():
    net = linear_perception_net(Constant())  # P(x) = 0.5 everywhere
    tiny = pixels([[0.0, 1.0], [1.0, 1.0]], [1, 0])
    assert error_map(net, tiny).tolist() == [[0.25, 0.25]]
    assert latents(net, tiny).tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_centre_to_edge_ratio_by_hand():
    errors = torch.zeros(2, 8)
    errors[:, :2] = 1.0  # left quarter
    errors[:, 6:] = 1.0  # right quarter
    errors[:, 2:6] = 0.25  # the middle half
    assert centre_to_edge_ratio(errors) == pytest.approx(0.25)


def test_mean_and_interval():
    assert mean_and_interval([0.5]) == (0.5, 0.0)
    mean, half = mean_and_interval([1.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(12.706 * 2 ** 0.5 / 2 ** 0.5, rel=1e-3)  # t(0.975, 1) * s / sqrt(n)
