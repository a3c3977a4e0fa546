"""The explorer in a real headless Chromium, driven by Playwright, against a real server."""

import os
import shutil

import pytest
from PIL import Image, ImageDraw

from perceptreg import explorer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def page(good_run):
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: its absence is a broken install step
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    server, url = explorer.serve_in_background(explorer.create_app(good_run))
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"])
    page = browser.new_page()
    page.set_default_timeout(20_000)
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    yield page
    browser.close()
    playwright.stop()
    server.should_exit = True


def test_gallery_loads(page):
    assert page.locator("[data-testid=card]").count() == 24
    assert page.locator("[data-testid=card] img").first.get_attribute("src").startswith("data:image/png")


def test_attack_from_the_page_changes_the_prediction(page):
    page.locator("[data-testid=card]").first.click()
    page.click("[data-testid=attack]")
    page.wait_for_selector("[data-testid=adv-prediction]")
    result = page.locator("[data-testid=attack-result]")
    assert result.get_attribute("data-adversarial") != result.get_attribute("data-clean")
    assert "x_adv: H" in page.inner_text("[data-testid=attack-result]")


def test_slider_changes_the_picture(page):
    page.locator("[data-testid=card]").nth(1).click()
    page.select_option("[data-testid=edit-target]", "8")
    page.click("[data-testid=edit]")
    page.wait_for_selector("[data-testid=alpha]:not([disabled])")
    first = page.get_attribute("[data-testid=edit-image]", "src")
    assert "a = 0" in page.inner_text("[data-testid=edit-caption]")
    page.fill("[data-testid=alpha]", "8")
    assert page.get_attribute("[data-testid=edit-image]", "src") != first
    assert "a = 2" in page.inner_text("[data-testid=edit-caption]")


def test_an_upload_is_perceived(page, tmp_path):
    picture = Image.new("L", (140, 140), 0)
    ImageDraw.Draw(picture).line([(70, 20), (70, 120)], fill=255, width=14)  # a "1"
    picture.save(tmp_path / "one.png")
    page.set_input_files("[data-testid=upload]", str(tmp_path / "one.png"))
    page.wait_for_selector("[data-testid=own-prediction]")
    assert page.get_attribute("[data-testid=own-result]", "data-prediction") in [str(d) for d in range(10)]


def test_a_drawing_is_perceived(page):
    box = page.locator("[data-testid=canvas]").bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 140, box["y"] + 240, steps=10)
    page.mouse.up()
    page.evaluate("document.querySelector('[data-testid=own-result]').replaceChildren()")
    page.click("[data-testid=perceive-drawing]")
    page.wait_for_selector("[data-testid=own-prediction]")
    assert "P(x): H" in page.inner_text("[data-testid=own-result]")
