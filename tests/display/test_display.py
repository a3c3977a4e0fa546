import base64
import io
import re
from pathlib import Path

import pytest
import tqdm.auto
import tqdm.std
from PIL import Image

from perceptreg import display


def test_html_table_holds_the_numbers_and_escapes_names():
    page = display.html_table(["layer", "MSE"], [["<b>conv</b>", 0.012345678], ["fc & out", None]], "a < b")
    assert page.startswith("<table><caption>a &lt; b</caption><tr><th>layer</th><th>MSE</th></tr>")
    assert "<td>&lt;b&gt;conv&lt;/b&gt;</td><td>0.01235</td>" in page  # a float shows 4 significant digits
    assert "<td>fc &amp; out</td><td></td>" in page  # None: not measured, a blank cell
    assert "<b>" not in page


def test_a_figure_shows_inlined_with_its_lines_escaped(tmp_path):
    path = tmp_path / "grid.png"
    Image.new("RGB", (5, 4), (0, 255, 0)).save(path)
    page = display.figure_html(path, ["H reads <x>", "second & last"])
    inlined = re.fullmatch(r'<img alt="grid.png" src="data:image/png;base64,([^"]+)"><p>H reads &lt;x&gt;</p>'
                           r'<p>second &amp; last</p>', page)
    assert inlined and Image.open(io.BytesIO(base64.b64decode(inlined.group(1)))).getpixel((4, 3)) == (0, 255, 0)


def test_png_bytes_decode_to_the_picture():
    picture = Image.new("RGB", (7, 3), (255, 0, 0))
    png = display.png_bytes(picture)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = Image.open(io.BytesIO(png))
    assert decoded.size == (7, 3) and decoded.getpixel((6, 2)) == (255, 0, 0)


@pytest.mark.parametrize("installed, expected", [(False, tqdm.std.tqdm), (True, tqdm.auto.tqdm)])
def test_tqdm_is_the_widget_choice_only_with_ipywidgets(monkeypatch, installed, expected):
    real = display.importlib.util.find_spec
    monkeypatch.setattr(display.importlib.util, "find_spec",
                        lambda name: (real("tqdm") if installed else None) if name == "ipywidgets" else real(name))
    assert display.choose_tqdm() is expected


def test_display_is_the_one_module_that_imports_tqdm():
    # a module reaching for tqdm.auto itself would warn "IProgress not found" in every notebook
    package = Path(display.__file__).parents[1]
    importers = [path.relative_to(package).as_posix() for path in sorted(package.rglob("*.py"))
                 if re.search(r"^\s*(from|import) tqdm", path.read_text(), re.M)]
    assert importers == ["display/__init__.py"]


def test_html_lines_puts_each_line_on_its_own_and_escapes_it():
    assert display.html_lines(["a < b", "run <x>"]) == "a &lt; b<br>run &lt;x&gt;"


def test_a_count_names_its_noun_plural_but_for_one():
    assert [display.counted(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]


def test_a_png_is_embedded_as_a_data_url_that_decodes_to_it():
    png = display.png_bytes(Image.new("L", (2, 1), 255))
    url = display.data_uri(png)
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.removeprefix("data:image/png;base64,")) == png
