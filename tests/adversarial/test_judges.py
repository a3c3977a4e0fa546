import pytest
import torch
from helpers import linear_perception_net, reference_set
from torch import nn

from perceptreg.adversarial.judges import KNNJudge, ModelJudge, judge_agreement


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


