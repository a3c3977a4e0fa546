import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from perceptreg import data, figures
from perceptreg.adversarial import attacks
from perceptreg.adversarial.evaluation import measure_attack
from perceptreg.core import models
from perceptreg.core.errors import PerceptregError
from perceptreg.figures import plots
from perceptreg.storage.fileio import CheckpointError

RED = np.array(figures.WRONG)


def test_grid_layout_and_pixels():
    images = torch.zeros(3, 1, 2, 2)
    images[1] = 1.0  # the second cell white
    grid = figures.image_grid(images, ncols=2, scale=1)
    pad = figures.PAD
    assert grid.picture.size == (2 * (2 + pad) + pad, 2 * (2 + pad) + pad)
    pixels = np.asarray(grid.picture)
    assert (pixels[pad:pad + 2, pad:pad + 2] == 0).all()  # cell 0 black
    assert (pixels[pad:pad + 2, 2 * pad + 2:2 * pad + 4] == 255).all()  # cell 1 white
    row2 = 2 * pad + 2
    assert (pixels[row2:row2 + 2, pad:pad + 2] == 0).all()  # cell 2 on the second row
    # the layout: one card per row by default, each cell's box where its pixels are
    cards = grid.panels[0]["cards"]
    assert [[c["box"] for c in card] for card in cards] == [[(pad, pad, 2, 2), (2 * pad + 2, pad, 2, 2)],
                                                           [(pad, row2, 2, 2)]]


def test_labels_and_captions_each_take_a_line_with_ink():
    # cells 64 pixels wide: each text fits one line (narrower, it wraps: see below)
    images = torch.full((2, 3, 4, 4), 0.5)
    plain = figures.image_grid(images, 2, scale=16).picture
    labelled = figures.image_grid(images, 2, ["seven", "one"], scale=16).picture
    captioned = figures.image_grid(images, 2, [figures.Cell("x", "H: 7 98 %"), figures.Cell("P(x)")], scale=16).picture
    assert labelled.size[1] == plain.size[1] + figures.CAPTION_HEIGHT
    assert captioned.size[1] == plain.size[1] + 2 * figures.CAPTION_HEIGHT
    top = figures.PAD + 64
    second_line = np.asarray(captioned)[top + figures.CAPTION_HEIGHT:top + 2 * figures.CAPTION_HEIGHT]
    assert (second_line[:, :figures.PAD + 64] < 128).any()  # the caption was drawn under the first cell
    assert (second_line[:, figures.PAD + 64 + figures.PAD:] > 128).all()  # the second cell has none
    # a row with labels only takes one line, not an empty second one
    rows = figures.image_grid(images.repeat(2, 1, 1, 1), 2, [figures.Cell("x", "H: 7 98 %"), figures.Cell("x"),
                                                             figures.Cell("P(x)"), figures.Cell("P(x)")], scale=16)
    plain_rows = figures.image_grid(images.repeat(2, 1, 1, 1), 2, scale=16).picture
    assert rows.picture.size[1] == plain_rows.size[1] + 3 * figures.CAPTION_HEIGHT
    assert [card[0]["box"][1] for card in rows.panels[0]["cards"]] == [
        figures.PAD, 2 * figures.PAD + 64 + 2 * figures.CAPTION_HEIGHT]


def test_a_misclassified_cell_is_framed_in_red():
    images = torch.full((2, 1, 4, 4), 0.5)
    grid = figures.image_grid(images, 2, [figures.Cell("x", "H: 1 60 %", wrong=True), figures.Cell("x", "H: 1 60 %")])
    pixels = np.asarray(grid.picture)
    (l0, t0, w, h), (l1, t1, _, _) = (c["box"] for c in grid.panels[0]["cards"][0])
    assert (pixels[t0 - 1, l0:l0 + w] == RED).all() and (pixels[t0:t0 + h, l0 - 1] == RED).all()
    assert (pixels[t1 - 1, l1 + 2:l1 + w] == 255).all()  # the right one is not framed
    assert (pixels[t0:t0 + h, l0:l0 + w] == 128).all()  # the frame leaves the image alone
    assert [c["wrong"] for c in grid.panels[0]["cards"][0]] == [True, False]


def test_h_caption_is_class_and_confidence():
    assert figures.h_caption(("cat", "dog"), 1, 0.874) == "H: dog 87 %"


def test_bad_grid_input():
    with pytest.raises(PerceptregError, match=r"image_grid takes images \(N, 1 or 3, H, W\)"):
        figures.image_grid(torch.zeros(2, 2, 4, 4), 2)
    with pytest.raises(PerceptregError, match="1 captions for 2 images"):
        figures.image_grid(torch.zeros(2, 1, 4, 4), 2, ["x"])


def test_spread_over_classes_is_round_robin():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    assert data.spread_over_classes(labels, 5).tolist() == [0, 3, 5, 1, 4]


def test_perception_grid_pairs_x_with_its_perception_and_captions_h(mnist5k, tmp_path):
    _, test = mnist5k
    net = models.mnist()
    grid = figures.perception_grid(net, test, n=4, pairs_per_row=2)
    cell = 28 * 3
    assert grid.picture.size == (4 * (cell + figures.PAD) + figures.PAD,
                                 2 * (cell + 2 * figures.CAPTION_HEIGHT + figures.PAD) + figures.PAD)
    index = data.spread_over_classes(test.labels, 4)
    images = data.to_float(test.images[index])
    with torch.no_grad(), models.evaluating(net):
        confidence, predicted = net.classify(images).softmax(1).max(1)
        perceived = net.perceive(images)
    cards = grid.panels[0]["cards"]
    assert [[c["label"] for c in card] for card in cards] == [[f"x, true {test.classes[y]}", "P(x)"]
                                                              for y in test.labels[index].tolist()]
    assert [card[0]["caption"] for card in cards] == [f"H: {p} {100 * c:.0f} %"
                                                      for p, c in zip(predicted.tolist(), confidence.tolist())]
    assert [card[0]["wrong"] for card in cards] == (predicted != test.labels[index]).tolist()
    pixels = np.asarray(grid.picture)
    for card, x, p in zip(cards, images, perceived):  # each box holds its image, upscaled 3x
        for cell_layout, expected in zip(card, (x, p)):
            left, top, w, h = cell_layout["box"]
            assert np.array_equal(pixels[top:top + h:3, left:left + w:3, 0],
                                  expected[0].mul(255).round().byte().numpy())
    path = figures.save_png(grid, tmp_path / "sub" / "p.png")
    assert Image.open(path).size == grid.picture.size
    assert json.loads(json.dumps(figures.read_layout(path)["panels"])) == json.loads(json.dumps(grid.panels))


def test_layout_read_back_is_validated(tmp_path):
    plain = figures.save_png(Image.new("RGB", (4, 4)), tmp_path / "plain.png")
    assert figures.read_layout(plain) is None
    info = PngImagePlugin.PngInfo()
    info.add_text(figures.LAYOUT_KEY, json.dumps({"format": figures.LAYOUT_FORMAT, "panels": [{"title": 3}]}))
    Image.new("RGB", (4, 4)).save(tmp_path / "bad.png", pnginfo=info)
    with pytest.raises(CheckpointError, match=r"bad.png: field panels.0.title: .*draw the figure again"):
        figures.read_layout(tmp_path / "bad.png")
    cell = {"box": [0, 0, 4, 4], "label": "x", "caption": "", "wrong": False, "alt": "", "zoom": 2}  # a key unknown
    info = PngImagePlugin.PngInfo()
    info.add_text(figures.LAYOUT_KEY, json.dumps({"format": figures.LAYOUT_FORMAT, "panels": [
        {"title": "", "scale": 1, "cards": [[cell]]}]}))
    Image.new("RGB", (4, 4)).save(tmp_path / "extra.png", pnginfo=info)
    with pytest.raises(CheckpointError, match=r"extra.png: field panels.0.cards.0.0.zoom: extra inputs"):
        figures.read_layout(tmp_path / "extra.png")
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(CheckpointError, match=r"cut.png: not a readable image .*draw the figure again"):
        figures.read_layout(tmp_path / "cut.png")


def test_attack_grid_groups_each_image_and_stacks_with_titles():
    net = models.mnist()
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    tiny = data.ImageDataset(images, torch.arange(6), data.DIGITS, "tiny")
    evaluation = measure_attack(net, attacks.PGD(net, steps=1), tiny)
    grid = figures.attack_grid(evaluation, torch.tensor([0, 2, 4]), data.DIGITS, title="first panel")
    cell = 28 * 3
    title = figures.TITLE_HEIGHT
    # x and x_adv rows: a label and H's reading; P(x) and P(x_adv) rows: a label only, one line
    assert grid.picture.size == (3 * (cell + figures.PAD) + figures.PAD,
                                 title + 4 * (cell + figures.PAD) + 6 * figures.CAPTION_HEIGHT + figures.PAD)
    stacked = figures.stack_panels([grid, figures.attack_grid(evaluation, torch.tensor([5]), data.DIGITS, "second")])
    assert [p["title"] for p in stacked.panels] == ["first panel", "second"]
    pixels = np.asarray(stacked.picture)
    card = stacked.panels[1]["cards"][0]  # image 5, under the first panel
    assert [c["label"] for c in card] == ["x, true 5", "x_adv", "P(x)", "P(x_adv)"]
    assert card[1]["caption"] == figures.h_caption(data.DIGITS, int(evaluation.adversarial_predictions[5]),
                                                   float(evaluation.adversarial_confidence[5]))
    assert card[1]["wrong"] == bool(evaluation.adversarial_predictions[5] != 5)
    left, top, w, h = card[1]["box"]
    assert top > grid.picture.size[1]
    assert np.array_equal(pixels[top:top + h:3, left:left + w:3, 0],
                          evaluation.adversarial[5, 0].mul(255).round().byte().numpy())


def test_noise_grid_and_roc(tmp_path):
    path = plots.roc_figure(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, 1.0, 1.0]), 0.75, "t", tmp_path / "roc.png")
    assert Image.open(path).size == (400, 400)
    net = models.mnist()
    noise = torch.rand(4, 1, 28, 28)
    grid = figures.noise_grid(net, noise, noise, tuple("0123456789"), columns=2)
    # per group: noise (a label), x_adv (a label and a reading), P(x_adv) (a label)
    assert grid.picture.size[1] == 6 * (84 + figures.PAD) + 2 * 4 * figures.CAPTION_HEIGHT + figures.PAD
    assert [[c["label"] for c in card] for card in grid.panels[0]["cards"]] == [["noise", "x_adv", "P(x_adv)"]] * 4


def test_line_plot_gives_integer_epochs_integer_ticks(tmp_path, monkeypatch):
    seen = []
    save = plots._save_figure
    monkeypatch.setattr(plots, "_save_figure", lambda figure, path: seen.append(
        [list(ax.get_xticks()) for ax in figure.axes if ax.get_visible()]) or save(figure, path))
    plots.line_plot([1, 2, 3], {"a": {"a": [1, 2, 3]}, "b": {"b": [3, 2, 1]}, "c": {"c": [0, 0, 0]}},
                    tmp_path / "p.png", xlabel="epoch", ylabel="", columns=2)
    plots.line_plot([0.0, 0.5, 1.0], {"a": {"a": [1, 2, 3]}}, tmp_path / "q.png", xlabel="alpha", ylabel="")
    assert len(seen[0]) == 3  # the fourth cell of the 2x2 layout is hidden
    assert all(float(t).is_integer() for ticks in seen[0] for t in ticks)
    assert not all(float(t).is_integer() for t in seen[1][0])  # alphas keep their fractions


def test_a_line_plot_in_memory_is_the_png_line_plot_writes(tmp_path):
    curves = {"a": {"a": [1, 2, 3]}}
    png = plots.line_plot_png([1, 2, 3], curves, xlabel="epoch", ylabel="")
    written = plots.line_plot([1, 2, 3], curves, tmp_path / "p.png", xlabel="epoch", ylabel="")
    with Image.open(io.BytesIO(png)) as in_memory, Image.open(written) as on_disk:
        assert in_memory.size == on_disk.size and list(in_memory.getdata()) == list(on_disk.getdata())


def test_a_panel_with_one_curve_has_no_legend(tmp_path, monkeypatch):
    seen = []
    save = plots._save_figure
    monkeypatch.setattr(plots, "_save_figure", lambda figure, path: seen.append(
        [ax.get_legend() is not None for ax in figure.axes if ax.get_visible()]) or save(figure, path))
    plots.line_plot([1, 2], {"one": {"a": [1, 2]}, "two": {"a": [1, 2], "b": [2, 1]}}, tmp_path / "p.png",
                    xlabel="epoch", ylabel="")
    assert seen == [[False, True]]


def test_a_grid_shows_itself_in_jupyter_as_its_png():
    grid = figures.image_grid(torch.zeros(3, 1, 2, 2), ncols=2, cells=["a", "b", "c"], scale=1)
    png = grid._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.size == grid.picture.size
        assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(grid.picture))
    width, height = grid.picture.size
    assert repr(grid) == f"Grid({width}x{height} px, 1 panels, 3 cells)"


def test_a_caption_wider_than_its_cell_wraps_whole_instead_of_being_cut():
    """Under a 32-pixel image at scale 3 (96 pixels), "H: automobile 100 %" is read whole: the
    cell takes another line, and "100 %" is never split before its "%"."""
    cell = figures.Cell("x, true automobile", "H: automobile 100 %")
    lines = figures.grids.cell_lines(cell, 3 * 32 - 1)
    assert " ".join(text for text, caption in lines if caption) == "H: automobile 100 %"
    assert " ".join(text for text, caption in lines if not caption) == "x, true automobile"
    assert len(lines) > 2 and not any(text.startswith("%") for text, _ in lines)
    font = figures.grids._font()
    assert all(font.getlength(text) <= 3 * 32 - 1 for text, _ in lines)
    grid = figures.image_grid(torch.zeros(1, 3, 32, 32), 1, [cell], scale=3)
    assert grid.picture.size[1] == figures.PAD + 96 + len(lines) * figures.CAPTION_HEIGHT + figures.PAD


def test_a_one_epoch_plot_has_its_epoch_as_its_one_tick():
    figure = plots.line_figure([1], {"a": {"a": [0.5]}}, xlabel="epoch", ylabel="")
    ax = figure.axes[0]
    assert ax.get_xlim() == (0.5, 1.5)
    assert list(ax.get_xticks()) == [1.0]
