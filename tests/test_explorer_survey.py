import pytest
import torch

from perceptreg.explorer_survey import Survey


def survey(labels, predictions, confidence, error, points=None):
    n = len(labels)
    points = torch.zeros(n, 2) if points is None else points
    return Survey(torch.tensor(labels), torch.tensor(predictions), torch.tensor(confidence),
                  torch.tensor(error), torch.zeros(2), torch.eye(2), points)


def test_select_filters_and_orders():
    s = survey([0, 0, 1, 1, 2], [0, 1, 1, 0, 2], [0.9, 0.5, 0.99, 0.3, 0.7], [0.1, 0.4, 0.2, 0.3, 0.05])
    assert s.select().tolist() == [0, 2, 4, 1, 3]  # the classes in turn
    assert s.select(show="misclassified").tolist() == [1, 3]
    assert s.select(show="low-confidence", sort="confidence").tolist() == [3, 1]
    assert s.select(sort="error").tolist() == [1, 3, 2, 0, 4]
    assert s.select(label=1, sort="error").tolist() == [3, 2]
    assert s.select(label=2, show="misclassified").tolist() == []


class Linear(torch.nn.Module):
    """z = the image's two pixels, stretched along the first: PCA's first axis is pixel 0."""
    def forward(self, x):
        z = x.flatten(1) * torch.tensor([3.0, 1.0])
        return z[:, :2] * 0 + torch.tensor([[1.0, 0.0]]), z, x


def test_the_map_is_the_latents_principal_plane():
    images = torch.tensor([[0, 0], [255, 0], [0, 255], [255, 255]], dtype=torch.uint8).view(4, 1, 1, 2)
    s = Survey.of(Linear(), images, torch.tensor([0, 0, 1, 1]))
    assert s.predictions.tolist() == [0, 0, 0, 0] and s.error.tolist() == [0, 0, 0, 0]
    assert s.points[:, 0].abs().tolist() == pytest.approx([1.5, 1.5, 1.5, 1.5])  # +-3/2 along pixel 0
    assert s.points[:, 1].abs().tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert s.project(torch.tensor([[1.5, 0.5]]))[0].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)  # the mean
