"""The report's HTML pieces: its style, tables, inlined images, and grid figures cut into
cells with their captions as text (what a person reads is HTML, not pixels in a PNG).

Every image is a data URI, so the page needs no network and no other file.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from PIL import Image

from perceptreg import display, figures
from perceptreg.storage import fileio

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; padding: 0 1rem; max-width: 1100px; color: #222;
       line-height: 1.4; }
h1 { font-size: 1.5rem; overflow-wrap: anywhere; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; margin-top: 2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 0.4rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; display: block; overflow-x: auto; max-width: 100%; }
td, th { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
td:first-child, th:first-child { text-align: left; }
th[colspan] { text-align: left; background: #f4f4f4; }
.numbers td { white-space: nowrap; }  /* "0.887 ± 0.127" on one line; a wide table scrolls in its box */
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
img.pixels { image-rendering: pixelated; }
.missing { color: #777; font-style: italic; }
code { background: #f4f4f4; padding: 0 0.2rem; overflow-wrap: anywhere; }
pre { overflow-x: auto; font-size: 0.85rem; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1rem; margin: 1rem 0; }
dl.summary dt { font-weight: 600; } dl.summary dd { margin: 0; overflow-wrap: anywhere; }
.warning { border-left: 4px solid #c00; padding: 0.3rem 0.8rem; background: #fff4f4; }
.config { display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-start; }
.config > div { min-width: 0; max-width: 100%; }
.config td:last-child, .config th { text-align: left; overflow-wrap: anywhere; }
.cards { display: flex; flex-wrap: wrap; gap: 0.5rem; }
.card { display: flex; flex-wrap: wrap; gap: 0.3rem; padding: 0.3rem; border: 1px solid #ddd; border-radius: 4px; }
.card.wrong { border-color: #c00; }
.cell { margin: 0; width: var(--w); }
.cell img { width: var(--w); margin: 0; }
.cell.wrong img { outline: 3px solid #c00; outline-offset: -3px; }
.cell figcaption { font-size: 0.8rem; line-height: 1.25; }
.cell figcaption > span { display: block; overflow-wrap: anywhere; }
.cell .reading { font-weight: 600; }
.cell.wrong .reading { color: #c00; }
.key { font-size: 0.85rem; color: #555; }
@media (max-width: 600px) {
  body { margin: 0.8rem auto; padding: 0 0.6rem; }
  .cell { width: calc(var(--w) * 0.8); } .cell img { width: calc(var(--w) * 0.8); }
  .cell figcaption { font-size: 0.64rem; }
  dl.summary { grid-template-columns: 1fr; gap: 0 0; } dl.summary dd { margin-bottom: 0.4rem; }
}
"""

WRONG_KEY = ('<p class="key">A red frame and a red ✗ mark an image H misclassifies: its prediction is not the '
             'true class.</p>')


def image(png: bytes, alt: str) -> str:
    """A plot's PNG, inlined."""
    return f'<img class="plot" alt="{html.escape(alt)}" src="{display.data_uri(png)}">'


def table(header: list[str], rows: list[list[object]]) -> str:
    return display.html_table(header, rows)


def prose(text: str) -> str:
    """A line the library wrote for the terminal, as HTML: escaped, its `commands` as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def missing(what: str, command: str) -> str:
    return f'<p class="missing">No {html.escape(what)} in this run; produce it with <code>{html.escape(command)}</code>.</p>'


def section(title: str, anchor: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def figure(path: Path, alt: str) -> str:
    """A PNG from the run folder: a grid drawn by ``figures`` as cards of captioned cells
    (with a heading per panel), any other picture (a plot) as it is."""
    layout = figures.read_layout(path)
    if layout is None:
        return image(fileio.guarded(path, fileio.IMAGE_LIMIT).read_bytes(), alt)
    with Image.open(path) as opened:
        picture = opened.convert("RGB")
    parts = []
    for panel in layout["panels"]:
        if panel["title"]:
            parts.append(f"<h3>{html.escape(panel['title'])}</h3>")
        cards = "".join(_card(picture, card, panel["scale"]) for card in panel["cards"])
        parts.append(f'<div class="cards">{cards}</div>')
    return "".join(parts)


def _card(picture: Image.Image, cells: list[dict], scale: int) -> str:
    wrong = any(c["wrong"] for c in cells)
    return f'<div class="card{" wrong" if wrong else ""}">' + "".join(_cell(picture, c, scale) for c in cells) + "</div>"


def _cell(picture: Image.Image, cell: dict, scale: int) -> str:
    left, top, width, height = cell["box"]
    # the picture's pixels at their own size: the browser scales them up, sharp
    crop = picture.crop((left, top, left + width, top + height)).resize(
        (max(1, width // scale), max(1, height // scale)), Image.Resampling.NEAREST)
    # a reading wider than its cell wraps at its spaces ("H: automobile" / "46 % ✗"), never
    # inside "46 %" or before its mark, rather than run into the next cell
    reading = html.escape(cell["caption"]).replace(" %", "\u00a0%") + (
        '\u00a0<span aria-label="misclassified" title="misclassified">✗</span>' if cell["wrong"] else "")
    # a label wraps before its bracket ("P_block1" / "(x_adv)"), not inside a word ("x_ad" / "v")
    label = html.escape(cell["label"]).replace("(", "<wbr>(")
    caption = f'<span>{label}</span>' + (f'<span class="reading">{reading}</span>'
                                                             if cell["caption"] else "")
    return (f'<figure class="cell{" wrong" if cell["wrong"] else ""}" style="--w:{width}px">'
            f'<img class="pixels" width="{width}" height="{height}" alt="{html.escape(cell["alt"] or cell["label"])}" '
            f'src="{display.data_uri(display.png_bytes(crop))}"><figcaption>{caption}</figcaption></figure>')
