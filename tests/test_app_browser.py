"""The demo in a real browser: Playwright drives Debian's chromium against the app launched in-process.

One visit, step by step as a new user makes it: pick a gallery image, move the intensity slider, run and
see both images and the scores, upload a file and run again (with noise per colour channel, and as "already
noisy"), send a broken file and see the error toast. Then a phone (390x844): the run button in view without
scrolling, the gallery one class per column as its label says, a tap on a picture, and the result brought
into view.
Screenshots go to pytest's temporary folder; the README's are made by scripts/screenshots.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from app_fixtures import REPO, app_url, bad_files, photo  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
RUN_TIMEOUT_MS = 60_000  # the first model call on a busy 2-core machine can take several seconds

pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian chromium is not installed: apt-get install -y chromium"),
              pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, app_url):  # noqa: F811 - pytest fixture injection
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(app_url)
    page.locator("#run").wait_for(state="visible", timeout=RUN_TIMEOUT_MS)
    yield page
    page.close()


def wait_for_summary(page, text: str) -> str:
    summary = page.locator("#summary")
    summary.get_by_text(text).first.wait_for(timeout=RUN_TIMEOUT_MS)
    return summary.inner_text()


def test_a_first_visit(page, tmp_path):
    from playwright.sync_api import expect

    # 1. pick a gallery image: it lands in the input and is processed at once, with the default settings
    thumbnails = page.get_by_label("Thumbnail 1 of ", exact=False)
    expect(thumbnails.first).to_be_visible()
    page.get_by_label("Thumbnail 12 of 100").click()  # row 2, column 2: the second automobile
    expect(page.locator("#input-image img")).to_be_visible()
    assert "25% of pixels hit" in wait_for_summary(page, "25% of pixels hit")

    # 2. move the slider, 3. run, and see both images, the before/after slider and the scores
    page.locator("#intensity input[type=range]").fill("0.5")
    expect(page.locator("#intensity input[type=number]")).to_have_value("0.5")
    page.locator("#run").click()
    text = wait_for_summary(page, "50% of pixels hit")
    assert "PSNR" in text and "SSIM" in text and "32×32 colour" in text
    for selector in ("#noisy img", "#denoised img"):
        expect(page.locator(selector)).to_be_visible()
    expect(page.locator("#compare img")).to_have_count(2)
    expect(page.locator("#download")).to_contain_text("automobile_")
    page.screenshot(path=str(tmp_path / "result.png"), full_page=True)

    # 4. upload a file of one's own and run again
    upload = tmp_path / "my photo.png"
    Image.fromarray(photo(96, 64)).save(upload)
    page.locator("#input-image input[type=file]").set_input_files(str(upload))
    expect(page.locator("#input-image img")).to_be_visible()
    page.locator("#run").click()
    assert "96×64 colour" in wait_for_summary(page, "96×64")
    expect(page.locator("#download")).to_contain_text("my-photo-denoised")

    # noise per colour channel: coloured dots, counted as colour values
    page.locator("#per-channel input[type=checkbox]").check()
    page.locator("#run").click()
    wait_for_summary(page, "50% of colour values hit")
    page.locator("#per-channel input[type=checkbox]").uncheck()

    # "my image is already noisy": the button now only denoises, and there is nothing to score against
    page.locator("#already-noisy input[type=checkbox]").check()
    expect(page.locator("#run")).to_have_text("Denoise")
    expect(page.locator("#intensity input[type=range]")).to_be_disabled()
    expect(page.locator("#per-channel input[type=checkbox]")).to_be_disabled()
    page.locator("#run").click()
    wait_for_summary(page, "already noisy")
    page.locator("#already-noisy input[type=checkbox]").uncheck()
    expect(page.locator("#run")).to_have_text("Add noise, then denoise")

    # 5. send a file that is not an image: an error toast says so, and nothing else breaks
    bad = tmp_path / "holiday.png"
    bad.write_bytes(bad_files()["notes.png"][0])
    page.locator("#input-image input[type=file]").set_input_files(str(bad))
    page.locator("#run").click()
    toast = page.locator('[data-testid="toast-body"]')
    expect(toast).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(toast.locator('[data-testid="toast-text"]')).to_contain_text("not an image")
    expect(toast).to_have_css("opacity", "1")
    page.screenshot(path=str(tmp_path / "error.png"))
    assert "already noisy" in page.locator("#summary").inner_text(), "the last result's text stays on screen"


def in_view(page, selector: str) -> bool:
    """True when the element's box overlaps the visible viewport (what a visitor sees without scrolling)."""
    return page.evaluate("""(selector) => {
        const box = document.querySelector(selector).getBoundingClientRect();
        return box.bottom > 0 && box.top < window.innerHeight && box.height > 0;
    }""", selector)


def test_a_phone_visit(browser, app_url, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    phone = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    phone.goto(app_url)
    phone.locator("#run").wait_for(state="visible", timeout=RUN_TIMEOUT_MS)
    assert in_view(phone, "#run"), "the run button is at hand without scrolling"
    assert phone.evaluate("() => window.scrollY") == 0
    # the label says one class per column: the grid has exactly as many columns as classes
    expect(phone.locator("#gallery")).to_contain_text("one class per column")
    columns = phone.evaluate("""() => getComputedStyle(document.querySelector('#gallery .grid-container'))
                                .gridTemplateColumns.split(' ').length""")
    assert columns == 10
    first_row = phone.evaluate("""() => [...document.querySelectorAll('#gallery .thumbnail-item')]
                                  .slice(0, 11).map(e => Math.round(e.getBoundingClientRect().top))""")
    assert len(set(first_row[:10])) == 1 and first_row[10] > first_row[0], first_row
    phone.screenshot(path=str(tmp_path / "phone-start.png"))

    thumbnail = phone.get_by_label("Thumbnail 34 of 100")  # row 4, column 4: a cat
    assert in_view(phone, '[aria-label="Thumbnail 34 of 100"]'), "the gallery is on the first screen"
    thumbnail.tap()
    summary = phone.locator("#summary")
    summary.get_by_text("25% of pixels hit").first.wait_for(timeout=RUN_TIMEOUT_MS)
    assert "cat_" in phone.locator("#download").inner_text()
    expect(phone.locator("#compare img")).to_have_count(2)
    phone.wait_for_function("""() => { const b = document.querySelector('#compare').getBoundingClientRect();
                                       return b.top >= -1 && b.top < window.innerHeight / 2; }""",
                            timeout=10_000)  # the result scrolled into view, no swipe needed
    assert in_view(phone, "#summary")
    phone.screenshot(path=str(tmp_path / "phone-result.png"))
    phone.close()
