"""Measures of a perception beside pixel MSE: consistency, judges, a perceptual distance and
the spread, on tiny nets whose numbers can be worked out by hand."""

import pydantic
import pytest
import torch
from helpers import net_with_decoder, pixels, tiny_dataset
from torch import nn

from perceptreg.measures.consistency import (
    PerceptionMeasures,
    RandomFeatures,
    derangement,
    measure_perception,
    perception_spread,
)
from perceptreg.measures.records import Rate
from perceptreg.measures.judging import JudgeTally, class_bias, format_judge

IDENTITY = nn.Unflatten(1, (1, 1, 2))  # D(z) = z: P(x) = x on the 1x1x2 images


class Constant(nn.Module):
    """A decoder that draws the same image whatever the latent."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, z):
        return torch.full((len(z), 1, 1, 2), self.value)


class SaysZero:
    """A judge that names class 0 whatever it sees."""

    name = "says a"

    def __call__(self, images):
        return torch.zeros(len(images), dtype=torch.long)


def test_an_identity_decoder_is_fully_consistent_and_at_distance_zero():
    measured = measure_perception(net_with_decoder(IDENTITY), tiny_dataset(), batch_size=3)
    assert measured.h_consistency.rate == 1.0 and measured.h_consistency.n == 4
    assert measured.latent_distance.mean == 0 and measured.perceptual_distance.mean == 0
    assert measured.pixel_mse.mean == 0
    assert measured.unrelated_perceptual_distance.mean > 0.1  # other images are not alike


def test_a_black_decoder_is_as_far_as_the_latent_from_zero():
    # z = the pixels: (0, 1) and (1, 0); each is paired with the other, at distance sqrt 2;
    # P(x) = black, so F(P(x)) = 0 at distance 1 from each: 1 / sqrt 2 of two images' distance
    two = pixels([[0, 1], [1, 0]], [0, 1])
    measured = measure_perception(net_with_decoder(Constant(0.0)), two)
    assert measured.latent_distance.mean == pytest.approx(2 ** -0.5)
    assert measured.pixel_mse.mean == pytest.approx(0.5)
    # H says "b" when the first pixel is above 0.5: it reads black as "a", so as it reads image 1 only
    assert measured.h_consistency.rate == 0.5


def test_a_derangement_never_pairs_an_item_with_itself():
    for n in (2, 3, 10):
        other = derangement(n)
        assert sorted(other.tolist()) == list(range(n)) and (other != torch.arange(n)).all()


def test_the_random_features_are_fixed_and_their_distance_is_zero_for_the_same_image():
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    features = RandomFeatures(3)
    assert features.distance(images, images).abs().max() < 1e-6
    assert torch.equal(features.distance(images, images.flip(0)), RandomFeatures(3).distance(images, images.flip(0)))
    far = features.distance(images, images.flip(0))
    assert (far > 0).all() and (far <= 2).all()
    assert not any(p.requires_grad for p in features.parameters())  # used in no loss: never trained


def test_the_perceptual_distance_ignores_contrast_as_lpips_does():
    images = 0.25 + 0.5 * torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    stronger = 0.5 + 2 * (images - 0.5)  # the same image at twice the contrast, still in [0, 1]
    assert RandomFeatures(3).distance(images, stronger).abs().max() < 1e-6  # features scaled to length 1


def test_the_spread_is_zero_where_the_decoder_ignores_the_latent_and_grows_with_the_perturbation():
    images = tiny_dataset().images.float() / 255
    assert perception_spread(net_with_decoder(Constant(0.3)), images).abs().max() == 0
    identity = net_with_decoder(IDENTITY)
    small, large = perception_spread(identity, images, scale=0.1), perception_spread(identity, images, scale=0.2)
    assert small.shape == (4, 1, 2) and torch.allclose(large, 2 * small)  # D(z + e) = z + e: linear in e
    assert small[3].abs().max() == 0  # the black image: a latent of size 0 is not perturbed


def test_class_bias_by_hand():
    assert class_bias(torch.tensor([5, 5]), torch.tensor([5, 5])) == 0
    assert class_bias(torch.tensor([10, 0]), torch.tensor([5, 5])) == 0.5  # one class of two: (K-1)/K
    assert class_bias(torch.tensor([3, 1]), torch.tensor([2, 2])) == 0.25


def test_a_judge_that_names_one_class_shows_its_bias_and_its_accuracy_on_x():
    data = tiny_dataset()  # labels 0, 1, 0, 0
    measured = measure_perception(net_with_decoder(IDENTITY), data, judges=[SaysZero()])
    reading = measured.judges[0]
    assert reading.judge == "says a" and reading.accuracy_on_x.rate == 0.75 == reading.p_read_true.rate
    assert reading.p_reads == [4, 0] and reading.labels == [3, 1] and reading.p_bias == 0.25
    assert reading.x_adv_read_true is None  # no attack given
    assert "judge says a: x read right 75.0 %" in measured.lines(("a", "b"))[1]


def test_each_judge_reads_p_apart_from_x():
    class FirstPixel:
        name = "first pixel"

        def __call__(self, images):
            return (images.flatten(1)[:, 0] > 0.5).long()

    # x: (0, 1), (1, 0), (1, 1), (0, 0) labelled a, b, a, a; P(x) = (0.9, 0.9), read as b every time
    reading = measure_perception(net_with_decoder(Constant(0.9)), tiny_dataset(), judges=[FirstPixel()]).judges[0]
    assert reading.accuracy_on_x.rate == 0.75 and reading.p_read_true.rate == 0.25
    assert reading.p_reads == [0, 4] and reading.x_reads == [2, 2] and reading.p_bias == 0.75
    assert reading.judge == "first pixel"
    # H reads a, b, b, a: right on the first, second and fourth, of which P(x) is read true on the second only
    assert reading.p_read_true_where_right == Rate.count(1, 3)
    # a 1x2 image has no room to blur: its blur of any error is x itself, read as x is
    assert reading.blurred_read_true == reading.accuracy_on_x


def test_a_decoder_that_draws_one_picture_is_flagged_collapsed_by_the_training_rule():
    same = measure_perception(net_with_decoder(Constant(0.9)), tiny_dataset())
    assert same.decoder_collapsed and any(line.startswith("the decoder has collapsed") for line in same.lines())
    faithful = measure_perception(net_with_decoder(IDENTITY), tiny_dataset())
    assert faithful.decoder_collapsed is False and not any("collapsed" in line for line in faithful.lines())


def test_p_read_true_where_h_is_right_counts_only_those_images():
    tally = JudgeTally(lambda images: (images.flatten(1)[:, 0] > 0.5).long(), 2)
    tally.judge.name = "first pixel"
    perceived = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]).view(4, 1, 1, 2)  # read 1, 1, 0, 0
    labels = torch.tensor([1, 0, 0, 1])  # P(x) read true: yes, no, yes, no
    tally.add(perceived, labels, perceived, right=torch.tensor([True, True, True, False]))
    reading = tally.result()
    assert reading.p_read_true == Rate.count(2, 4) and reading.p_read_true_where_right == Rate.count(2, 3)
    assert "(66.7 % [" in format_judge(reading) and "] where H is right)" in format_judge(reading)
    nowhere = JudgeTally(tally.judge, 2)
    nowhere.add(perceived, labels, perceived, right=torch.zeros(4, dtype=torch.bool))
    assert nowhere.result().p_read_true_where_right is None and "where H is right" not in format_judge(nowhere.result())


def test_with_an_attack_each_judge_reads_x_adv_and_p_adv():
    def flip(images, labels):
        return 1 - images

    tally = JudgeTally(lambda images: (images.flatten(1)[:, 0] > 0.5).long(), 2)
    tally.judge.name = "first pixel"
    images = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(2, 1, 1, 2)
    labels = torch.tensor([0, 1])
    tally.add(images, labels, images, flip(images, labels), images)
    reading = tally.result()
    assert reading.x_adv_read_true.rate == 0 and reading.p_adv_read_true.rate == 1
    measured = measure_perception(net_with_decoder(IDENTITY), tiny_dataset(), judges=[SaysZero()], attack=flip)
    assert measured.judges[0].x_adv_read_true.n == 4


def test_the_measures_file_refuses_an_unknown_key():
    measured = measure_perception(net_with_decoder(IDENTITY), tiny_dataset())
    with pytest.raises(pydantic.ValidationError):
        PerceptionMeasures.model_validate({**measured.model_dump(), "sharpness": 1.0})
    assert PerceptionMeasures.model_validate(measured.model_dump()) == measured


def test_each_measure_is_read_as_an_attribute_and_a_misspelt_or_missing_key_inside_one_is_refused():
    measured = measure_perception(net_with_decoder(Constant(0.5)), tiny_dataset(), judges=[SaysZero()])
    assert measured.spread.n == 4 and measured.h_consistency.rate == 0.5  # the measures are typed, read by name
    assert str(measured.h_consistency).startswith("50.0 % [") and measured.pixel_mse.text(2) == "0.25 [0.25, 0.25]"
    assert measured.judges[0].accuracy_on_x.n == 4
    for damage in (lambda v: v["spread"].update(maen=v["spread"].pop("mean")),
                   lambda v: v["h_consistency"].pop("n"),
                   lambda v: v["judges"][0]["p_read_true"].update(rates=0.1)):
        values = measured.model_dump()
        damage(values)
        with pytest.raises(pydantic.ValidationError):
            PerceptionMeasures.model_validate(values)
