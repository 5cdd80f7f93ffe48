#!/usr/bin/env python
"""Screenshot of the demo page with a real read, for the README: starts the page on localhost with a checkpoint,
uploads word crops in headless Chromium (the system's, driven by Playwright), waits for the result and saves a PNG.

python scripts/demo_page_screenshot.py --model runs/demo_cpu --output docs/images/demo_page.png
python scripts/demo_page_screenshot.py --model runs/demo_cpu --image word.png --image other.png

Needs the `dev` or `demo` extra plus `playwright` (the Python package only; no `playwright install`: it uses
/usr/bin/chromium or $CHROMIUM, e.g. Debian's `chromium` package). The test suite (tests/test_demo_app.py) drives the
page with the same helpers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
RESULT_TIMEOUT_MS = 60_000


def find_chromium() -> str | None:
    """A Chromium or Chrome executable: $CHROMIUM, else the first of `CHROMIUM_NAMES` on the PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"] if os.access(os.environ["CHROMIUM"], os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_page(demo, port: int | None = None) -> str:
    """Launch `demo` on 127.0.0.1 in this process's background threads; returns its URL (`demo.close()` stops it)."""
    from mambaocr_hf.demo.app import launch_demo

    port = port or free_port()
    launch_demo(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}/"


def open_browser(playwright, executable: str | None = None):
    """Headless Chromium from the system (`--no-sandbox`: CI runs as root; containers often have a tiny /dev/shm)."""
    executable = executable or find_chromium()
    if executable is None:
        raise RuntimeError("No Chromium found: install Debian's `chromium` package or set $CHROMIUM.")
    return playwright.chromium.launch(
        executable_path=executable, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
    )


def upload_and_wait(page, images: Sequence[str | os.PathLike], timeout_ms: int = RESULT_TIMEOUT_MS) -> None:
    """Upload `images` through the page's file input and wait until the status line reports the read."""
    page.locator("#upload input[type=file]").set_input_files([str(path) for path in images])
    count = f"{len(images)} image{'s' if len(images) > 1 else ''}"
    page.locator("#status").get_by_text(f"Read {count} in").wait_for(timeout=timeout_ms)
    # the confidence picture has arrived and decoded
    page.wait_for_function(
        "() => { const img = document.querySelector('#picture img'); return img && img.complete && img.naturalWidth > 0 }",
        timeout=timeout_ms,
    )


def screenshot(
    model: str, output: str | os.PathLike, images: Sequence[str | os.PathLike] = (), width: int = 1280
) -> Path:
    """Start the page with `model`, read `images` (default: two of the page's synthetic examples) and save a
    full-page screenshot to `output`."""
    from playwright.sync_api import sync_playwright

    from mambaocr_hf.demo.app import build_demo, render_examples

    demo = build_demo(model)
    if not images:
        images = render_examples(2, tempfile.mkdtemp(prefix="mambaocr_shot_"), seed=1)
    url = start_page(demo)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = open_browser(playwright)
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(url)
            upload_and_wait(page, images)
            page.screenshot(path=str(output), full_page=True)
            browser.close()
    finally:
        demo.close()
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo_cpu", help="checkpoint folder, adapter folder or Hub id")
    parser.add_argument("--output", default="docs/images/demo_page.png")
    parser.add_argument("--image", action="append", default=[], help="crop(s) to read (default: two examples)")
    parser.add_argument("--width", type=int, default=1280, help="browser window width")
    args = parser.parse_args()
    print(f"Saved {screenshot(args.model, args.output, args.image, args.width)}")


if __name__ == "__main__":
    main()
