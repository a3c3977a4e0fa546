"""Image grids as PNG (Pillow only): each cell an image, with what it is and what H reads
in it written underneath, misclassified images framed in red.

Each grid's layout (every cell's box, label, caption, whether H misreads it, a description)
is stored inside its PNG, so the file is complete on its own and the report can cut the
cells out and caption them as HTML text (``read_layout``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin
from pydantic import BaseModel, ConfigDict

from perceptreg import display
from perceptreg.core.attached import LayerView
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.data import ImageDataset, spread_over_classes, to_float
from perceptreg.storage import schema
from perceptreg.storage.fileio import IMAGE_LIMIT, CheckpointError, atomic_write, guarded, parse_json

CAPTION_HEIGHT = 14  # one line of caption text
TITLE_HEIGHT = 16  # one line of a grid's title
PAD = 2  # between cells; a misclassified cell's red frame is drawn in it
WRONG = (200, 0, 0)
GLUE = "\0"  # holds "87 %" together while a text is broken into words (``_wrap``)
LAYOUT_KEY = "perceptreg.grid"  # the PNG text chunk that holds the layout
LAYOUT_FORMAT = "perceptreg.grid/1"


@dataclass(frozen=True)
class Cell:
    """What one grid cell shows."""

    label: str  # what the image is: "x, true 4", "P(x)", "a=0.5"
    caption: str = ""  # what H reads in it, as ``h_caption`` writes it
    wrong: bool = False  # H's prediction is not the true class
    alt: str = ""  # the image described in words (the report's alt text)


@dataclass
class Grid:
    """A grid picture and its layout: panels, each a title and cards of cells that belong
    together (one test image's x and P(x)); each cell a ``Cell`` plus its ``box``
    (left, top, width, height) in the picture."""

    picture: Image.Image
    panels: list[dict]

    def __repr__(self) -> str:
        cells = sum(len(card) for panel in self.panels for card in panel["cards"])
        width, height = self.picture.size
        return f"Grid({width}x{height} px, {len(self.panels)} panels, {cells} cells)"

    def _repr_png_(self) -> bytes:
        """Jupyter shows a grid as its picture."""
        return display.png_bytes(self.picture)


class _CellLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")
    box: tuple[int, int, int, int]
    label: str
    caption: str
    wrong: bool
    alt: str


class _PanelLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    scale: int  # cells are upscaled this many times (nearest neighbour)
    cards: list[list[_CellLayout]]


class GridLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["perceptreg.grid/1"]
    panels: list[_PanelLayout]


def h_caption(classes: Sequence[str], predicted: int, confidence: float) -> str:
    """H's reading of an image, as every caption writes it: "H: 9 87 %"."""
    return f"H: {classes[predicted]} {100 * confidence:.0f} %"


def image_grid(images: torch.Tensor, ncols: int, cells: Sequence[Cell | str] | None = None,
               scale: int = 3, cards: Sequence[Sequence[int]] | None = None, title: str = "",
               min_width: int = 0) -> Grid:
    """Tile float images (N, C, H, W) in [0, 1] (C = 1 or 3) into one RGB picture.

    Each cell is upscaled ``scale`` times (nearest neighbour, so pixels stay visible) and,
    with ``cells`` (a ``Cell`` or a label per image), gets its label and caption underneath.
    ``cards`` groups cells for the report (default: the grid's rows); ``title`` goes on top,
    wrapped to the picture's width (at least ``min_width``, to match panels stacked with it).
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise PerceptregError(f"image_grid takes images (N, 1 or 3, H, W), got {tuple(images.shape)}")
    if cells is not None and len(cells) != len(images):
        raise PerceptregError(f"{len(cells)} captions for {len(images)} images")
    n, c, h, w = images.shape
    cells = [Cell(x) if isinstance(x, str) else x for x in (cells or [Cell("")] * n)]
    pixels = (images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
              .expand(n, 3, h, w).permute(0, 2, 3, 1).cpu().numpy())  # (N, H, W, 3)
    pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    cell_w = w * scale
    nrows = -(-n // ncols)
    # each row as many caption lines as its cells need: a row of P(x) (a label, no reading)
    # gets one line, not an empty second one; a label or reading too wide for its cell wraps
    rows = [cells[r * ncols:(r + 1) * ncols] for r in range(nrows)]
    lines = [max(len(cell_lines(x, cell_w - 1)) for x in row) for row in rows]
    width = max(ncols * (cell_w + PAD) + PAD, min_width)
    title_lines = _wrap(title, _font(), width - 2 * PAD)
    tops = np.cumsum([len(title_lines) * TITLE_HEIGHT + PAD] + [h * scale + k * CAPTION_HEIGHT + PAD for k in lines])
    canvas = np.full((int(tops[-1]), width, 3), 255, np.uint8)  # tops[-1]: under the last row and its PAD
    boxes = [(PAD + (i % ncols) * (cell_w + PAD), int(tops[i // ncols]), cell_w, h * scale) for i in range(n)]
    for (left, top, _, _), cell_pixels in zip(boxes, pixels):
        canvas[top:top + h * scale, left:left + cell_w] = cell_pixels
    picture = Image.fromarray(canvas)
    _draw_text(picture, title_lines, boxes, cells)
    cards = cards if cards is not None else [range(r * ncols, min(n, (r + 1) * ncols)) for r in range(nrows)]
    layout = [[{**dataclasses.asdict(cells[i]), "box": boxes[i]} for i in card] for card in cards]
    return Grid(picture, [{"title": title, "scale": scale, "cards": layout}])


def _draw_text(picture: Image.Image, title_lines: list[str], boxes: list[tuple], cells: list[Cell]) -> None:
    """The title lines on top; under each cell its label, then its caption (red when H
    misclassifies the image, which also gets a red frame)."""
    draw, font = ImageDraw.Draw(picture), _font()
    for i, line in enumerate(title_lines):
        draw.text((PAD + 1, i * TITLE_HEIGHT + 2), line, fill=(0, 0, 0), font=font)
    for (left, top, width, height), cell in zip(boxes, cells):
        if cell.wrong:
            draw.rectangle((left - PAD, top - PAD, left + width + PAD - 1, top + height + PAD - 1),
                           outline=WRONG, width=PAD)
        for k, (text, caption) in enumerate(cell_lines(cell, width - 1)):
            draw.text((left + 1, top + height + 1 + k * CAPTION_HEIGHT), text,
                      fill=WRONG if caption and cell.wrong else (0, 0, 0), font=font)


def cell_lines(cell: Cell, width: int) -> list[tuple[str, bool]]:
    """The lines under a cell, each (text, whether it is of the caption): its label, then its
    caption, each wrapped at spaces to ``width`` pixels, so that "H: automobile 100 %" under a
    32-pixel image is read whole, not cut."""
    font = _font()
    return ([(line, False) for line in _wrap(cell.label, font, width)]
            + [(line, True) for line in _wrap(cell.caption, font, width)])


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=11)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(text: str, font, width: int) -> str:
    """``text`` cut to ``width`` pixels, so it never runs into the next cell."""
    while text and font.getlength(text) > width:
        text = text[:-1]
    return text


def _wrap(text: str, font, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` pixels, broken at spaces, never before a "%"."""
    lines: list[str] = []
    for word in (w.replace(GLUE, " ") for w in text.replace(" %", GLUE + "%").split(" ") if w):
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(_fit(word, font, width))
    return lines


def stack_panels(grids: Sequence[Grid]) -> Grid:
    """Grids one under the other, as one picture with all their panels."""
    width = max(g.picture.size[0] for g in grids)
    canvas = Image.new("RGB", (width, sum(g.picture.size[1] for g in grids)), (255, 255, 255))
    panels, top = [], 0
    for grid in grids:
        canvas.paste(grid.picture, (0, top))
        for panel in grid.panels:
            cards = [[{**cell, "box": (cell["box"][0], cell["box"][1] + top, *cell["box"][2:])} for cell in card]
                     for card in panel["cards"]]
            panels.append({**panel, "cards": cards})
        top += grid.picture.size[1]
    return Grid(canvas, panels)


def save_png(figure: Grid | Image.Image, path: str | Path) -> Path:
    """Write a picture, or a grid with its layout inside the PNG, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    picture = figure
    if isinstance(figure, Grid):
        info.add_text(LAYOUT_KEY, json.dumps({"format": LAYOUT_FORMAT, "panels": figure.panels}), zip=True)
        picture = figure.picture
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG", pnginfo=info))
    return path


def read_layout(path: str | Path) -> dict | None:
    """The layout stored in a grid PNG by ``save_png``, validated; None for a plain picture."""
    try:
        with Image.open(guarded(path, IMAGE_LIMIT)) as picture:
            raw = getattr(picture, "text", {}).get(LAYOUT_KEY)
    except OSError as err:  # PIL.UnidentifiedImageError is one: a damaged or truncated file
        raise CheckpointError(f"{path}: not a readable image ({err}); draw the figure again") from err
    if raw is None:
        return None
    loaded = parse_json(raw, f"{path} (the grid layout it holds)")
    return schema.validated(loaded, GridLayout, path, "draw the figure again")


@torch.no_grad()
def perception_grid(model: PerceptionNet, data: ImageDataset, n: int = 20, pairs_per_row: int = 5,
                    device: torch.device | str = "cpu") -> Grid:
    """x beside P(x) = D(F(x)) for ``n`` test images spread over the classes; x captioned
    with its true class and H's prediction and confidence."""
    if n < 1:
        raise PerceptregError(f"`n` must be >= 1, got {n}")
    index = spread_over_classes(data.labels, min(n, len(data)))
    images = to_float(data.images[index]).to(device)
    with evaluating(model):
        logits, _, recon = model(images)
    confidence, predicted = logits.float().softmax(1).max(1)
    pairs = torch.stack([images, recon.float()], 1).flatten(0, 1)  # (2n, C, H, W): x, P(x), ...
    layer = model.layer if isinstance(model, LayerView) else None  # an attached model: name its layer
    p = f"P_{layer}(x)" if layer else "P(x)"
    cells = []
    for label, pred, conf in zip(data.labels[index].tolist(), predicted.tolist(), confidence.tolist()):
        true, reading = data.classes[label], h_caption(data.classes, pred, conf)
        cells += [Cell(f"x, true {true}", reading, pred != label, f"test image of a {true}; {reading}"),
                  Cell(p, alt=f"{p}, what the model perceives of that {true}"
                              + (f" at layer {layer}" if layer else " (D(F(x)))"))]
    return image_grid(pairs, 2 * min(pairs_per_row, len(index)), cells,
                      cards=[(i, i + 1) for i in range(0, len(cells), 2)],
                      title=f"layer {layer}: test images x beside {p}" if layer else "")


# --- adversarial perception ---------------------------------------------------------------

def attack_grid(evaluation, index: torch.Tensor, classes: Sequence[str], title: str = "",
                min_width: int = 0) -> Grid:
    """Four rows for the chosen images: x, x_adv, P(x), P(x_adv); x and x_adv captioned with
    H's prediction and confidence. The report groups each image's four cells."""
    e = evaluation
    images = torch.cat([row[index] for row in (e.images, e.adversarial, e.perceptions, e.adversarial_perceptions)])
    labels = e.labels[index].tolist()
    readings = [[h_caption(classes, p, c) for p, c in zip(pred[index].tolist(), conf[index].tolist())]
                for pred, conf in ((e.clean_predictions, e.clean_confidence),
                                   (e.adversarial_predictions, e.adversarial_confidence))]
    wrong = [(pred[index] != e.labels[index]).tolist() for pred in (e.clean_predictions, e.adversarial_predictions)]
    k = len(labels)
    cells = ([Cell(f"x, true {classes[y]}", r, bad, f"test image of a {classes[y]}; {r}")
              for y, r, bad in zip(labels, readings[0], wrong[0])]
             + [Cell("x_adv", r, bad, f"the attacked image (true class {classes[y]}); {r}")
                for y, r, bad in zip(labels, readings[1], wrong[1])]
             + [Cell("P(x)", alt=f"P(x), the perception of the {classes[y]}") for y in labels]
             + [Cell("P(x_adv)", alt=f"P(x_adv), the perception of the attacked {classes[y]}") for y in labels])
    return image_grid(images, k, cells, scale=3 if images.shape[-1] < 48 else 2,
                      cards=[(j, k + j, 2 * k + j, 3 * k + j) for j in range(k)], title=title, min_width=min_width)


@torch.no_grad()
def noise_grid(model: PerceptionNet, noise: torch.Tensor, adversarial: torch.Tensor,
               classes: Sequence[str], columns: int) -> Grid:
    """Rows of ``columns`` images: the noise, the noise attacked toward a class, and the
    model's perception of it; the attacked noise captioned with H's prediction."""
    with evaluating(model):
        logits = model.classify(adversarial).float()
        perceived = model.perceive(adversarial).float()
    confidence, predicted = logits.softmax(1).max(1)
    pictures, cells, cards = [], [], []
    for start in range(0, len(noise), columns):
        part = slice(start, start + columns)
        k, first = len(noise[part]), len(cells)
        pictures += [noise[part], adversarial[part], perceived[part]]
        readings = [h_caption(classes, p, c) for p, c in zip(predicted[part].tolist(), confidence[part].tolist())]
        cells += [Cell("noise", alt="uniform noise, the attack's start")] * k
        cells += [Cell("x_adv", r, alt=f"the noise after the attack; {r}") for r in readings]
        cells += [Cell("P(x_adv)", alt=f"P(x_adv), what the model perceives of the attacked noise ({r})")
                  for r in readings]
        cards += [(first + j, first + k + j, first + 2 * k + j) for j in range(k)]
    return image_grid(torch.cat(pictures), columns, cells, cards=cards)


def interpolation_grid(images: torch.Tensor, edited: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor,
                       classes: Sequence[str], alphas: Sequence[float], title: str = "",
                       direction: str = "the direction") -> Grid:
    """One row per image: the original x, then one column per alpha: D(F(x) + a * dz),
    captioned with alpha and H's prediction and confidence on that image.
    ``images``: (B, C, H, W); ``edited``: (B, A, C, H, W)."""
    cells = []
    for row, (row_labels, row_conf) in enumerate(zip(labels.tolist(), confidence.tolist()), 1):
        cells.append(Cell("x", alt=f"image {row}, the original x"))
        for a, p, c in zip(alphas, row_labels, row_conf):
            reading = h_caption(classes, p, c)
            cells.append(Cell(f"a={a:g}", reading, alt=f"image {row} edited along {direction}, "
                                                       f"D(F(x) + {a:g} dz); {reading}"))
    rows = torch.cat([images.unsqueeze(1).to(edited), edited], 1)  # (B, 1 + A, C, H, W)
    return image_grid(rows.flatten(0, 1), rows.shape[1], cells, scale=4 if edited.shape[-1] < 48 else 2, title=title)


@torch.no_grad()
def layers_grid(seen, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                adversarial: torch.Tensor | None = None) -> Grid:
    """One row per image: x (and x_adv), then its perception at each attached layer, shallow
    to deep; x and x_adv captioned with H's prediction and confidence."""
    inputs = [images] + ([adversarial] if adversarial is not None else [])
    with evaluating(seen):
        readings = [seen(x).float().softmax(1).max(1) for x in inputs]  # (confidence, predicted) each
        perceived = seen.perceive_all(inputs[-1])  # layer -> (B, C, H, W)
    grid = torch.stack(inputs + [perceived[n].float() for n in seen.layers], 1).flatten(0, 1)  # row by row
    shown = "x_adv" if adversarial is not None else "x"
    cells = []
    for i, label in enumerate(labels.tolist()):
        true = classes[label]
        for name, (confidence, predicted) in zip(("x", "x_adv"), readings):
            reading = h_caption(classes, int(predicted[i]), float(confidence[i]))
            cells.append(Cell(f"x, true {true}" if name == "x" else name, reading, int(predicted[i]) != label,
                              f"{'test image' if name == 'x' else 'the attacked image'} of a {true}; {reading}"))
        cells += [Cell(f"P_{name}({shown})", alt=f"P_{name}({shown}), the decoder of layer {name} reading the "
                                        f"{'attacked ' if adversarial is not None else ''}{true}")
                  for name in seen.layers]
    return image_grid(grid, grid.shape[0] // len(labels), cells, scale=3 if images.shape[-1] < 48 else 2)
