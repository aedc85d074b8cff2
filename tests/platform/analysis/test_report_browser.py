"""The HTML report opened in a real headless Chromium (WebDriver over HTTP on 127.0.0.1).

Needs Debian's ``chromium`` and ``chromium-driver``
(``apt-get install -y chromium chromium-driver``); skipped, saying so, where
they are not installed. The screenshot is kept under the test's tmp dir
(``report.png``) and its path printed.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from regtune.platform.analysis.report import write_html
from regtune.platform.analysis.run import analyze_tables
from tests.platform.analysis.tables import (
    HEALTHY,
    OVERFIT,
    SHORT,
    UNDERFIT,
    UNSTABLE,
    epochs_table,
    final_report,
    last_epoch_only,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1300,2200",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason=f"Chromium/ChromeDriver not installed (install with: {INSTALL})",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def webdriver(tmp_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    port = _free_port()
    driver = subprocess.Popen(
        [str(DRIVER), f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0)
    session = ""
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/status").json()["value"]["ready"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chromedriver did not start within 30 s")
            time.sleep(0.2)
        options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]}
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}}
        reply = client.post("/session", json=caps).json()
        session = reply["value"]["sessionId"]
        yield client, session
    finally:
        if session:
            client.delete(f"/session/{session}")
        client.close()
        driver.terminate()
        driver.wait(timeout=10)


def _run(client: httpx.Client, session: str, script: str) -> Any:
    reply = client.post(f"/session/{session}/execute/sync", json={"script": script, "args": []})
    return reply.json()["value"]


def _load(client: httpx.Client, session: str, url: str, timeout_s: float = 120.0) -> None:
    """Open ``url`` and wait until the whole document is parsed and every image decoded.

    On a loaded machine ChromeDriver can answer the navigation with a renderer
    timeout while Chromium is still parsing; reading the page then would see only
    its first part. So the load is confirmed from inside the page.
    """
    client.post(f"/session/{session}/url", json={"url": url})
    deadline = time.monotonic() + timeout_s
    script = (
        "return document.readyState === 'complete' && "
        "Array.from(document.images).every(i => i.complete);"
    )
    while _run(client, session, script) is not True:  # an error answer is a dict
        if time.monotonic() > deadline:
            pytest.fail(f"the report did not finish loading within {timeout_s:.0f} s")
        time.sleep(0.2)


def test_report_renders_in_chromium(webdriver: tuple[httpx.Client, str], tmp_path: Path) -> None:
    client, session = webdriver
    curves = {"o": OVERFIT, "u": UNDERFIT, "x": UNSTABLE, "h": HEALTHY, "s": SHORT}
    configs = {
        k: {"penalties.l2": v, "model.dropout": d}
        for k, v, d in zip(
            curves, [1e-6, 1e-1, 1e-3, 1e-4, 1e-2], [0.1, 0.2, 0.3, 0.0, 0.1], strict=True
        )
    }
    extra: dict[str, dict[str, list[float]]] = {
        k: {"ece": [0.1 - 0.01 * i for i in range(8)]} for k in curves
    }
    # The best trial's final report: reliability bins and per-group rates with intervals.
    extra["h"].update(last_epoch_only(final_report()))
    analysis = analyze_tables(epochs_table(curves, configs, extra), name="browser")
    assert analysis.best is not None and analysis.best.trial_id == "h"
    report = write_html([analysis], tmp_path / "report.html")

    _load(client, session, report.as_uri())
    state = _run(
        client,
        session,
        """
        const imgs = Array.from(document.querySelectorAll('img.fig'));
        const circles = Array.from(document.querySelectorAll('svg.front circle'));
        return {
          title: document.title,
          images: imgs.length,
          rendered: imgs.filter(i => i.complete && i.naturalWidth > 100).length,
          tables: document.querySelectorAll('table').length,
          rows: document.querySelectorAll('table tbody tr').length,
          circles: circles.length,
          tooltip: circles.length ? circles[circles.length - 1].querySelector('title').textContent
                                  : '',
          svgWidth: document.querySelector('svg.front').getBoundingClientRect().width,
          captions: Array.from(document.querySelectorAll('caption')).map(c => c.textContent),
          bestFigures: imgs.filter(i => i.alt.startsWith('browser-best-')
                                        && i.naturalWidth > 100).map(i => i.alt).sort(),
        };
        """,
    )
    assert state["title"] == "regtune analysis: browser"
    assert state["images"] >= 5 and state["rendered"] == state["images"]
    assert state["tables"] >= 5 and state["rows"] >= 10
    # Four points: the unstable trial keeps its last epoch (no early stopping restores
    # an earlier one), whose losses are NaN, so it has no value to plot.
    assert state["circles"] == 4 and state["svgWidth"] > 100
    assert state["tooltip"].startswith("trial ") and "val_acc = " in state["tooltip"]
    # The best trial's calibration curve and per-group panel render, with their tables.
    assert state["bestFigures"] == [
        "browser-best-calibration",
        "browser-best-curves",
        "browser-best-groups",
    ]
    assert any(c.startswith("calibration curve (test split): ECE") for c in state["captions"])
    assert "per-group rates with their intervals" in state["captions"]
    # Interactivity: clicking a figure zooms it; clicking a header sorts the table.
    zoomed = _run(
        client,
        session,
        "const i = document.querySelector('img.fig'); i.click(); return i.className;",
    )
    assert "big" in zoomed

    shot = client.get(f"/session/{session}/screenshot").json()["value"]
    path = tmp_path / "report.png"
    path.write_bytes(base64.b64decode(shot))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    print(f"report screenshot: {path}")
