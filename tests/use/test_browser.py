"""The page in a real headless browser: type, submit, read the verdict; it must equal the API's answer.
With three classes the page shows every class's probability (class names are user strings: shown as text).

uvicorn serves the app on 127.0.0.1 (a free port) in a background thread; Debian's chromium is driven by
playwright (no `playwright install`: executable_path points at /usr/bin/chromium). Skipped, saying why,
only outside CI when chromium is missing; in CI (CI=true) a missing chromium is a failure.
"""

import json
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from stages3 import with_label_names
from test_predict import stage_path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {CHROMIUM} is missing: .ci/run installs Debian's chromium", pytrace=False)
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium); the browser test needs it", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serving(model_dir):
    """Serve `model_dir` on a free port in a background thread; yields the base URL."""
    import uvicorn

    from distill_lora.use.serve import create_app

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(model_dir), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(finished_run):
    yield from serving(stage_path(finished_run, "teacher"))


# class names that would break a page that put them into HTML or a script unescaped
EVIL_NAMES = ["<b>hate</b> speech", 'offensive & "rude"', "</script>neither"]


@pytest.fixture(scope="module")
def server3(tmp_path_factory, finished_run3):
    run = finished_run3["output"]
    yield from serving(with_label_names(run / "seed-0" / "teacher", tmp_path_factory.mktemp("evil"), EVIL_NAMES))


def api_predict(base: str, text: str) -> dict:
    req = urllib.request.Request(
        f"{base}/api/predict", data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["prediction"]


def read_verdict(page) -> tuple[str, str]:
    page.wait_for_function(
        "() => { const v = document.getElementById('verdict').textContent; return v && v !== '…'; }", timeout=20_000
    )
    return page.inner_text("#verdict"), page.inner_text("#prob")


def test_page_shows_the_apis_verdict(server, tmp_path):
    from playwright.sync_api import sync_playwright

    text = "they are vermin and garbage"
    want = api_predict(server, text)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # (a 400 answer is logged as a console error too; only script and CSP failures count here)
            page.on("console", lambda m: "Content Security Policy" in m.text and errors.append(m.text))
            page.goto(server + "/")
            assert "Teacher (fine-tuned)" in page.inner_text("#model")
            page.fill("#text", text)
            page.click("#submit")
            verdict, prob = read_verdict(page)
            assert verdict == want["label"]
            assert f"= {want['prob_positive']:.4f}" in prob and "teacher, seed 0" in prob
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            # bad input (blank text passes the browser's `required`): the error is shown, the page still works
            page.fill("#text", "   ")
            page.click("#submit")
            assert read_verdict(page)[0] == "error" and "empty" in page.inner_text("#prob")
            page.fill("#text", "lovely sunny park")
            page.click("#submit")
            assert read_verdict(page)[0] == api_predict(server, "lovely sunny park")["label"]
            assert not errors, errors  # e.g. a script blocked by the Content-Security-Policy
        finally:
            browser.close()


def test_page_shows_every_class_and_escapes_their_names(server3):
    from playwright.sync_api import sync_playwright

    text = "they are vermin and garbage"
    want = api_predict(server3, text)
    ranked = sorted(EVIL_NAMES, key=lambda name: -want["probabilities"][name])  # most probable first
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: "Content Security Policy" in m.text and errors.append(m.text))
            page.goto(server3 + "/")
            assert page.inner_text("h1") == "Which class is it?"
            assert page.inner_text("#classes") == "Classes: " + " · ".join(EVIL_NAMES)
            page.fill("#text", text)
            page.click("#submit")
            verdict, prob = read_verdict(page)
            assert verdict == want["label"] == ranked[0]
            assert prob.startswith(f"p = {want['probabilities'][verdict]:.4f}") and "teacher, seed 0" in prob
            assert page.eval_on_selector_all("#dist .class", "cells => cells.map(c => c.textContent)") == ranked
            shown = page.eval_on_selector_all("#dist .p", "cells => cells.map(c => c.textContent)")
            assert shown == [f"{want['probabilities'][name]:.4f}" for name in ranked]
            bars = page.eval_on_selector_all("#dist progress", "bars => bars.map(b => b.value)")
            assert bars == pytest.approx([want["probabilities"][name] for name in ranked], abs=1e-6)
            assert sum(bars) == pytest.approx(1.0, abs=1e-6)
            assert page.locator("b").count() == 0  # a class name never became markup
            assert not errors, errors
        finally:
            browser.close()
