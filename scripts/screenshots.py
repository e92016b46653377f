"""Rewrite the README's screenshots under docs/: the demo after a gallery pick, on a desktop and on a phone.

The tests never touch docs/; this script is the one way these files change. It launches the demo
in-process on a free loopback port and drives Debian's chromium with Playwright, as the browser tests do.

    python scripts/screenshots.py            # docs/screenshot.png, docs/phone-start.png, docs/phone-result.png
    python scripts/screenshots.py --out DIR  # somewhere else
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 1000}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_gallery(page) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('#gallery img')]"
                           ".every(img => img.complete && img.naturalWidth > 0)", timeout=TIMEOUT_MS)


def pick_and_wait(page, thumbnail: int, intensity: str | None = None) -> None:
    """Tap gallery image `thumbnail` (1-based) and wait for its result."""
    if intensity is not None:
        page.locator("#intensity input[type=number]").fill(intensity)
        page.locator("#intensity input[type=number]").press("Enter")
    page.get_by_label(f"Thumbnail {thumbnail} of ", exact=False).click()
    page.locator("#summary").get_by_text("of pixels hit").first.wait_for(timeout=TIMEOUT_MS)
    page.locator("#compare img").nth(1).wait_for(timeout=TIMEOUT_MS)
    page.wait_for_timeout(800)  # the phone's smooth scroll to the result, and image decoding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import app
    from playwright.sync_api import sync_playwright

    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                                quiet=True, **app.LAUNCH_OPTIONS)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=DESKTOP)
            page.goto(url)
            page.locator("#run").wait_for(state="visible", timeout=TIMEOUT_MS)
            wait_for_gallery(page)
            pick_and_wait(page, 12, intensity="0.5")  # row 2, column 2: the second automobile
            page.screenshot(path=str(args.out / "screenshot.png"), full_page=True)

            phone = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            phone.goto(url)
            phone.locator("#run").wait_for(state="visible", timeout=TIMEOUT_MS)
            wait_for_gallery(phone)
            phone.screenshot(path=str(args.out / "phone-start.png"))
            pick_and_wait(phone, 34)  # row 4, column 4: a cat
            phone.screenshot(path=str(args.out / "phone-result.png"))
            browser.close()
    finally:
        app.demo.close()
    for name in ("screenshot.png", "phone-start.png", "phone-result.png"):
        print(args.out / name)


if __name__ == "__main__":
    main()
