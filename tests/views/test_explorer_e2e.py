"""The explorer in a real headless Chromium, driven by Playwright, against a real server:
what a person sees. One server and one browser for the module."""

import os
import shutil
import threading
import time

import httpx
import pytest
from PIL import Image, ImageDraw

from perceptreg.runs import open_run
from perceptreg.views import explorer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser(good_run, trained_run):
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: its absence is a broken install step
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    app = explorer.create_app(open_run(good_run))
    one, url = explorer.serve_in_background(app)
    two, compare_url = explorer.serve_in_background(explorer.create_app([open_run(good_run), open_run(trained_run)]))
    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"])
    yield chromium, url, compare_url, app.state.explorer
    chromium.close()
    playwright.stop()
    one.should_exit = two.should_exit = True


def expect(locator):
    from playwright.sync_api import expect
    return expect(locator)


def open_page(browser, url, width=1280, height=900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(20_000)
    page.uncaught = []
    page.on("pageerror", lambda error: page.uncaught.append(str(error)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page


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
    page.wait_for_timeout(300)
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


def test_a_drawing_is_perceived_and_a_blank_one_is_said_to_be_empty(page):
    page.click("[data-testid=perceive-drawing]")
    expect(page.locator("[data-testid=own-status]")).to_contain_text("the image is empty")
    box = page.locator("[data-testid=canvas]").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.85, steps=10)
    page.mouse.up()
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
    box = page.locator("[data-testid=map]").bounding_box()
    page.locator("[data-testid=map]").click(position={"x": x * box["width"] / 420, "y": y * box["height"] / 420})
    # a point drawn on top of point 5 may be the one chosen: it lies where point 5 lies
    chosen = int(page.inner_text("[data-testid=selected]").split(":")[0].removeprefix("Image "))
    points = page.evaluate("explorer.state.map.runs[0].points")
    where = dict(zip(page.evaluate("explorer.state.map.index"), points))
    assert abs(where[chosen][0] - where[index][0]) + abs(where[chosen][1] - where[index][1]) < 0.05 * (
        max(p[0] for p in points) - min(p[0] for p in points))


def test_a_stopped_server_is_said_in_words(page):
    page.route("**/api/attack", lambda route: route.abort())
    cards(page).first.click()
    page.click("[data-testid=attack]")
    page.wait_for_selector("[data-testid=attack-status][data-state=error]")
    assert "does not answer" in page.inner_text("[data-testid=attack-status]")
    page.unroute("**/api/attack")


def test_a_queued_attack_says_how_many_are_ahead_until_it_runs(page, browser):
    *_, model = browser
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
    chromium, _, compare_url, _ = browser
    page = open_page(chromium, compare_url)
    maps = page.locator("[data-testid=map]")
    assert maps.count() == 2 and str(trained_run) in page.inner_text("[data-testid=maps]")
    before = [maps.nth(k).screenshot() for k in range(2)]
    cards(page).first.click()
    page.click("[data-testid=attack]")
    page.wait_for_selector("[data-testid=attack-row] >> nth=1")
    rows = page.locator("[data-testid=attack-row]").all_inner_texts()
    assert len(rows) == 2 and str(trained_run) in rows[1] and "x_adv: H" in rows[1]
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
