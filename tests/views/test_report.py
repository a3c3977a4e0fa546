import base64
import html
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import USER_NET
from PIL import Image

from perceptreg import data, runs
from perceptreg.attaching.attach_run import read_layers
from perceptreg.cli import main
from perceptreg.core.errors import PerceptregError
from perceptreg.figures import plots
from perceptreg.views.report import SECTIONS, attach_sections, build_report, write_report

READING = re.compile(r"^H: (\S+) \d{1,3} %( ✗)?$")


# --- a small DOM of the report, from the standard library's parser -----------------------------

class Node:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children).strip()

    def find_all(self, tag=None, cls=None) -> list["Node"]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if (tag is None or child.tag == tag) and (cls is None or cls in child.attrs.get("class", "").split()):
                    found.append(child)
                found += child.find_all(tag, cls)
        return found


class Tree(HTMLParser):
    VOID = {"img", "meta", "br", "hr", "link", "input"}

    def __init__(self, text):
        super().__init__()
        self.root = self.node = Node("root", {})
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.node)
        self.node.children.append(node)
        if tag not in self.VOID:
            self.node = node

    def handle_endtag(self, tag):
        node = self.node
        while node.tag != tag and node.parent is not None:
            node = node.parent
        self.node = node.parent or self.root

    def handle_data(self, text):
        self.node.children.append(text)


def sections(text) -> dict[str, Node]:
    return {s.attrs["id"]: s for s in Tree(text).root.find_all("section")}


def summary_of(text) -> dict[str, str]:
    summary = sections(text)["summary"].find_all("dl")[0]
    return dict(zip((n.text() for n in summary.find_all("dt")), (n.text() for n in summary.find_all("dd"))))


def cells(node) -> list[dict]:
    """Each grid cell of a section: its label, H's reading, whether it is marked wrong, its alt text."""
    found = []
    for cell in node.find_all("figure", "cell"):
        reading = cell.find_all("span", "reading")
        found.append({"label": cell.find_all("span")[0].text(), "reading": reading[0].text().replace("\xa0", " ") if reading else "",
                      "wrong": "wrong" in cell.attrs["class"].split(), "alt": cell.find_all("img")[0].attrs["alt"]})
    return found


def assert_self_contained(text):
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", text)
    assert "http://" not in text and "https://" not in text
    images = Tree(text).root.find_all("img")
    for img in images:
        assert img.attrs["src"].startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(img.attrs["src"].split(",", 1)[1]))).verify()
    return images


def assert_captions_agree_with_highlight(found):
    """Every reading is "H: class conf %", and an x (or x_adv) is marked wrong exactly when
    H's class is not its true class."""
    readings = [c for c in found if c["reading"]]
    assert readings and all(READING.match(c["reading"]) for c in readings)
    for cell in readings:
        true = re.match(r"x, true (\S+)", cell["label"])
        if true:
            assert cell["wrong"] == (READING.match(cell["reading"])[1] != true[1]), cell


# --- runs ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_run(good_run, tmp_path_factory):
    """A copy of good_run with every command's output, and its report."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(good_run, run)
    runner = CliRunner()
    for args in (["attack", str(run), "--steps", "3", "--pool", "20", "--n", "4"],
                 ["attack", str(run), "--steps", "3", "--from-noise", "--n", "1"],
                 ["evaluate-attack", str(run), "--steps", "3", "--images", "30", "--adaptive", "0,10"],
                 ["interpolate", str(run), "--target", "3", "--steps", "3", "--images", "3", "--fit-images", "4",
                  "--alphas", "0,1,2"]):
        assert runner.invoke(main, args).exit_code == 0, args
    out = run.parent / "r" / "report.html"
    result = runner.invoke(main, ["report", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return run, out


# --- tests ---------------------------------------------------------------------------------------

def test_report_of_a_bare_run_names_what_is_missing(good_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    (run / "perception.png").unlink()
    text = build_report(run)
    assert list(sections(text)) == [anchor for _, anchor, _ in SECTIONS]
    assert len(assert_self_contained(text)) == 1  # the training curves
    for command in (f"perceptreg perceive {run}", f"perceptreg evaluate-attack {run}",
                    f"perceptreg attack {run} --from-noise", f"perceptreg interpolate {run} --target 8"):
        assert command in text
    assert "not part of a sweep" in text


def test_report_of_a_full_run_is_self_contained_and_complete(full_run):
    run, out = full_run
    text = out.read_text()
    parts = sections(text)
    assert_self_contained(text)
    assert "attack success rate" in text and "3-NN pixels" in text
    assert "baseline AUC: pixel statistic" in text and "Adaptive attacks on run" in text
    assert "baseline AUC: blur residual (no model)" in text and "baseline AUC: feature squeezing, 2x2 median" in text
    assert "No " not in text.replace("No image", "")  # nothing reported missing but the sweep
    assert "Fraction of images read as class 3" in text
    meta = {m.attrs.get("name"): m.attrs.get("content") for m in Tree(text).root.find_all("meta")}
    assert meta["viewport"] == "width=device-width, initial-scale=1"
    # plots stay whole; grids become captioned cells: 20 pairs, 4 attacks of 4 (and failure cases of 4),
    # 10 noise of 3, 2 x 3 edits of 3
    plots_ = [i for i in Tree(text).root.find_all("img") if "plot" in i.attrs.get("class", "")]
    assert len(plots_) == 4  # training curves, ROC, flip curves, change maps
    attack_cells = len(cells(parts["attacks"])) - 30
    assert len(cells(parts["perception"])) == 40 and attack_cells >= 16 and attack_cells % 4 == 0
    assert len(cells(parts["edits"])) == 24  # each row: x, then 3 alphas


def test_summary_states_the_runs_numbers(full_run):
    run, out = full_run
    summary = summary_of(out.read_text())
    last = runs.read_metrics(run)[-1]
    assert summary["test accuracy"] == f"{100 * last['test_accuracy']:.1f} % after epoch {last['epoch']}"
    assert summary["reconstruction error"].startswith(f"{last['test_recon_mse']:.4f} mean squared error per pixel")
    assert summary["lambda"].startswith("0.01 (weight of the reconstruction error")
    assert summary["mode"].startswith("joint")
    assert summary["model"] == "the paper's mnist network (perceptreg.core.models.mnist), latent z of shape 32"
    assert summary["data"] == "mnist5k, 1000 training images"
    assert summary["H"].startswith("H(x) = C(F(x)), the classifier's prediction")
    assert summary["P(x)"].startswith("P(x) = D(F(x)), the model's perception")


def test_perception_captions_are_hs_prediction_and_misclassified_are_marked(full_run):
    run, out = full_run
    found = cells(sections(out.read_text())["perception"])
    model, test = runs.open_run(run).model(), runs.open_run(run).data()[1]
    index = data.spread_over_classes(test.labels, 20)
    with torch.no_grad():
        confidence, predicted = model.classify(data.to_float(test.images[index])).softmax(1).max(1)
    xs = found[::2]
    assert [c["reading"].removesuffix(" ✗") for c in xs] == [
        f"H: {test.classes[p]} {100 * c:.0f} %" for p, c in zip(predicted.tolist(), confidence.tolist())]
    assert [c["wrong"] for c in xs] == (predicted != test.labels[index]).tolist()
    assert [c["reading"].endswith("✗") for c in xs] == (predicted != test.labels[index]).tolist()
    assert [c["label"] for c in found[1::2]] == ["P(x)"] * 20
    assert "P: " not in out.read_text()


def test_every_grid_captions_h_the_same_way(full_run):
    _, out = full_run
    parts = sections(out.read_text())
    for name in ("perception", "attacks", "edits"):
        assert_captions_agree_with_highlight(cells(parts[name]))


def test_latent_edit_grids_have_headings_and_described_images(full_run):
    _, out = full_run
    edits = sections(out.read_text())["edits"]
    headings = [h.text() for h in edits.find_all("h3")]
    assert [h.split(":")[0] for h in headings] == ["Per-image direction", "Mean direction"]
    alts = [c["alt"] for c in cells(edits)]
    assert sum("edited along the per-image direction, D(F(x) + 2 dz); H: " in a for a in alts) == 3
    assert sum("edited along the mean direction, D(F(x) + 0 dz); H: " in a for a in alts) == 3
    assert sum(a.endswith(", the original x") for a in alts) == 6  # first in each row of both grids
    assert "averaged over 4 training images" in headings[1]


def test_config_shows_what_was_set_grouped(full_run):
    _, out = full_run
    config = sections(out.read_text())["config"]
    groups = [h.text() for h in config.find_all("h3")]
    assert groups == ["Model", "Objective", "Data", "Optimization", "Reproducibility"]
    rows = [[td.text() for td in tr.find_all("td")] for tr in config.find_all("tr")]
    rows = dict(r for r in rows if r)
    assert all(v not in ("-", "None", "") for v in rows.values()), rows
    assert rows["architecture"] == "mnist" and rows["lambda"] == "0.01"
    assert rows["training images"] == "1000" and rows["batch size"] == "32" and rows["Adam betas"] == "0.9, 0.999"
    # unset (None), post-hoc-only and switches left at their default are left out
    assert not {"decoder epochs", "decoder batch size", "lr drop factor", "torch.compile", "built by"} & set(rows)
    labels = [tr.find_all("td")[0].text() for tr in config.find_all("tr") if tr.find_all("td")]
    assert len(labels) == len(set(labels))  # nothing twice (architecture was)


def test_loss_plot_puts_cross_entropy_and_reconstruction_on_panels_of_their_own(good_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    drawn = []
    png = plots._png  # the report's plots are drawn in memory, inlined
    monkeypatch.setattr(plots, "_png", lambda figure: drawn.append(
        {ax.get_title(): ([line.get_label() for line in ax.lines], list(ax.get_xticks()))
         for ax in figure.axes}) or png(figure))
    build_report(run)
    panels = drawn[0]
    assert panels["cross-entropy (training)"][0] == ["train CE"]
    assert panels["reconstruction error (training)"][0] == ["train reconstruction"]
    assert all(float(t).is_integer() for _, ticks in panels.values() for t in ticks)


def test_report_of_an_attach_run(attach_run):
    text = build_report(attach_run)
    parts = sections(text)
    assert list(parts) == [anchor for _, anchor, _ in attach_sections()]
    assert_self_contained(text)
    layers = read_layers(runs.open_run(attach_run))
    judge = layers.layers[0].judge
    assert f"Read by {judge} (its accuracy on the clean images x: " in parts["layers"].text()  # its judge, and on x
    settings = [tr.find_all("td")[0].text() for tr in parts["config"].find_all("tr") if tr.find_all("td")]
    assert "model kwargs" not in settings and "layers" in " ".join(settings)  # none given: no empty row
    summary = summary_of(text)
    assert summary["test accuracy"] == f"{100 * layers.accuracy:.1f} %"
    assert summary["reconstruction error"].endswith(
        f"stem {layers.layers[0].test_recon_mse:.4f}, fc1 {layers.layers[1].test_recon_mse:.4f}")
    assert summary["lambda"].startswith("not used") and summary["mode"].startswith("post-hoc")
    assert summary["model"].startswith(f"your model, built by {USER_NET}:build") and "stem, fc1" in summary["model"]
    assert summary["P_layer(x)"].startswith("P_layer(x), the perception at a layer")
    found = cells(parts["layers"])
    assert [c["label"] for c in found[:3]] == [f"x, true {found[0]['label'][-1]}", "P_stem(x)", "P_fc1(x)"]
    assert "<span>P_stem<wbr>(x)</span>" in text  # a narrow cell wraps before the bracket, not mid-word
    assert_captions_agree_with_highlight(found)
    assert [h.text().split(",")[0] for h in parts["layers"].find_all("h3")] == [
        "Test images x", "Attacked images: x"]
    assert [h.text() for h in parts["perception"].find_all("h3")] == ["Layer stem", "Layer fc1"]
    assert "perceptreg perceive" in parts["perception"].text() and "--layer fc1" in parts["perception"].text()


def test_an_attach_run_from_before_the_metrics_digest_without_its_metrics_has_no_curves(attach_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(attach_run, run)
    written = json.loads((run / runs.MODEL_META).read_text())
    written.pop("metrics_sha256")  # model.json as attach wrote it before issue 38
    (run / runs.MODEL_META).write_text(json.dumps(written))
    assert "No training curves in this run" not in sections(build_report(run))["layers"].text()
    (run / runs.METRICS).unlink()
    assert "No training curves in this run" in sections(build_report(run))["layers"].text()


def test_report_of_one_layer_names_it_in_its_file_title_table_and_figure(attach_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(attach_run, run)
    result = CliRunner().invoke(main, ["perceive", str(run), "--layer", "fc1", "--n", "4", "--read-size", "20"])
    assert result.exit_code == 0, result.output
    assert (run / "perception_fc1.png").is_file()
    written = write_report(run, layer="fc1")
    assert written.path == run / "report_fc1.html" and written.sections[1] == "Layers"
    assert written._repr_html_() == (f'<p><a href="{run}/report_fc1.html" target="_blank">{html.escape(written.title)}'
                                     f'</a>: {", ".join(written.sections)}</p>')
    text = (run / "report_fc1.html").read_text()
    parts = sections(text)
    assert "layer fc1" in text.split("</title>")[0]
    assert [tr.find_all("td")[0].text() for tr in parts["layers"].find_all("tr") if tr.find_all("td")] == ["fc1"]
    assert parts["perception"].find_all("img") and "perceptreg perceive" not in parts["perception"].text()
    with pytest.raises(PerceptregError, match="choose one of stem, fc1"):
        build_report(run, layer="fc2")


def test_the_report_of_an_attach_run_shows_the_attacks_of_every_layer_attacked(attach_run, tmp_path):
    """Attack figures of two layers (as `attack --layer` writes them): the report without
    --layer shows both, each under its layer's name, not the deepest layer's alone."""
    run = tmp_path / "run"
    shutil.copytree(attach_run, run)
    for layer in ("stem", "fc1"):
        shutil.copy(run / runs.LAYERS_ATTACK_PNG, run / runs.for_layer(runs.ATTACK, layer))
    parts = sections(build_report(run))
    attacks = parts["attacks"]
    assert [h.text() for h in attacks.find_all("h3")][:1] == ["Layer stem"]
    assert "Layer fc1" in [h.text() for h in attacks.find_all("h3")]
    both = len(attacks.find_all("img"))  # the cells of two grids
    (run / runs.for_layer(runs.ATTACK, "stem")).unlink()
    attacks = sections(build_report(run))["attacks"]
    assert "Layer stem" not in [h.text() for h in attacks.find_all("h3")] and 2 * len(attacks.find_all("img")) == both


@pytest.mark.slow  # over 2 s alone: the fast lane leaves it out
def test_report_reads_well_on_a_phone(full_run):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip(f"no Chromium at {chromium}")
    from playwright.sync_api import sync_playwright

    _, out = full_run
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        width, page_width = page.evaluate("[window.innerWidth, document.documentElement.scrollWidth]")
        # captions wider than their image would run into the next image's
        overflowing = page.evaluate("""() => [...document.querySelectorAll('figure.cell')].flatMap(cell =>
            [...cell.querySelectorAll('figcaption > span')].filter(
                span => span.scrollWidth > cell.getBoundingClientRect().width + 0.5).map(span => span.textContent))""")
        # the attack's measures (a <pre> once) and the adaptive table fit the phone: no sideways scrolling
        sideways = page.evaluate("""() => [...document.querySelectorAll('#attacks table, #attacks pre')].filter(
            e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent.slice(0, 40))""")
        browser.close()
    assert width == 390 and page_width <= 390  # laid out for the phone, nothing runs off its side
    assert sideways == []
    assert overflowing == []
    assert all(url.startswith(("file:", "data:")) for url in requests)


def test_a_report_writes_nothing_into_the_run_folder_but_itself(good_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "elsewhere.html")])
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # its plots are inlined, not drawn there
    text = (tmp_path / "elsewhere.html").read_text()
    assert_self_contained(text)
    assert text.count('<img class="plot"') == 1  # the training curves, inlined


def test_a_damaged_figure_is_one_error_line(good_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    (run / runs.PERCEPTION).write_bytes(b"\x89PNG cut short")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = CliRunner().invoke(main, ["report", str(run)])
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # no training curves left drawn
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith(f"Error: {run / runs.PERCEPTION}: not a readable image")


@pytest.mark.parametrize("name, content, message", [
    (runs.ATTACK_METRICS, "{}", "{file}: field settings: field required"),  # its schema
    # the schema is the typed summary's: what the report would have failed to read is refused naming the key
    (runs.ATTACK_METRICS, '{"settings": {}, "runs": {"a": {}}}', "{file}: field settings.attack: field required"),
    (runs.INTERPOLATION_METRICS, "[1]", "{file}: field the top level: input should be a valid dictionary"),
    (runs.SWEEP_JSON, '{"rows": []}', "{file}: field config: field required"),
])
def test_a_results_file_without_what_the_report_reads_is_one_error_line(good_run, tmp_path, name, content, message):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    (run / name).write_text(content)
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("Error: " + message.format(file=run / name, name=name, run=run)), result.output
    assert not (run / runs.REPORT).exists()


@pytest.mark.parametrize("layer", [None, "stem"])
def test_a_damaged_attack_file_of_a_layer_is_named_in_the_error(attach_run, tmp_path, layer):
    # an attach run's attack measurements are per layer (the deepest, fc1, by default): the
    # error names the file read, not attack_metrics.json, which is not there
    run = tmp_path / "run"
    shutil.copytree(attach_run, run)
    name = runs.for_layer(runs.ATTACK_METRICS, layer or "fc1")
    (run / name).write_text("{}")
    result = CliRunner().invoke(main, ["report", str(run)] + (["--layer", layer] if layer else []))
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith(f"Error: {run / name}: field settings")
    assert f"`perceptreg evaluate-attack {run} --layer {layer or 'fc1'}`" in result.output


def _sealed_results(name, good_run, attach_run, tmp_path):
    """A folder holding the results file ``name`` as its command seals it: (folder, the file)."""
    from perceptreg.storage.schema import write_sealed

    if name == runs.LAYERS_JSON:
        shutil.copytree(attach_run, tmp_path / "run")  # its layers.json as `attach` wrote it
        return tmp_path / "run", tmp_path / "run" / name
    if name == runs.SWEEP_JSON:
        shutil.copy(Path(__file__).parents[1] / "fixtures" / "main-f9ee0de" / name, tmp_path / name)  # as sweep wrote it
        return tmp_path, tmp_path / name
    shutil.copytree(good_run, tmp_path / "run")
    if name == runs.ATTACK_METRICS:  # as evaluate-attack wrote it (at f9ee0de), every key its schema asks for
        shutil.copy(Path(__file__).parents[1] / "adversarial" / "data" / "attack_metrics_f9ee0de.json",
                    tmp_path / "run" / name)
    else:
        from helpers import edits_file

        mean = {"flip_curve": {"H(image)": [0.1, 0.9], "C(latent)": [0.1, 0.9]}, "flip_interval": {}}
        edited = {"target": 3, "alphas": [0.0, 2.0], "directions": {"mean": mean}}
        write_sealed(tmp_path / "run" / name, edits_file({"run": edited}, eps=0.25))  # every key its schema asks for
    return tmp_path / "run", tmp_path / "run" / name


@pytest.mark.parametrize("name", [runs.ATTACK_METRICS, runs.INTERPOLATION_METRICS, runs.LAYERS_JSON, runs.SWEEP_JSON])
def test_a_flipped_bit_in_a_results_file_is_one_error_line_naming_it(good_run, attach_run, tmp_path, name):
    folder, path = _sealed_results(name, good_run, attach_run, tmp_path)
    text = path.read_bytes()
    # the first decimal of a number 0.x: a digit stays a digit and the number stays in [0, 1),
    # still JSON of the schema's types and inside its ranges: only the checksum can tell
    at = re.search(rb"0\.(\d)", text).start(1)
    path.write_bytes(text[:at] + bytes([text[at] ^ 0x01]) + text[at + 1:])
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith(f"Error: {path}: its content differs from its checksum; the file is damaged")
    assert not (folder / runs.REPORT).exists()


def test_report_of_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(PerceptregError, match="no config.json; is this a run folder"):
        write_report(tmp_path)


def test_sweep_summary_names_the_best_and_worst_with_their_intervals(tmp_path):
    from helpers import sweep_file

    from perceptreg.storage import fileio
    from perceptreg.views.report_summary import sweep_summary

    member = {"probes": {"left_digit": 0.5}}
    summary = sweep_file({v: [member, member] for v in ("0.001", "10", "post-hoc")}, lams=[0.001, 10.0],
                         post_hoc=True, seeds=[0, 1], epochs=20, train_size=None)
    for row, (accuracy, ci95) in zip(summary["rows"], ((0.9, 0.01), (0.8, 0.02), (0.9, 0.03))):
        row["test_accuracy"] = {"mean": accuracy, "ci95": ci95}
    fileio.write_json(tmp_path / runs.SWEEP_JSON, summary)
    items = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", sweep_summary(tmp_path)))
    assert items["best test accuracy"] == "90.0 % ± 1.0 (lambda 0.001)"  # a tie: the first in the table
    assert items["worst test accuracy"] == "80.0 % ± 2.0 (lambda 10)"
    assert items["seeds"] == "0, 1 (mean ± 95 % interval over 2 seeds)" and items["epochs"] == "20 per model"
    assert items["data"] == "mnist-strips, all its training images"
    text = sweep_summary(tmp_path)
    assert "probe: NAME" in text and "centre to edge" in text and "mlp probe: NAME" not in text  # the table's columns


def test_a_section_passes_on_an_error_that_names_its_own_file(tmp_path):
    from perceptreg.core.errors import PerceptregError
    from perceptreg.views import report as report_module

    @report_module._reads(runs.ATTACK_METRICS, "evaluate-attack")
    def attack_section(target):  # its results file is fine, its figure is damaged
        raise PerceptregError(f"{tmp_path / runs.ATTACK}: not a readable image")

    with pytest.raises(PerceptregError, match=rf"^{tmp_path / runs.ATTACK}: not a readable image$"):
        attack_section(tmp_path)  # not "attack_metrics.json ... is not as `perceptreg evaluate-attack` writes it"


def test_a_reading_wider_than_its_cell_wraps_at_its_spaces_not_inside_its_percent():
    """"H: automobile 46 % ✗" under a 96-pixel image breaks after "automobile", never inside
    "46 %" or before its mark, and no rule keeps it on one line to run into the next image."""
    from perceptreg.views import report_html

    cell = {"box": (0, 0, 4, 4), "label": "x, true truck", "caption": "H: automobile 46 %", "wrong": True, "alt": ""}
    shown = report_html._cell(Image.new("RGB", (4, 4)), cell, 1)
    assert "H: automobile 46\u00a0%\u00a0<span" in shown
    reading_rule = next(rule for rule in report_html.STYLE.split("\n") if rule.startswith(".cell .reading"))
    assert "nowrap" not in reading_rule


def test_a_terminal_line_in_the_report_shows_its_commands_as_code_and_escapes_the_rest():
    from perceptreg.views.report_html import prose

    assert prose("no CNN judge (`perceptreg train-judge`) & x < y") == \
        "no CNN judge (<code>perceptreg train-judge</code>) &amp; x &lt; y"
