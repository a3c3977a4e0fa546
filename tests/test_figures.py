import numpy as np
import pytest
import torch
from PIL import Image

from perceptreg import data, figures, models
from perceptreg.attack_evaluation import evaluate_attack
from perceptreg.errors import PerceptregError


def test_grid_layout_and_pixels(tmp_path):
    images = torch.zeros(3, 1, 2, 2)
    images[1] = 1.0  # the second cell white
    picture = figures.image_grid(images, ncols=2, scale=1)
    pad = figures.PAD
    assert picture.size == (2 * (2 + pad) + pad, 2 * (2 + pad) + pad)
    pixels = np.asarray(picture)
    assert (pixels[pad:pad + 2, pad:pad + 2] == 0).all()  # cell 0 black
    assert (pixels[pad:pad + 2, 2 * pad + 2:2 * pad + 4] == 255).all()  # cell 1 white
    row2 = 2 * pad + 2
    assert (pixels[row2:row2 + 2, pad:pad + 2] == 0).all()  # cell 2 on the second row


def test_captions_add_space_and_ink():
    images = torch.full((2, 3, 4, 4), 0.5)
    plain = figures.image_grid(images, 2, scale=4)
    captioned = figures.image_grid(images, 2, ["seven 98%", "one"], scale=4)
    assert captioned.size[1] == plain.size[1] + figures.CAPTION_HEIGHT
    strip = np.asarray(captioned)[figures.PAD + 16:figures.PAD + 16 + figures.CAPTION_HEIGHT]
    assert (strip < 128).any()  # the text was drawn


def test_bad_grid_input():
    with pytest.raises(PerceptregError, match=r"image_grid takes images \(N, 1 or 3, H, W\)"):
        figures.image_grid(torch.zeros(2, 2, 4, 4), 2)
    with pytest.raises(PerceptregError, match="1 captions for 2 images"):
        figures.image_grid(torch.zeros(2, 1, 4, 4), 2, ["x"])


def test_spread_over_classes_is_round_robin():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    assert data.spread_over_classes(labels, 5).tolist() == [0, 3, 5, 1, 4]


def test_perception_grid_pairs_x_with_its_perception(mnist5k, tmp_path):
    _, test = mnist5k
    net = models.mnist()
    picture = figures.perception_grid(net, test, n=4, pairs_per_row=2)
    cell = 28 * 3
    assert picture.size == (4 * (cell + figures.PAD) + figures.PAD,
                            2 * (cell + figures.CAPTION_HEIGHT + figures.PAD) + figures.PAD)
    # the first cell is the first test image (a 0), upscaled 3x
    first = np.asarray(picture)[figures.PAD:figures.PAD + cell:3, figures.PAD:figures.PAD + cell:3, 0]
    assert np.array_equal(first, test.images[0, 0].numpy())
    path = figures.save_png(picture, tmp_path / "sub" / "p.png")
    assert Image.open(path).size == picture.size


def test_attack_grid_rows_and_failure_panel(tmp_path):
    from perceptreg import attacks, data
    net = models.mnist()
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    tiny = data.ImageDataset(images, torch.arange(6), data.DIGITS, "tiny")
    evaluation = evaluate_attack(net, attacks.PGD(net, steps=1), tiny)
    grid = figures.attack_grid(evaluation, torch.tensor([0, 2, 4]), data.DIGITS)
    cell = 28 * 3
    assert grid.size == (3 * (cell + figures.PAD) + figures.PAD,
                         4 * (cell + figures.CAPTION_HEIGHT + figures.PAD) + figures.PAD)
    second_row_top = figures.PAD + cell + figures.CAPTION_HEIGHT + figures.PAD
    # row 2 (x_adv), third column: image 4
    cell_pixels = np.asarray(grid)[second_row_top:second_row_top + cell:3, 2 * (cell + figures.PAD) + figures.PAD::3][:, :28, 0]
    assert np.array_equal(cell_pixels, evaluation.adversarial[4, 0].mul(255).round().byte().numpy())
    stacked = figures.stack_panels([("one", grid), ("two", grid)])
    assert stacked.size == (grid.size[0], 2 * (grid.size[1] + 18))


def test_roc_figure_and_noise_grid(tmp_path):
    path = figures.roc_figure(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, 1.0, 1.0]), 0.75, "t", tmp_path / "roc.png")
    assert Image.open(path).size == (400, 400)
    net = models.mnist()
    noise = torch.rand(4, 1, 28, 28)
    picture = figures.noise_grid(net, noise, noise, tuple("0123456789"), columns=2)
    assert picture.size[1] == 6 * (84 + figures.CAPTION_HEIGHT + figures.PAD) + figures.PAD
