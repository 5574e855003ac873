"""The app in a real browser: Debian's chromium driven by Playwright (skipped when chromium is absent).

Loads the page, picks an example photo and clip, runs Preview, moves the frame slider, runs Render, waits
for the video, and checks that a text file uploaded as the video shows the pipeline's error in the page.
Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("playwright")
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

CHROMIUM = Path(os.environ.get("INTERNET_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from internet.app.settings import StudioLimits
    from internet.app.studio import Studio
    from internet.pipeline import Animator

    limits = StudioLimits(max_seconds=30, preview_seconds=1.0)
    return Studio(Animator(None), limits, work_root=tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="module")
def url(studio):
    import app

    demo = app.build_demo(studio)
    _, local_url, _ = app.launch(demo, studio.limits, server_name="127.0.0.1", server_port=_free_port(),
                                 prevent_thread_lock=True, quiet=True)  # fmt: skip
    yield local_url
    demo.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh profile: no state from other runs
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1440, "height": 1000},
        )  # fmt: skip
        yield context
        context.close()


@pytest.fixture
def page(browser, url):
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.goto(url, wait_until="load")
    page.wait_for_selector("#preview-btn")
    yield page
    page.close()


def test_preview_inspect_and_render_an_example(page: Page):
    page.screenshot(path=str(ARTIFACTS / "01-loaded.png"), full_page=True)
    page.locator("#photo-examples button").first.click()
    page.locator("#clip-examples button").first.click()
    expect(page.locator("#source img")).to_be_visible()
    expect(page.locator("#driving video")).to_have_count(1)

    # Short runs keep the test fast: 1 s at 10 fps, 256².
    page.locator("#settings button").first.click()
    _set_number(page, "#max-seconds", 1)
    _set_number(page, "#fps", 10)
    page.locator("#size label", has_text="256").click()

    page.locator("#preview-btn").click()
    expect(page.locator("#preview-video video")).to_have_attribute("src", _any, timeout=120_000)
    tile = page.locator(".tile img").first
    expect(tile).to_be_visible(timeout=30_000)
    expect(page.locator("#status")).to_contain_text("10 frames")
    page.screenshot(path=str(ARTIFACTS / "02-preview.png"), full_page=True)

    before = page.locator(".tile img").nth(5).get_attribute("src")
    _set_number(page, "#frame", 7)
    expect(page.locator(".tile img").nth(5)).not_to_have_attribute("src", before or "", timeout=30_000)
    page.locator("#export-btn").click()
    expect(page.locator("#exported")).to_contain_text(re.compile(r"overlays_frame_0007\s*\.png.*anchors_preview"))
    page.screenshot(path=str(ARTIFACTS / "03-frame-7.png"), full_page=True)

    page.locator("#render-btn").click()
    expect(page.locator("#result-video video")).to_have_attribute("src", _any, timeout=120_000)
    expect(page.locator("#status")).to_contain_text("Render: 10 frames")
    expect(page.locator("#downloads")).to_contain_text(re.compile(r"result\s*\.mp4.*anchors\s*\.json"))
    page.wait_for_timeout(1000)  # let the video's first frame paint for the screenshot
    _close_toasts(page)
    page.screenshot(path=str(ARTIFACTS / "04-render.png"), full_page=True)
    assert _not_blank(ARTIFACTS / "04-render.png")

    page.get_by_role("tab", name="Diagnostics").click()
    expect(page.get_by_text("Warp error per frame")).to_be_visible()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "05-diagnostics.png"), full_page=True)


def test_a_text_file_as_the_video_shows_an_error(page: Page, tmp_path):
    page.locator("#photo-examples button").first.click()
    # The upload widget itself refuses a .txt with a warning...
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a video\n")
    page.locator("#driving input[type=file]").set_input_files(str(notes))
    expect(page.get_by_text("Invalid file type: notes.txt")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "06-text-file-refused.png"))
    # ...and text named like a video reaches the pipeline, whose one-line error is shown.
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video either\n")
    page.locator("#driving input[type=file]").set_input_files(str(fake))
    expect(page.locator("#driving video")).to_have_count(1)
    page.locator("#preview-btn").click()
    expect(page.get_by_text("notes.mp4 is not a video")).to_be_visible(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "07-not-a-video.png"))
    assert "Traceback" not in page.content()


def test_cancel_stops_a_render(page: Page, studio):
    """A full 3 s render at 512² takes several seconds; Cancel stops it and leaves no result behind."""
    page.locator("#photo-examples button").nth(1).click()
    page.locator("#clip-examples button").nth(1).click()
    expect(page.locator("#driving video")).to_have_count(1)
    expect(page.locator("#source img")).to_be_visible()
    before = set(studio.folders.root.rglob("result.mp4"))
    page.locator("#render-btn").click()
    expect(page.locator("#result-video")).to_contain_text(re.compile(r"\d+/90 frames"), timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "08-rendering.png"))
    page.locator("#cancel-btn").click()
    expect(page.locator("#result-video")).not_to_contain_text("frames", timeout=10_000)
    page.wait_for_timeout(2000)  # the render thread stops at its next frame
    assert len(studio.cancels) == 0  # nothing is running any more
    assert set(studio.folders.root.rglob("result.mp4")) == before  # and nothing was written
    expect(page.locator("#result-video video")).to_have_count(0)


# ----------------------------------------------------------------------------------------------- helpers
_any = re.compile(r".+")


def _set_number(page: Page, elem_id: str, value: float) -> None:
    box = page.locator(f"{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def _close_toasts(page: Page) -> None:
    for button in page.locator(".toast-close, [data-testid='toast-close']").all():
        button.click()


def _not_blank(path: Path) -> bool:
    pixels = np.asarray(Image.open(path).convert("L"), np.float32)
    return float(pixels.std()) > 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
