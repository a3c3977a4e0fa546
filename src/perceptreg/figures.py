"""Image grids as PNG (Pillow only), with captions; the perception grid x | P(x)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from perceptreg.checkpoint import atomic_write
from perceptreg.data import ImageDataset, to_float
from perceptreg.errors import PerceptregError
from perceptreg.models import PerceptionNet

CAPTION_HEIGHT = 14
PAD = 2


def image_grid(images: torch.Tensor, ncols: int, captions: Sequence[str] | None = None,
               scale: int = 3) -> Image.Image:
    """Tile float images (N, C, H, W) in [0, 1] (C = 1 or 3) into one RGB picture.

    Each cell is upscaled ``scale`` times (nearest neighbour, so pixels stay visible) and,
    with ``captions``, gets its caption underneath.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise PerceptregError(f"image_grid takes images (N, 1 or 3, H, W), got {tuple(images.shape)}")
    if captions is not None and len(captions) != len(images):
        raise PerceptregError(f"{len(captions)} captions for {len(images)} images")
    n, c, h, w = images.shape
    pixels = (images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
              .expand(n, 3, h, w).permute(0, 2, 3, 1).cpu().numpy())  # (N, H, W, 3)
    pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    cell_h, cell_w = h * scale + (CAPTION_HEIGHT if captions else 0), w * scale
    nrows = -(-n // ncols)
    canvas = np.full((nrows * (cell_h + PAD) + PAD, ncols * (cell_w + PAD) + PAD, 3), 255, np.uint8)
    for i in range(n):
        top, left = PAD + (i // ncols) * (cell_h + PAD), PAD + (i % ncols) * (cell_w + PAD)
        canvas[top:top + h * scale, left:left + cell_w] = pixels[i]
    picture = Image.fromarray(canvas)
    if captions:
        draw, font = ImageDraw.Draw(picture), _font()
        for i, text in enumerate(captions):
            top, left = PAD + (i // ncols) * (cell_h + PAD), PAD + (i % ncols) * (cell_w + PAD)
            draw.text((left + 1, top + h * scale + 1), text, fill=(0, 0, 0), font=font)
    return picture


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=11)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def save_png(picture: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))
    return path


def spread_over_classes(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` items taken round-robin over the classes, each class in data order."""
    rank = torch.zeros_like(labels)
    for cls in labels.unique():
        members = labels == cls
        rank[members] = torch.arange(int(members.sum()))
    order = torch.argsort(rank * (int(labels.max()) + 1) + labels, stable=True)
    return order[:n]


@torch.no_grad()
def perception_grid(model: PerceptionNet, data: ImageDataset, n: int = 20, pairs_per_row: int = 5,
                    device: torch.device | str = "cpu") -> Image.Image:
    """x beside P(x) = D(F(x)) for ``n`` test images spread over the classes.

    x is captioned with its true class, P(x) with H's prediction and confidence.
    """
    if n < 1:
        raise PerceptregError(f"--n must be >= 1, got {n}")
    index = spread_over_classes(data.labels, min(n, len(data)))
    images = to_float(data.images[index]).to(device)
    was_training = model.training
    model.eval()
    try:
        logits, _, recon = model(images)
    finally:
        model.train(was_training)
    confidence, predicted = logits.float().softmax(1).max(1)
    pairs = torch.stack([images, recon.float()], 1).flatten(0, 1)  # (2n, C, H, W): x, P(x), ...
    captions = []
    for label, pred, conf in zip(data.labels[index].tolist(), predicted.tolist(), confidence.tolist()):
        captions += [f"x: {data.classes[label]}", f"P: {data.classes[pred]} {conf:.0%}"]
    return image_grid(pairs, 2 * min(pairs_per_row, len(index)), captions)


# --- adversarial perception ---------------------------------------------------------------

def attack_grid(evaluation, index: torch.Tensor, classes: Sequence[str]) -> Image.Image:
    """Four rows for the chosen images: x, x_adv, P(x), P(x_adv), each captioned with
    H's label and confidence (the perception rows repeat the label of their input)."""
    e = evaluation
    rows = [e.images, e.adversarial, e.perceptions, e.adversarial_perceptions]
    predictions = [(e.clean_predictions, e.clean_confidence), (e.adversarial_predictions, e.adversarial_confidence)] * 2
    images = torch.cat([row[index] for row in rows])
    captions = [f"H:{classes[p]} {c:.0%}" for pred, conf in predictions
                for p, c in zip(pred[index].tolist(), conf[index].tolist())]
    return image_grid(images, len(index), captions, scale=3 if images.shape[-1] < 48 else 2)


def stack_panels(panels: Sequence[tuple[str, Image.Image]]) -> Image.Image:
    """Pictures one under the other, each under a title line."""
    title_height = 18
    width = max(p.size[0] for _, p in panels)
    height = sum(p.size[1] + title_height for _, p in panels)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw, font, top = ImageDraw.Draw(canvas), _font(), 0
    for title, picture in panels:
        draw.text((PAD + 1, top + 3), title, fill=(0, 0, 0), font=font)
        canvas.paste(picture, (0, top + title_height))
        top += picture.size[1] + title_height
    return canvas


def roc_figure(false_positive_rate: torch.Tensor, true_positive_rate: torch.Tensor, auc: float,
               title: str, path: str | Path) -> Path:
    """The detector's ROC curve as a PNG (matplotlib, no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 4), dpi=100)
    axes.plot(false_positive_rate.numpy(), true_positive_rate.numpy(), label=f"AUC {auc:.3f}")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    axes.set(xlabel="false positive rate (clean flagged)", ylabel="true positive rate (adversarial flagged)",
             title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)
    return path


@torch.no_grad()
def noise_grid(model: PerceptionNet, noise: torch.Tensor, adversarial: torch.Tensor,
               classes: Sequence[str], columns: int) -> Image.Image:
    """Rows of ``columns`` images: the noise, the noise attacked toward a class, and the
    model's perception of it, captioned with H's label and confidence."""
    logits = model.classify(adversarial).float()
    confidence, predicted = logits.softmax(1).max(1)
    perceived = model.perceive(adversarial).float()
    pictures, captions = [], []
    for start in range(0, len(noise), columns):
        part = slice(start, start + columns)
        pictures += [noise[part], adversarial[part], perceived[part]]
        captions += ["noise"] * len(noise[part])
        captions += [f"H:{classes[p]} {c:.0%}" for p, c in zip(predicted[part].tolist(), confidence[part].tolist())] * 2
    return image_grid(torch.cat(pictures), columns, captions)
