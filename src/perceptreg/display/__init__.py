"""How results show themselves, the one home of these rules: in Jupyter a picture as PNG
(``png_bytes``, for ``_repr_png_``; in an HTML page, ``data_uri``; a figure a result drew,
with its lines, ``figure_html``) and a table as small escaped HTML (``html_table``, for
``_repr_html_``); in a terminal a table as aligned text (``aligned``); progress bars as
widgets where Jupyter can draw them, else as text (``tqdm``, chosen once by ``choose_tqdm``);
a count with its noun, "1 epoch", "2 epochs" (``counted``)."""

from __future__ import annotations

import base64
import html
import importlib.util
import io
from pathlib import Path
from typing import Sequence


def png_bytes(picture) -> bytes:
    """A PIL image as the bytes of a PNG file."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """The bytes of a PNG file as a data URL an HTML page embeds."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural but for 1: "1 epoch", "0 epochs", "3 epochs"."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def html_lines(lines: Sequence[str]) -> str:
    """Lines of text as HTML, one per line: a result's ``lines()`` in Jupyter."""
    return "<br>".join(html.escape(line) for line in lines)


def figure_html(png: Path, lines: Sequence[str]) -> str:
    """A result that drew a figure, in Jupyter: the PNG file inlined, then what it printed (escaped)."""
    text = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return f'<img alt="{html.escape(png.name)}" src="{data_uri(png.read_bytes())}">{text}'


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "") -> str:
    """Rows of cells as an HTML table, every cell and the caption escaped (names come from
    users: a layer or a class may be called "<b>"). A float shows 4 significant digits;
    None, a value not measured in that row, a blank cell."""
    def cell(value) -> str:
        return html.escape(f"{value:.4g}" if isinstance(value, float) else "" if value is None else str(value))
    head = "".join(f"<th>{cell(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    title = f"<caption>{cell(caption)}</caption>" if caption else ""
    return f"<table>{title}<tr>{head}</tr>{body}</table>"


def aligned(lines: list[list[str]], first_left: bool = True) -> str:
    """Rows of cells as text, each column as wide as its widest cell."""
    widths = [max(len(line[i]) for line in lines) + 2 for i in range(len(lines[0]))]
    return "\n".join("".join((f"{c:<{w}}" if first_left and i == 0 else f"{c:>{w}}")
                             for i, (c, w) in enumerate(zip(line, widths))).rstrip() for line in lines)


def choose_tqdm():
    """The tqdm class to draw progress bars with: tqdm's automatic choice (a widget in
    Jupyter) when ipywidgets is installed, else the plain text bar. tqdm.auto without
    ipywidgets warns "IProgress not found" in every notebook that imports it."""
    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


tqdm = choose_tqdm()  # every progress bar of the package is drawn by this class
