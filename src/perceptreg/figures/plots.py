"""Plots as PNG (matplotlib, drawn off screen): curves over epochs or alphas, the
detector's ROC curve, heat maps on one colour scale."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import torch

from perceptreg.storage.fileio import atomic_write


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


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    _pyplot().close(figure)
    return buffer.getvalue()


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


def line_plot(x: Sequence[float], panels: dict[str, dict[str, Sequence[float]]], path: str | Path,
              **style) -> Path:
    """``line_figure`` saved as a PNG at ``path``."""
    return _save_figure(line_figure(x, panels, **style), path)


def line_plot_png(x: Sequence[float], panels: dict[str, dict[str, Sequence[float]]], **style) -> bytes:
    """``line_figure`` as PNG bytes, written nowhere (a report inlines it)."""
    return _png(line_figure(x, panels, **style))


def line_figure(x: Sequence[float], panels: dict[str, dict[str, Sequence[float]]], *,
                xlabel: str, ylabel: str | Sequence[str], ylim: tuple[float, float] | None = None,
                xticklabels: Sequence[str] | None = None, columns: int | None = None):
    """Panels (``columns`` to a row, default all in one row), each with named curves over the
    same x, as a PNG. Integer x (epochs) gets integer ticks only. ``ylabel``: one for the first
    panel, or one per panel.

    A curve named "<name> (compare)" is drawn dashed in the colour of "<name>", so two runs
    read the same way."""
    from matplotlib.ticker import MaxNLocator

    columns = columns or len(panels)
    rows = -(-len(panels) // columns)
    figure, axes = _pyplot().subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), dpi=100,
                                      squeeze=False, layout="constrained")
    ylabels = [ylabel] if isinstance(ylabel, str) else list(ylabel)
    colours: dict[str, str] = {}
    palette = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, series), label in zip(axes.flat, panels.items(), ylabels + [""] * len(panels)):
        for name, values in series.items():
            base = name.removesuffix(" (compare)")
            colour = colours.setdefault(base, palette[len(colours) % len(palette)])
            ax.plot(list(x), [float("nan") if v is None else v for v in values], marker="o",
                    markersize=3, label=name, color=colour,
                    linestyle="--" if name != base else "-")
        ax.set(xlabel=xlabel, ylabel=label, title=title)
        if ylim:
            ax.set_ylim(*ylim)
        if xticklabels is not None:
            ax.set_xticks(list(x), list(xticklabels))
        elif all(isinstance(v, int) for v in x):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if len(set(x)) == 1:  # one epoch: its own tick, not an axis from 0.945 to 1.055
                ax.set_xticks([x[0]])
                ax.set_xlim(x[0] - 0.5, x[0] + 0.5)
        ax.grid(alpha=0.3)
        if len(series) > 1:  # one curve: the panel's title names it
            ax.legend(fontsize=7)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    return figure


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
