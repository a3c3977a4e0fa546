import pytest
import torch

from perceptreg.views import explorer_survey
from perceptreg.views.explorer_survey import LatentMap, Scores, needs_scores, sample, select


def test_select_filters_and_orders():
    labels = torch.tensor([0, 0, 1, 1, 2])
    scores = Scores(torch.tensor([0, 1, 1, 0, 2]), torch.tensor([0.9, 0.5, 0.99, 0.3, 0.7]),
                    torch.tensor([0.1, 0.4, 0.2, 0.3, 0.05]))
    assert select(labels).tolist() == [0, 2, 4, 1, 3]  # the classes in turn, no scores needed
    assert select(labels, show="misclassified", scores=scores).tolist() == [1, 3]
    assert select(labels, show="low-confidence", sort="confidence", scores=scores).tolist() == [3, 1]
    assert select(labels, sort="error", scores=scores).tolist() == [1, 3, 2, 0, 4]
    assert select(labels, label=1, sort="error", scores=scores).tolist() == [3, 2]
    assert select(labels, label=2, show="misclassified", scores=scores).tolist() == []
    assert not needs_scores("all", "classes") and needs_scores("all", "error") and needs_scores("misclassified", "classes")


class Linear(torch.nn.Module):
    """z = the image's two pixels, stretched along the first: PCA's first axis is pixel 0.
    Records the size of every batch it is run on."""
    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x):
        self.batches.append(len(x))
        z = x.flatten(1) * torch.tensor([3.0, 1.0])
        return z[:, :2] * 0 + torch.tensor([[1.0, 0.0]]), z, x


def corners(repeat=1):
    return torch.tensor([[0, 0], [255, 0], [0, 255], [255, 255]] * repeat, dtype=torch.uint8).view(-1, 1, 1, 2)


def test_the_map_is_the_latents_principal_plane():
    latent_map = LatentMap.of(Linear(), corners(), torch.arange(4))
    assert latent_map.predictions.tolist() == [0, 0, 0, 0]
    assert latent_map.points[:, 0].abs().tolist() == pytest.approx([1.5, 1.5, 1.5, 1.5])  # +-3/2 along pixel 0
    assert latent_map.points[:, 1].abs().tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert latent_map.project(torch.tensor([[1.5, 0.5]]))[0].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)  # the mean


def test_a_large_test_set_is_surveyed_in_batches_and_mapped_from_a_capped_sample(monkeypatch):
    monkeypatch.setattr(explorer_survey, "BATCH", 3)
    images, model = corners(5), Linear()  # 20 images
    scores = Scores.of(model, images)
    assert model.batches == [3] * 6 + [2]  # never more than BATCH images at once
    assert len(scores.predictions) == 20 and scores.error.tolist() == [0] * 20
    index = sample(20, cap=7)
    assert len(index) == 7 and len(set(index.tolist())) == 7 and index.tolist() == sample(20, cap=7).tolist()
    assert index.tolist() != sample(20, cap=7, seed=1).tolist() and sorted(sample(5, cap=7).tolist()) == list(range(5))
    model.batches.clear()
    latent_map = LatentMap.of(model, images, index)
    assert model.batches == [3, 3, 1] and latent_map.points.shape == (7, 2)  # only the sample's latents
    assert latent_map.index.tolist() == index.tolist()
