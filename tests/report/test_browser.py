"""Open the rendered report in a real headless Chromium and look at it as a reader would.

Driven with the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4,
messages are JSON terminated by a NUL byte), so no Python package beyond the standard library is
needed. Checks, at a 1280 px wide window: no console error or uncaught exception, every <img> decoded
(naturalWidth > 0), one table row per run, nothing wider than the window (no horizontal scrolling). Full-page
screenshots of a CPU report (real runner), a GPU report (the committed H200 throughput_7b results) and the
trend page are saved in the test's tmp folder, and copied to ``$HARNESS_SCREENSHOT_DIR`` when it is set.

Install on Debian (CI): ``apt-get install -y chromium chromium-driver``. Skipped when Chromium is absent.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(Debian: apt-get install -y chromium chromium-driver)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio")
TIMEOUT_S = 60


class CDP:
    """Minimal DevTools client over a pipe: send commands, collect events, wait for replies."""

    def __init__(self, binary: str, profile: Path):
        # Chromium reads commands from fd 3 and writes replies/events to fd 4. Our pipe ends are moved to
        # fds >= 10 (close-on-exec) so that dup2 onto 3 and 4 in the child cannot clobber one of them.
        def high(fd: int) -> int:
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            return moved

        to_chrome_r, self._w = map(high, os.pipe())
        self._r, from_chrome_w = map(high, os.pipe())

        def fds() -> None:  # in the child before exec; dup2 makes 3 and 4 inheritable, the rest stay CLOEXEC
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the DevTools pipe (exit status {self.proc.poll()})")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            os.write(self._w, json.dumps({"id": 0, "method": "Browser.close", "params": {}}).encode() + b"\0")
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.proc.kill()  # our own child, by its handle
            self.proc.wait()
        finally:
            for fd in (self._w, self._r):
                try:
                    os.close(fd)
                except OSError:
                    pass


WIDTH = 1280


def inspect_page(url: str, profile: Path) -> dict:
    cdp = CDP(CHROMIUM, profile)
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            cdp.send(domain, session=session)
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        cdp.send("Page.navigate", {"url": url}, session=session)
        cdp.wait_event("Page.loadEventFired")

        def evaluate(expression: str):
            result = cdp.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                   "awaitPromise": True}, session=session)
            assert "exceptionDetails" not in result, result
            return result["result"].get("value")

        # wait until every image has finished decoding (data URIs decode asynchronously)
        evaluate("Promise.all([...document.images].map(i => i.decode().catch(() => null)))")
        page = evaluate("""({
            images: [...document.images].map(i => ({complete: i.complete, w: i.naturalWidth, alt: i.alt})),
            runRows: document.querySelectorAll('tr[data-run]').length,
            runIds: [...document.querySelectorAll('tr[data-run]')].map(r => r.dataset.run),
            height: Math.ceil(document.documentElement.scrollHeight),
            scrollWidth: document.documentElement.scrollWidth,
            wide: [...document.querySelectorAll('table, img, pre')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                  .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)),
            title: document.title,
            scripts: document.querySelectorAll('script:not([type="application/json"])').length,
            alerted: typeof window.__alerted !== 'undefined'
        })""")
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": WIDTH, "height": min(page["height"], 16000), "deviceScaleFactor": 1, "mobile": False},
                 session=session)
        shot = cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        page["png"] = base64.b64decode(shot["data"])
        errors = []
        for e in cdp.events:
            method, params = e.get("method"), e.get("params") or {}
            if method == "Runtime.exceptionThrown":
                errors.append(params.get("exceptionDetails", {}).get("text"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(json.dumps(params.get("args"))[:300])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(params["entry"].get("text"))
            elif method == "Page.javascriptDialogOpening":
                errors.append("dialog opened: " + str(params.get("message")))
        page["errors"] = errors
        return page
    finally:
        cdp.close()


@pytest.fixture(scope="module")
def report(results_tree, tmp_path_factory):
    from harness.report.render import render_report
    from harness.results.load import load_records

    folder, source, _ = results_tree
    records = load_records([folder])
    out = tmp_path_factory.mktemp("reports")
    return render_report(records, out, name=f"browser-{source}"), records


def keep(shot: Path) -> None:
    folder = os.environ.get("HARNESS_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)
    print(f"screenshot: {shot}")


def look(path: Path, tmp_path: Path, name: str) -> dict:
    page = inspect_page(path.resolve().as_uri(), tmp_path / "profile")
    shot = tmp_path / f"{name}.png"
    shot.write_bytes(page["png"])
    keep(shot)
    assert page["errors"] == []
    assert page["scripts"] == 0 and not page["alerted"]
    assert page["images"] and all(i["complete"] and i["w"] > 0 for i in page["images"]), page["images"]
    assert page["scrollWidth"] <= WIDTH and page["wide"] == [], page["wide"]  # readable without scrolling sideways
    assert page["png"][:8] == b"\x89PNG\r\n\x1a\n" and len(page["png"]) > 10_000
    return page


def test_report_in_headless_chromium(report, tmp_path):
    path, records = report
    page = look(path, tmp_path, "cpu-report")
    assert page["runRows"] == len(records)
    assert sorted(page["runIds"]) == sorted(r.run_id for r in records)


def test_gpu_report_in_headless_chromium(tmp_path):
    from harness.report.render import render_report
    from harness.results.load import load_records

    records = load_records([REPO_ROOT / "results" / "h200" / "throughput_7b"])
    path = render_report(records, tmp_path / "reports", name="gpu-throughput_7b")
    page = look(path, tmp_path, "gpu-report")
    assert page["runRows"] == len(records) == 9


def test_trend_page_in_headless_chromium(tmp_path):
    from harness.cli.report import history_files
    from harness.report.render import render_trend

    files = history_files([REPO_ROOT / "results" / d for d in ("h200", "h200-warm", "h200-regression", "cpu")])
    path = render_trend(files, tmp_path / "reports", warn=lambda m: None)
    look(path, tmp_path, "trend")


def test_index_in_headless_chromium(report, tmp_path):
    path, _ = report
    page = inspect_page((path.parent / "index.html").resolve().as_uri(), tmp_path / "profile")
    assert page["errors"] == []
    assert page["title"] == "Benchmark reports"
