"""The comparison page in a real browser: Debian's Chromium, driven by Playwright, against a real `zoo serve`.

The server is a subprocess on a free loopback port with two tiny random-weight models. The test paints a
stroke with mouse events, ticks both models, runs them and reads the result images back: outside the
painted mask every pixel equals the photo, inside the models' fills differ from it.
"""

import base64
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
# Headless and off the network: no sync, no component or field-trial downloads, no QUIC probing.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason=f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)")


def zoo_command() -> list[str]:
    script = Path(sys.executable).with_name("zoo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "zoo.cli"]


@pytest.fixture(scope="module")
def server():
    """`zoo serve --port 0` (the kernel picks a free port; the first line says which)."""
    command = zoo_command() + ["serve", "--port", "0", "--threads", "1", "--model", "deepfill_v2,tiny",
                               "--model", "mat,tiny"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = match.group(1)
        deadline = time.monotonic() + 30
        while True:  # the line comes just before uvicorn accepts; wait for the health endpoint
            try:
                if httpx.get(url + "api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not come up"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()  # SIGTERM: uvicorn shuts down cleanly, then re-raises the signal as the exit status
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    stderr = proc.stderr.read()
    assert code in (0, -signal.SIGTERM) and "Traceback" not in stderr, (code, stderr)


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(server)
        page.wait_for_selector("#models input[type=checkbox]")
        yield page
        context.close()


def photo(path: Path, width=96, height=80) -> np.ndarray:
    """A smooth colour gradient with texture: every model's fill differs from it."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 / width, y * 255 / height, 128 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)], axis=-1)
    pixels = rgb.clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def decode_data_url(url: str) -> np.ndarray:
    head, body = url.split(",", 1)
    assert head == "data:image/png;base64", head
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(body))).convert("RGB"))


def load_photo(page, tmp_path) -> np.ndarray:
    pixels = photo(tmp_path / "photo.png")
    page.set_input_files("#image-file", str(tmp_path / "photo.png"))
    page.wait_for_function("document.querySelector('#status').textContent.includes('paint the hole')")
    return pixels


def paint(page, points, size=None):
    if size is not None:
        page.fill("#brush-size", str(size))
        page.dispatch_event("#brush-size", "input")
    box = page.locator("#sketch-canvas").bounding_box()
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def test_paint_run_two_models_and_read_the_results_back(page, tmp_path):
    original = load_photo(page, tmp_path)
    page.click("#clear")
    paint(page, [(0.25, 0.35), (0.55, 0.5), (0.7, 0.65)], size=30)
    for box in page.locator("#models input[type=checkbox]").all():
        box.check()
    page.click("#run")
    page.wait_for_function("document.querySelectorAll('#results img.result-image').length === 2 && "
                           "[...document.querySelectorAll('#results img.result-image')].every(i => i.complete)")
    assert page.locator("#error").is_hidden()
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000

    sent = decode_data_url(page.evaluate("window.zoo.lastMask"))
    assert set(np.unique(sent)) == {0, 255}  # the page decided the brush's soft edge before sending
    hole = sent[..., 0] == 255
    assert hole.shape == original.shape[:2] and 0.05 < hole.mean() < 0.6
    assert not hole[:, :10].any() and not hole[:, -10:].any()  # the stroke stayed where it was painted

    results = page.evaluate("[...document.querySelectorAll('#results figure.result')].map(f => "
                            "[f.dataset.model, f.querySelector('img').src])")
    assert sorted(name for name, _ in results) == ["deepfill_v2", "mat"]
    for name, url in results:
        filled = decode_data_url(url)
        assert filled.shape == original.shape, name
        np.testing.assert_array_equal(filled[~hole], original[~hole], err_msg=name)
        changed = np.abs(filled.astype(int) - original.astype(int)).max(axis=-1) > 2
        assert changed[hole].mean() > 0.5, (name, changed[hole].mean())

    captions = page.locator("#results figcaption").all_inner_texts()
    assert all("random weights" in c and re.search(r"\d+\.\d\d s", c) for c in captions), captions
    assert "random (untrained) weights" in page.inner_text("#random-warning")

    # Hold O: every result shows the original photo; let go: the results come back.
    first = page.locator("#results img.result-image").first
    result_src = first.get_attribute("src")
    page.keyboard.down("o")
    assert first.get_attribute("src").startswith("blob:")
    page.keyboard.up("o")
    assert first.get_attribute("src") == result_src


def test_a_mask_over_the_whole_photo_shows_the_servers_one_line_error(page, tmp_path):
    load_photo(page, tmp_path)
    paint(page, [(0.01, 0.01), (0.99, 0.01), (0.99, 0.5), (0.01, 0.5), (0.01, 0.99), (0.99, 0.99)], size=200)
    page.locator("#models input[type=checkbox]").first.check()
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert "marks every pixel as hole" in page.inner_text("#error")
    page.click("#undo")  # the stroke is gone again: the page's undo restores the empty mask
    assert page.evaluate("window.zoo.state.undo.length") == 0



def test_drop_paste_mask_upload_download_and_variants(page, tmp_path):
    pixels = photo(tmp_path / "dropped.png")
    image_url = "data:image/png;base64," + base64.b64encode((tmp_path / "dropped.png").read_bytes()).decode()
    for event in ("drop", "paste"):  # what a drag from the desktop and Ctrl+V deliver: a File in a DataTransfer
        page.evaluate("""async ([url, kind]) => {
            const file = new File([await (await fetch(url)).blob()], kind + ".png", {type: "image/png"});
            const data = new DataTransfer();
            data.items.add(file);
            const event = kind === "drop" ? new DragEvent("drop", {dataTransfer: data, bubbles: true})
                                          : new ClipboardEvent("paste", {clipboardData: data, bubbles: true});
            (kind === "drop" ? document.getElementById("stage") : document).dispatchEvent(event);
        }""", [image_url, event])
        page.wait_for_function(f"window.zoo.state.imageName === '{event}.png'")

    mask = np.zeros(pixels.shape[:2], np.uint8)
    mask[20:50, 30:70] = 255
    Image.fromarray(mask).save(tmp_path / "holes.png")
    page.set_input_files("#mask-file", str(tmp_path / "holes.png"))
    with page.expect_download() as download:
        page.click("#download-mask")
    saved = np.asarray(Image.open(download.value.path()).convert("L"))
    np.testing.assert_array_equal(saved, mask)  # the uploaded mask, exactly, back out

    for box in page.locator("#models input[type=checkbox]").all():
        box.check()
    page.fill("#seed", "3")
    page.click("#variants")
    page.wait_for_function("document.querySelectorAll('#results img.result-image').length === 5")
    captions = page.locator("#results figcaption").all_inner_texts()
    names = page.evaluate("[...document.querySelectorAll('#results figure.result')].map(f => f.dataset.model)")
    assert names == ["deepfill_v2"] + ["mat"] * 4
    assert [re.search(r"seed (\d+)", c).group(1) for c in captions[1:]] == ["3", "4", "5", "6"]
    np.testing.assert_array_equal(decode_data_url(page.evaluate("window.zoo.lastMask"))[..., 0], mask)
    hole = mask > 0
    fills = [decode_data_url(src) for src in page.evaluate(
        "[...document.querySelectorAll('#results img.result-image')].map(i => i.src)")]
    for out in fills:
        np.testing.assert_array_equal(out[~hole], pixels[~hole])
    assert (fills[1][hole] != fills[2][hole]).any()  # two seeds, two completions
