"""The demo page in a real browser: Debian's headless Chromium, driven by Selenium through chromedriver.

A person's path: open the page served by uvicorn, choose the astronaut photo in the file input, wait for
the answer, see one box drawn on the canvas and a probability bar with a percentage for every class.
Offline: Chromium and chromedriver are Debian packages (``.ci/run`` installs them), Selenium gets both
paths explicitly so it never looks for or downloads a driver.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ferlab.infer.serve import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def server(tiny_weights):
    """uvicorn serving the app on a free localhost port, in a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(str(tiny_weights), precision="fp32")
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert thread.is_alive() and time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def browser(tmp_path):
    assert Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file(), (
        "chromium and chromedriver are needed: apt-get install -y chromium chromium-driver (see .ci/run)"
    )
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_astronaut_shows_box_and_probabilities(server, browser, tmp_path):
    from skimage import data

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(photo, quality=92)

    browser.get(server)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: "fernet_xs" in d.find_element(By.ID, "model").text)  # /models answered
    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    browser.save_screenshot(str(tmp_path / "serve_page.png"))
    status = browser.find_element(By.ID, "status").text
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", status
    assert "1 face found in astronaut.jpg" in status

    # one box, drawn on the canvas: the pixel in the middle of its top edge has the box's colour
    canvas = browser.find_element(By.ID, "canvas")
    assert canvas.is_displayed()
    boxes = json.loads(canvas.get_attribute("data-boxes"))
    assert len(boxes) == 1
    (x1, y1, x2, y2), color = boxes[0]["box"], boxes[0]["color"]
    assert 0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 512
    pixel = browser.execute_script(
        "const c = document.getElementById('canvas');"
        "return Array.from(c.getContext('2d').getImageData(arguments[0], arguments[1], 1, 1).data);",
        round((x1 + x2) / 2),
        round(y2),
    )
    want = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    assert max(abs(a - b) for a, b in zip(pixel[:3], want)) <= 8, (pixel, color)

    # one card per face, a row per class with a bar and a percentage; the top row is the label
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .face")
    assert len(cards) == 1
    rows = cards[0].find_elements(By.CSS_SELECTOR, ".prob")
    names = [r.find_element(By.CSS_SELECTOR, ".name").text for r in rows]
    assert names == ["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry"]
    pcts = [float(r.find_element(By.CSS_SELECTOR, ".pct").text.rstrip("%")) for r in rows]
    assert all(r.find_element(By.CSS_SELECTOR, ".pct").text.endswith("%") for r in rows)
    assert abs(sum(pcts) - 100) < 0.5
    top = cards[0].find_element(By.CSS_SELECTOR, ".prob.top .name").text
    assert top == names[pcts.index(max(pcts))] == cards[0].get_attribute("data-label")
    widths = [r.find_element(By.CSS_SELECTOR, ".fill").value_of_css_property("width") for r in rows]
    assert float(widths[pcts.index(max(pcts))].rstrip("px")) > 0
    assert (tmp_path / "serve_page.png").stat().st_size > 10_000


def test_page_reports_a_bad_file(server, browser, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo\n")
    browser.get(server)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "error"
    )
    status = browser.find_element(By.ID, "status").text
    assert "415" in status and "not an image" in status
