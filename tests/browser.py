"""Headless Chromium driven over its DevTools protocol (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4; nothing but the standard
library). :func:`inspect_page` loads a page and reports its audio elements, images,
console errors, failed loads and width, and saves a full-page screenshot."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: Waits until every <audio> has its metadata (or an error), then describes the page.
PAGE_STATE_JS = """
(async () => {
  const audios = [...document.querySelectorAll('audio')];
  const settle = a => new Promise(done => {
    if (a.readyState >= 1 || a.error) return done();
    a.addEventListener('loadedmetadata', done, {once: true});
    a.addEventListener('error', done, {once: true});
    a.querySelectorAll('source').forEach(s => s.addEventListener('error', done, {once: true}));
    a.load();
  });
  await Promise.race([Promise.all(audios.map(settle)), new Promise(r => setTimeout(r, TIMEOUT_MS))]);
  await Promise.all([...document.images].map(i => i.complete ? null : i.decode().catch(() => null)));
  return {
    audio: audios.map(a => ({src: a.currentSrc || a.src, duration: a.duration, readyState: a.readyState,
                             error: a.error ? a.error.code : null})),
    images: [...document.images].map(i => ({src: i.currentSrc || i.src, naturalWidth: i.naturalWidth,
                                            complete: i.complete})),
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
  };
})()
"""


def find_chromium() -> str | None:
    """The Chromium executable: ``$CHROMIUM`` or the first of :data:`CANDIDATES` on PATH."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class DevToolsError(RuntimeError):
    pass


class Chromium:
    """One headless browser; :meth:`call` sends a DevTools command and returns its result,
    keeping the events that arrive meanwhile in :attr:`events`."""

    def __init__(self, executable: str, width: int = 1366, height: int = 768):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_child, self._write_fd = os.pipe()
        self._read_fd, from_child = os.pipe()

        def child_fds() -> None:  # the protocol's fixed descriptors 3 and 4 in the child
            reading, writing = os.dup(to_child), os.dup(from_child)  # free of 3 and 4 first
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        args = [executable, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--mute-audio",
                "--allow-file-access-from-files", f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, close_fds=False, preexec_fn=child_fds)
        os.close(to_child)
        os.close(from_child)
        self.width, self.height = width, height
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read_fd], [], [], left)[0]:
                raise DevToolsError("no answer from chromium in time")
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise DevToolsError(f"chromium exited: {self.proc.stderr.read().decode()[-2000:]}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._send(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise DevToolsError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = next((e for e in self.events if e.get("method") == method), None)
            if found:
                self.events.remove(found)
                return found
            self.events.append(self._receive(deadline))

    def close(self) -> None:
        try:
            self._send({"id": 0, "method": "Browser.close", "params": {}})
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._read_fd)
        os.close(self._write_fd)
        self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class PageReport:
    audio: list[dict[str, Any]]
    images: list[dict[str, Any]]
    scroll_width: int
    inner_width: int
    errors: list[str] = field(default_factory=list)  #: console errors, exceptions, failed loads
    screenshot: Path | None = None
    result: Any = None  #: the value of the extra expression, if any


def _errors(events: list[dict[str, Any]]) -> list[str]:
    urls = {e["params"]["requestId"]: e["params"]["request"]["url"]
            for e in events if e.get("method") == "Network.requestWillBeSent"}
    errors = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + p["exceptionDetails"].get("text", "") + " "
                          + str(p["exceptionDetails"].get("exception", {}).get("description", "")))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            errors.append(f"load failed: {p.get('errorText')} {urls.get(p.get('requestId'), '')}")
    return errors


def evaluate(browser: Chromium, session: str, expression: str) -> Any:
    """The value of a JavaScript expression (awaited when it is a promise)."""
    reply = browser.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                              "returnByValue": True}, session=session)
    if "exceptionDetails" in reply:
        details = reply["exceptionDetails"]
        raise DevToolsError(f"{details.get('exception', {}).get('description', details.get('text'))} in {expression!r}")
    return reply["result"].get("value")


def inspect_page(browser: Chromium, url: str, screenshot: Path | None = None, extra_js: str | None = None,
                 audio_timeout_ms: int = 20000) -> PageReport:
    """Open ``url`` in a new tab at the browser's window size, wait for the load and for the
    audio metadata, and describe the page (see :data:`PAGE_STATE_JS`); ``extra_js`` is
    evaluated after that (its value in :attr:`PageReport.result`)."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.events.clear()
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session=session)
    browser.call("Emulation.setDeviceMetricsOverride", {"width": browser.width, "height": browser.height,
                                                        "deviceScaleFactor": 1, "mobile": False}, session=session)
    browser.call("Page.navigate", {"url": url}, session=session)
    browser.wait_for("Page.loadEventFired")
    state = evaluate(browser, session, PAGE_STATE_JS.replace("TIMEOUT_MS", str(audio_timeout_ms)))
    result = evaluate(browser, session, extra_js) if extra_js else None
    report = PageReport(state["audio"], state["images"], state["scrollWidth"], state["innerWidth"], result=result)
    if screenshot is not None:
        size = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = browser.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": browser.width, "height": size["height"], "scale": 1}}, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        report.screenshot = screenshot
    browser.call("Runtime.evaluate", {"expression": "1"}, session=session)  # flush pending events
    report.errors = _errors(browser.events)
    browser.call("Target.closeTarget", {"targetId": target})
    return report
