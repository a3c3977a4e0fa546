import base64
import io
import re
import shutil
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from PIL import Image

from perceptreg.cli import main
from perceptreg.errors import PerceptregError
from perceptreg.report import SECTIONS, build_report, write_report


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.images, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])


def parse(text):
    parser = Collect()
    parser.feed(text)
    return parser


def assert_self_contained(text, parser):
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", text)
    assert "http://" not in text and "https://" not in text
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()


def test_report_of_a_bare_run_names_what_is_missing(good_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    (run / "perception.png").unlink()
    text = build_report(run)
    parser = parse(text)
    assert parser.sections == [anchor for _, anchor, _ in SECTIONS]
    assert_self_contained(text, parser)
    assert len(parser.images) == 1  # the training curves
    for command in (f"perceptreg perceive {run}", f"perceptreg evaluate-attack {run}",
                    f"perceptreg attack {run} --from-noise", f"perceptreg interpolate {run} --target 8"):
        assert command in text
    assert "not part of a sweep" in text
    assert "test accuracy" in text and "lam" in text


def test_report_of_a_full_run(good_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    runner = CliRunner()
    for args in (["attack", str(run), "--steps", "3", "--pool", "20", "--n", "4"],
                 ["attack", str(run), "--steps", "3", "--from-noise", "--n", "1"],
                 ["evaluate-attack", str(run), "--steps", "3", "--images", "30", "--adaptive", "0,10"],
                 ["interpolate", str(run), "--target", "3", "--steps", "3", "--images", "3", "--fit-images", "4",
                  "--alphas", "0,1,2"]):
        assert runner.invoke(main, args).exit_code == 0, args
    result = runner.invoke(main, ["report", str(run), "--out", str(tmp_path / "r" / "report.html")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "r" / "report.html").read_text()
    parser = parse(text)
    assert_self_contained(text, parser)
    # training curves, perception, attack, ROC, noise, flip, change, two interpolation grids
    assert len(parser.images) == 9
    assert "attack success rate" in text and "3-NN pixels" in text
    assert "baseline AUC: pixel statistic" in text and "Adaptive PGD on run" in text
    assert "No " not in text.replace("No image", "")  # nothing reported missing but the sweep
    assert "Fraction of images read as class 3" in text


def test_report_of_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(PerceptregError, match="no config.json; is this a run folder"):
        write_report(tmp_path)
