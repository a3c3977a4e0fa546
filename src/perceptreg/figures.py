"""Image grids as PNG (Pillow only), with captions; the perception grid x | P(x)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from perceptreg import latent, runs
from perceptreg.checkpoint import atomic_write
from perceptreg.data import ImageDataset, spread_over_classes, to_float
from perceptreg.errors import PerceptregError
from perceptreg.models import PerceptionNet, evaluating

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


@torch.no_grad()
def perception_grid(model: PerceptionNet, data: ImageDataset, n: int = 20, pairs_per_row: int = 5,
                    device: torch.device | str = "cpu") -> Image.Image:
    """x beside P(x) = D(F(x)) for ``n`` test images spread over the classes.

    x is captioned with its true class, P(x) with H's prediction and confidence.
    """
    if n < 1:
        raise PerceptregError(f"`n` must be >= 1, got {n}")
    index = spread_over_classes(data.labels, min(n, len(data)))
    images = to_float(data.images[index]).to(device)
    with evaluating(model):
        logits, _, recon = model(images)
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


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    from matplotlib import pyplot
    return pyplot


def _save_figure(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    _pyplot().close(figure)
    return path


def roc_figure(false_positive_rate: torch.Tensor, true_positive_rate: torch.Tensor, auc: float,
               title: str, path: str | Path) -> Path:
    """The detector's ROC curve as a PNG."""
    figure, axes = _pyplot().subplots(figsize=(4, 4), dpi=100, layout="constrained")
    axes.plot(false_positive_rate.numpy(), true_positive_rate.numpy(), label=f"AUC {auc:.3f}")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    axes.set(xlabel="false positive rate (clean flagged)", ylabel="true positive rate (adversarial flagged)",
             title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right")
    return _save_figure(figure, path)


def line_plot(x: Sequence[float], panels: dict[str, dict[str, Sequence[float]]], path: str | Path, *,
              xlabel: str, ylabel: str, ylim: tuple[float, float] | None = None,
              xticklabels: Sequence[str] | None = None) -> Path:
    """Panels side by side, each with named curves over the same x, as a PNG.

    A curve named "<name> (compare)" is drawn dashed in the colour of "<name>", so two runs
    read the same way."""
    figure, axes = _pyplot().subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), dpi=100,
                                      squeeze=False, layout="constrained")
    colours: dict[str, str] = {}
    palette = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, series) in zip(axes[0], panels.items()):
        for name, values in series.items():
            base = name.removesuffix(" (compare)")
            colour = colours.setdefault(base, palette[len(colours) % len(palette)])
            ax.plot(list(x), [float("nan") if v is None else v for v in values], marker="o",
                    markersize=3, label=name, color=colour,
                    linestyle="--" if name != base else "-")
        ax.set(xlabel=xlabel, title=title)
        if ylim:
            ax.set_ylim(*ylim)
        if xticklabels is not None:
            ax.set_xticks(list(x), list(xticklabels))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(ylabel)
    return _save_figure(figure, path)


def heatmaps(maps: dict[str, torch.Tensor], path: str | Path, outline: torch.Tensor | None = None) -> Path:
    """2-D maps side by side on one colour scale, with an optional region outlined on each."""
    figure, axes = _pyplot().subplots(1, len(maps), figsize=(3.2 * len(maps) + 0.8, 3.2), dpi=100,
                                      squeeze=False, layout="constrained")
    top = max(float(m.max()) for m in maps.values()) or 1.0
    for ax, (title, values) in zip(axes[0], maps.items()):
        shown = ax.imshow(values.cpu().numpy(), cmap="magma", vmin=0, vmax=top)
        if outline is not None:
            ax.contour(outline.cpu().float().numpy(), levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    figure.colorbar(shown, ax=axes[0].tolist(), shrink=0.8)
    return _save_figure(figure, path)


def interpolation_grid(edited: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor,
                       classes: Sequence[str], alphas: Sequence[float]) -> Image.Image:
    """One row per image, one column per alpha: D(F(x) + a * dz), captioned with alpha and
    H's label and confidence on that image. ``edited``: (B, A, C, H, W)."""
    captions = [f"a={a:g} H:{classes[l]} {c:.0%}"
                for row_labels, row_conf in zip(labels.tolist(), confidence.tolist())
                for a, l, c in zip(alphas, row_labels, row_conf)]
    return image_grid(edited.flatten(0, 1), edited.shape[1], captions,
                      scale=4 if edited.shape[-1] < 48 else 2)


@torch.no_grad()
def noise_grid(model: PerceptionNet, noise: torch.Tensor, adversarial: torch.Tensor,
               classes: Sequence[str], columns: int) -> Image.Image:
    """Rows of ``columns`` images: the noise, the noise attacked toward a class, and the
    model's perception of it, captioned with H's label and confidence."""
    with evaluating(model):
        logits = model.classify(adversarial).float()
        perceived = model.perceive(adversarial).float()
    confidence, predicted = logits.softmax(1).max(1)
    pictures, captions = [], []
    for start in range(0, len(noise), columns):
        part = slice(start, start + columns)
        pictures += [noise[part], adversarial[part], perceived[part]]
        captions += ["noise"] * len(noise[part])
        captions += [f"H:{classes[p]} {c:.0%}" for p, c in zip(predicted[part].tolist(), confidence[part].tolist())] * 2
    return image_grid(torch.cat(pictures), columns, captions)


def edit_study_figures(study, region: torch.Tensor, classes: Sequence[str], out: Path,
                       rows: int = 20) -> list[Path]:
    """The grids of an ``latent.EditStudy`` (first ``rows`` images; the measures use all) and
    its change maps, with the target's region outlined; written into ``out``."""
    written = []
    for kind, edited in study.edited.items():
        grid = interpolation_grid(edited[:rows], study.readings[kind]["H(image)"][:rows],
                                  study.confidence[kind][:rows], classes, study.alphas)
        written.append(save_png(grid, out / runs.INTERPOLATION_GRID.format(kind=kind)))
    maps = {f"{kind}: |change| a={study.alphas[0]:g} to {study.alphas[-1]:g}":
            latent.locality(edited, region.to(edited.device))["change_map"] for kind, edited in study.edited.items()}
    written.append(heatmaps(maps, out / runs.INTERPOLATION_CHANGE, outline=region))
    return written


@torch.no_grad()
def layers_grid(seen, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                adversarial: torch.Tensor | None = None) -> Image.Image:
    """One row per image: x (and x_adv), then its perception at each attached layer, shallow
    to deep; x and x_adv captioned with H's label and confidence, P with the layer's name."""
    with evaluating(seen):
        shown = images if adversarial is None else adversarial
        confidence, predicted = seen(shown).float().softmax(1).max(1)
        perceived = seen.perceive_all(shown)  # layer -> (B, C, H, W)
    columns = [images] + ([adversarial] if adversarial is not None else []) + [perceived[n].float() for n in seen.layers]
    grid = torch.stack(columns, 1).flatten(0, 1)  # row by row
    captions = []
    for label, p, c in zip(labels.tolist(), predicted.tolist(), confidence.tolist()):
        captions.append(f"x: {classes[label]}" if adversarial is not None else f"x H:{classes[p]} {c:.0%}")
        if adversarial is not None:
            captions.append(f"x_adv H:{classes[p]} {c:.0%}")
        captions += [f"P {name}"[:14] for name in seen.layers]
    return image_grid(grid, len(columns), captions, scale=3 if images.shape[-1] < 48 else 2)
