"""The explorer in a real headless Chromium, driven by Playwright, against a real server:
what a person sees. One browser and three servers (a run, two runs compared, an attach run)
for the module; the page's checks at a desktop's width (1280 px) and a phone's (390 px).

Waits are on the page's state (a selector, a status, an expected text), never fixed sleeps:
the suite runs on a loaded machine. PERCEPTREG_SHOTS=DIR keeps the screenshots to look at.
"""

import io
import os
import shutil
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from perceptreg.runs import open_run
from perceptreg.views import explorer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = os.environ.get("PERCEPTREG_SHOTS")
WIDTHS = (1280, 390)
WAIT_MS = 60_000  # an answer under load: a loaded 2-core machine has taken seconds

pytestmark = pytest.mark.slow  # a real browser and servers: the fast lane (`-m "not slow"`) leaves it out


@pytest.fixture(scope="module")
def browser(good_run, trained_run, attach_run):
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: its absence is a broken install step
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    app = explorer.create_app(open_run(good_run))
    one, url = explorer.serve_in_background(app)
    two, compare_url = explorer.serve_in_background(explorer.create_app([open_run(good_run), open_run(trained_run)]))
    three, attach_url = explorer.serve_in_background(explorer.create_app(open_run(attach_run)))
    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"])
    yield chromium, url, compare_url, app.state.explorer, attach_url
    chromium.close()
    playwright.stop()
    one.should_exit = two.should_exit = three.should_exit = True


def expect(locator):
    from playwright.sync_api import expect
    return expect(locator)


def open_page(browser, url, width=1280, height=900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(WAIT_MS)
    page.uncaught, page.console_errors = [], []
    page.on("pageerror", lambda error: page.uncaught.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page


def shot(page, name):
    """The whole page as a PNG in $PERCEPTREG_SHOTS, to be looked at (nothing without it)."""
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}-{page.viewport_size['width']}.png"), full_page=True)


@pytest.fixture(scope="module", autouse=True)
def patient_expect():
    from playwright.sync_api import expect
    expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def page(browser):
    chromium, url, *_ = browser
    page = open_page(chromium, url)
    yield page
    assert page.uncaught == []  # no uncaught errors or promise rejections, 4xx answers included


def cards(page):
    return page.locator("[data-testid=card]")


def test_gallery_loads_more_once_and_cards_take_the_keyboard(page):
    assert cards(page).count() == 24
    assert cards(page).first.locator("img").first.get_attribute("src").startswith("data:image/png")
    assert "recon. error" in cards(page).first.inner_text() and "P(x)" in cards(page).first.inner_text()
    page.dblclick("[data-testid=more]")
    page.wait_for_function("document.querySelectorAll('[data-testid=card]').length >= 48")
    expect(page.locator("[data-testid=more]")).to_be_enabled()  # the page loaded, nothing more on its way
    indices = [cards(page).nth(i).get_attribute("data-index") for i in range(cards(page).count())]
    assert len(indices) == 48 and len(set(indices)) == 48
    cards(page).nth(2).focus()
    page.keyboard.press("Enter")
    assert page.inner_text("[data-testid=selected]").startswith(f"Image {indices[2]}:")


def test_attack_result_is_in_view_with_its_numbers_and_stale_results_go(page):
    cards(page).first.click()
    page.click("[data-testid=attack]")
    page.wait_for_selector("[data-testid=adv-prediction]")
    result = page.locator("[data-testid=attack-result]")
    assert result.get_attribute("data-adversarial") != result.get_attribute("data-clean")
    box = result.bounding_box()
    assert box["y"] + box["height"] <= 900  # above the fold at 1280x900
    numbers = page.inner_text("[data-testid=attack-numbers]")
    assert "L-inf distance 0.2" in numbers and "on x_adv:" in numbers and "%" in numbers
    assert page.evaluate("explorer.state.paths[0].length") >= 100  # the path through z: one point per step
    page.select_option("[data-testid=target]", "3")  # a new input: the old result is stale
    assert page.inner_text("[data-testid=attack-result]") == "" and page.inner_text("[data-testid=attack-numbers]") == ""
    page.fill("[data-testid=steps]", "100000")
    page.click("[data-testid=attack]")
    page.wait_for_selector("[data-testid=attack-status][data-state=error]")
    assert page.inner_text("[data-testid=attack-status]") == "steps must be at most 500"
    page.fill("[data-testid=steps]", "100")


def test_the_slider_walks_and_shows_the_original(page):
    cards(page).nth(1).click()
    assert page.get_attribute("[data-testid=edit-image]", "src") is None  # no broken image before a walk
    page.select_option("[data-testid=edit-target]", "8")
    page.click("[data-testid=edit]")
    page.wait_for_selector("[data-testid=alpha]:not([disabled])")
    first = page.get_attribute("[data-testid=edit-image]", "src")
    assert "a = 0" in page.inner_text("[data-testid=edit-caption]")
    page.fill("[data-testid=alpha]", "8")
    assert page.get_attribute("[data-testid=edit-image]", "src") != first
    assert "a = 2" in page.inner_text("[data-testid=edit-caption]")
    page.select_option("[data-testid=edit-target]", "3")
    assert page.get_attribute("[data-testid=edit-image]", "src") is None  # old frames cleared


def test_an_upload_error_is_shown_next_to_the_upload_and_clears_the_old_result(page, tmp_path):
    picture = Image.new("L", (140, 140), 0)
    ImageDraw.Draw(picture).line([(70, 20), (70, 120)], fill=255, width=14)  # a "1"
    picture.save(tmp_path / "one.png")
    page.set_input_files("[data-testid=upload]", str(tmp_path / "one.png"))
    page.wait_for_selector("[data-testid=own-prediction]")
    (tmp_path / "notes.txt").write_text("not an image")
    page.set_input_files("[data-testid=upload]", str(tmp_path / "notes.txt"))
    page.wait_for_selector("[data-testid=own-status][data-state=error]")
    assert "not a readable PNG or JPEG" in page.inner_text("[data-testid=own-status]")
    assert page.inner_text("[data-testid=own-result]") == ""
    upload, message = (page.locator(f"[data-testid={t}]").bounding_box() for t in ("upload", "own-status"))
    assert abs(message["y"] - upload["y"]) < 80  # where the person acted, not at the top of the page


def draw_a_one(page):
    canvas = page.locator("[data-testid=canvas]")
    canvas.scroll_into_view_if_needed()  # the mouse draws where the canvas is on screen
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.85, steps=10)
    page.mouse.up()


def test_a_drawing_is_perceived_and_a_blank_one_is_said_to_be_empty(page):
    logged = len(page.console_errors)
    page.click("#clear")
    page.click("[data-testid=perceive-drawing]")
    expect(page.locator("[data-testid=own-status]")).to_contain_text("The drawing is empty")
    assert page.console_errors[logged:] == []  # said on the page, not sent: no 422 in the console
    draw_a_one(page)
    page.click("[data-testid=perceive-drawing]")
    page.wait_for_selector("[data-testid=own-prediction]")
    assert "P(x): H" in page.inner_text("[data-testid=own-result]")


def test_filters_show_the_misclassified_and_sort_by_error(page):
    page.select_option("[data-testid=filter-sort]", "error")
    page.wait_for_selector("[data-testid=gallery-status][data-state=done]")
    errors = [float(t.split()[-1]) for t in page.locator("[data-testid=card-error]").all_inner_texts()]
    assert len(errors) == 24 and errors == sorted(errors, reverse=True)
    page.select_option("[data-testid=filter-show]", "misclassified")
    page.wait_for_selector("[data-testid=gallery-status][data-state=done]")
    shown = cards(page)
    assert 0 < shown.count() <= 24
    assert all("wrong" in shown.nth(i).get_attribute("class") for i in range(shown.count()))
    page.select_option("[data-testid=filter-show]", "all")
    page.select_option("[data-testid=filter-sort]", "classes")


def test_clicking_the_map_selects_that_image(page):
    index = page.evaluate("explorer.state.map.index[5]")
    assert page.inner_text("[data-testid=map-sample]") == ""  # all 1000 test images are on the map
    x, y = page.evaluate("explorer.mapPixel(explorer.state.map.runs[0].points[5])")
    chosen = click_map(page, x, y)
    # a point drawn on top of point 5 may be the one chosen: it lies where point 5 lies
    points = page.evaluate("explorer.state.map.runs[0].points")
    where = dict(zip(page.evaluate("explorer.state.map.index"), points))
    assert abs(where[chosen][0] - where[index][0]) + abs(where[chosen][1] - where[index][1]) < 0.05 * (
        max(p[0] for p in points) - min(p[0] for p in points))


def click_map(page, x, y) -> int:
    """Clicks the map where ``x, y`` is drawn; the index of the image it selected."""
    canvas = page.locator("[data-testid=map]").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    with page.expect_response(lambda response: "/api/image" in response.url) as answer:
        canvas.click(position={"x": x * box["width"] / 420, "y": y * box["height"] / 420})
    chosen = answer.value.json()["index"]
    expect(page.locator("[data-testid=selected]")).to_contain_text(f"Image {chosen}:")
    return chosen


def test_a_stopped_server_is_said_in_words(page):
    page.route("**/api/attack", lambda route: route.abort())
    cards(page).first.click()
    page.click("[data-testid=attack]")
    page.wait_for_selector("[data-testid=attack-status][data-state=error]")
    assert "does not answer" in page.inner_text("[data-testid=attack-status]")
    page.unroute("**/api/attack")


def test_a_queued_attack_says_how_many_are_ahead_until_it_runs(page, browser):
    _, _, _, model, _ = browser
    release = threading.Event()
    model.queue._worker.submit(release.wait)  # the model is busy with something else
    other = threading.Thread(target=httpx.post, args=(page.url.rstrip("/") + "/api/attack",),
                             kwargs={"json": {"index": 3, "steps": 2}, "timeout": 60})
    other.start()  # another user's attack waits first
    while model.queue.waiting < 1:
        time.sleep(0.01)
    try:
        cards(page).first.click()
        page.click("[data-testid=attack]")
        expect(page.locator("[data-testid=attack-status][data-state=queued]")).to_have_text("queued: 1 ahead of you")
    finally:
        release.set()
    other.join()
    page.wait_for_selector("[data-testid=adv-prediction]")
    assert page.get_attribute("[data-testid=attack-status]", "data-state") == "done"


def test_compare_runs_side_by_side_each_with_its_path_on_its_map(browser, trained_run):
    chromium, _, compare_url, *_ = browser
    page = open_page(chromium, compare_url)
    maps = page.locator("[data-testid=map]")
    assert maps.count() == 2 and str(trained_run) in page.inner_text("[data-testid=maps]")
    before = [maps.nth(k).screenshot() for k in range(2)]
    cards(page).first.click()
    page.click("[data-testid=attack]")
    page.wait_for_selector("[data-testid=attack-row] >> nth=1")
    rows = page.locator("[data-testid=attack-row]").all_inner_texts()
    assert len(rows) == 2 and short_name(trained_run) in rows[1] and "x_adv: H" in rows[1]
    assert page.evaluate("explorer.state.paths.map((p) => p.length)") == [102, 102]  # x, 100 steps, x_adv
    assert all(maps.nth(k).screenshot() != before[k] for k in range(2))  # a path drawn on both maps
    assert page.uncaught == []
    page.close()


def test_a_phone_gets_the_page_at_its_width(browser):
    chromium, url, *_ = browser
    page = open_page(chromium, url, 390, 844)
    assert page.evaluate("document.querySelector('meta[name=viewport]').content") == "width=device-width, initial-scale=1"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.close()


# --- at a desktop's and a phone's width ------------------------------------------------------------

def short_name(run):
    """How the page names a compared run: the end of its path that tells it from the other."""
    return "/".join(run.parts[-2:])


@pytest.fixture(scope="module", params=WIDTHS)
def width(request):
    return request.param


@pytest.fixture(scope="module")
def pages(browser, width):
    """The three explorers, each opened at ``width``; no console error by the end of the module."""
    chromium, url, compare_url, _, attach_url = browser
    opened = {name: open_page(chromium, where, width, 844 if width < 600 else 900)
              for name, where in (("one", url), ("compared", compare_url), ("attach", attach_url))}
    yield opened
    for page in opened.values():
        assert page.uncaught == [] and page.console_errors == []
        page.close()


def test_compared_runs_each_show_in_every_section_by_name(pages, good_run, trained_run):
    page, names = pages["compared"], [short_name(good_run), short_name(trained_run)]
    assert all(name in page.inner_text("[data-testid=intro]") for name in names)
    card = cards(page).first
    assert card.locator("img").count() == 3 and all(f"P(x) {name}" in card.inner_text() for name in names)
    error = card.locator("[data-testid=card-error]").inner_text().split(" · ")  # each run's error, named
    assert [part.split()[-2] for part in error] == names and error[0].startswith("recon. error ")
    card.click()
    assert all(name in page.inner_text("[data-testid=selected]") for name in names)
    page.fill("[data-testid=steps]", "10")
    page.click("[data-testid=attack]")
    expect(page.locator("[data-testid=attack-row]")).to_have_count(2)
    rows = page.locator("[data-testid=attack-row]").all_inner_texts()
    assert [row.split(":")[0] for row in rows] == names
    page.select_option("[data-testid=edit-target]", "8")
    page.click("[data-testid=edit]")
    page.wait_for_selector("[data-testid=alpha]:not([disabled])")
    page.fill("[data-testid=alpha]", "8")
    assert page.inner_text("[data-testid=edit-caption]").startswith(f"{names[0]} a = 2: H")
    assert page.inner_text("[data-testid=edit-compared]").startswith(f"{names[1]} a = 2: H")
    draw_a_one(page)
    page.click("[data-testid=perceive-drawing]")
    expect(page.locator("[data-testid=own-prediction-compared]")).to_contain_text(f"P(x) {names[1]}: H")
    assert f"P(x) {names[0]}: H" in page.inner_text("[data-testid=own-prediction]")
    shot(page, "compared")


def test_switching_the_layer_keeps_the_image_and_attacks_it_at_the_new_layer(pages):
    page = pages["attach"]
    assert "walk" not in page.inner_text("[data-testid=intro]") and not page.is_visible("[data-testid=walk]")
    assert "choose the layer above" in page.inner_text("[data-testid=intro]")
    cards(page).nth(3).click()
    index = cards(page).nth(3).get_attribute("data-index")
    page.fill("[data-testid=steps]", "5")
    page.click("[data-testid=attack]")
    page.wait_for_selector("[data-testid=adv-prediction]")
    with page.expect_request(lambda request: "/api/attack" in request.url) as again:
        page.select_option("[data-testid=layer]", "fc1")
    assert again.value.post_data_json["index"] == int(index) and again.value.post_data_json["layer"] == "fc1"
    page.wait_for_selector("[data-testid=adv-prediction]")  # the attack again, shown at fc1
    expect(page.locator("[data-testid=gallery-status]")).to_have_attribute("data-state", "done")
    assert page.inner_text("[data-testid=selected]").startswith(f"Image {index}:")
    assert page.locator(f".card.selected[data-index='{index}']").count() == 1
    shot(page, "attach-layer-fc1")
    page.select_option("[data-testid=layer]", "stem")
    page.wait_for_selector("[data-testid=adv-prediction]")


def test_the_walk_offered_and_its_tick_labels_under_the_thumb(pages):
    page = pages["one"]
    assert "walk it toward a class" in page.inner_text("[data-testid=intro]")
    cards(page).nth(5).click()
    page.select_option("[data-testid=edit-target]", "8")
    page.click("[data-testid=edit]")
    page.wait_for_selector("[data-testid=alpha]:not([disabled])")
    labels = page.locator("[data-testid=alpha-scale] span")
    for value, label in (("0", "0"), ("4", "1"), ("8", "2")):  # a = 2 sat under "1.5" before
        page.fill("[data-testid=alpha]", value)
        tick = labels.get_by_text(label, exact=True).bounding_box()
        assert abs(thumb_centre(page) - (tick["x"] + tick["width"] / 2)) < 2, label
    shot(page, "walk")


def thumb_centre(page) -> float:
    """Where the slider's thumb (drawn blue) is, found in a screenshot of the slider."""
    slider = page.locator("[data-testid=alpha]")
    page.evaluate("document.activeElement.blur()")  # no focus ring: the thumb is the only blue
    png = slider.screenshot()  # scrolled into view first
    box = slider.bounding_box()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    blue = np.abs(pixels - [0, 102, 204]).sum(-1) < 60
    columns = np.nonzero(blue.any(0))[0]
    scale = pixels.shape[1] / box["width"]
    return box["x"] + (columns.min() + columns.max() + 1) / 2 / scale


def test_a_click_on_the_map_shows_the_image_with_h_answer(pages):
    page = pages["one"]
    cards(page).first.click()  # image 0 selected; the point clicked is another image's
    x, y = page.evaluate("explorer.mapPixel(explorer.state.map.runs[0].points[8])")
    index = click_map(page, x, y)
    assert index != 0
    chosen = page.locator("[data-testid=map-selected]")
    expect(chosen.locator("img")).to_have_count(2)  # x and P(x), captioned with H's answer
    assert chosen.locator("img").first.get_attribute("src").startswith("data:image/png")
    words = chosen.inner_text()
    assert f"image {index}, label" in words and "P(x): H" in words and "%" in words
    shot(page, "map-click")


def test_the_words_fit_the_layout(browser, width):
    chromium, url, *_ = browser
    page = open_page(chromium, url, width)  # as it first shows
    words = page.inner_text("body")
    page.close()
    assert "No image selected: pick one in the gallery" in words
    assert "on the left" not in words and "on the right" not in words  # the gallery is above on a phone


def test_an_upload_and_a_drawing_each_clear_the_other(pages, tmp_path):
    page = pages["one"]
    draw_a_one(page)
    page.click("[data-testid=perceive-drawing]")
    expect(page.locator("[data-testid=own-result]")).to_contain_text("x: your drawing")
    picture = Image.new("L", (140, 140), 0)
    ImageDraw.Draw(picture).line([(70, 20), (70, 120)], fill=255, width=14)
    picture.save(tmp_path / "one.png")
    page.set_input_files("[data-testid=upload]", str(tmp_path / "one.png"))
    expect(page.locator("[data-testid=own-result]")).to_contain_text("x: your upload one.png")
    assert "your drawing" not in page.inner_text("[data-testid=own-result]")
    assert page.evaluate("[...document.getElementById('canvas').getContext('2d').getImageData(0, 0, 280, 280).data]"
                         ".every((v, i) => i % 4 === 3 || v === 0)")  # the drawing is gone
    shot(page, "upload")
    draw_a_one(page)
    page.click("[data-testid=perceive-drawing]")
    expect(page.locator("[data-testid=own-result]")).to_contain_text("x: your drawing")
    assert page.input_value("[data-testid=upload]") == ""  # the upload is gone
    page.click("#clear")
    page.click("[data-testid=perceive-drawing]")  # an empty drawing: said, no request, no console error
    expect(page.locator("[data-testid=own-status]")).to_have_text("The drawing is empty: draw on the black square first.")
    assert page.inner_text("[data-testid=own-result]") == ""


def test_a_colour_model_is_drawn_on_in_colour_on_grey(browser, tmp_path_factory, monkeypatch):
    from click.testing import CliRunner
    from helpers import colour_folder

    from perceptreg.cli import main

    chromium, *_ = browser
    root = tmp_path_factory.mktemp("colour")
    monkeypatch.setenv("PERCEPTREG_JUDGES", str(root / "judges"))  # no standing judge is made for it
    pets = colour_folder(root / "pets", 4)
    result = CliRunner().invoke(main, ["train", "--dataset", pets, "--epochs", "1", "--out", str(root / "r"), "--quiet"])
    assert result.exit_code == 0, result.output
    server, url = explorer.serve_in_background(explorer.create_app(open_run(root / "r")))
    try:
        page = open_page(chromium, url)
        assert page.is_visible("[data-testid=pen]") and "Your own image" in page.inner_text("body")
        page.click("[data-testid=perceive-drawing]")
        expect(page.locator("[data-testid=own-status]")).to_have_text("The drawing is empty: draw on the grey square first.")
        page.fill("[data-testid=pen]", "#00ff00")
        draw_a_one(page)
        centre = page.evaluate("[...document.getElementById('canvas').getContext('2d').getImageData(140, 140, 1, 1).data]")
        corner = page.evaluate("[...document.getElementById('canvas').getContext('2d').getImageData(5, 5, 1, 1).data]")
        assert centre[:3] == [0, 255, 0] and corner[:3] == [128, 128, 128]  # the pen's colour on grey
        page.click("[data-testid=perceive-drawing]")
        expect(page.locator("[data-testid=own-result]")).to_contain_text("x: your drawing")
        assert page.uncaught == [] and page.console_errors == []
        shot(page, "colour-drawing")
        page.close()
    finally:
        server.should_exit = True
