"""Headless Chromium driven over the Chrome DevTools Protocol on a pipe (no extra package).

``--remote-debugging-pipe`` makes Chromium read protocol commands from file descriptor 3 and
write replies and events to descriptor 4, each message a JSON object ended by a NUL byte.
Enough of the protocol for the browser tests: open a page, wait for its load event, evaluate an
expression, take a screenshot; :func:`served` serves a folder over HTTP on the loopback (pages
that fetch files beside them). Chromium never downloads anything here: it is Debian's
``chromium`` (``.ci/run`` installs it).
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

#: flags of every browser: no sandbox (root in CI), no network services, a fresh profile
COMMON_FLAGS = ("--no-sandbox", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--hide-scrollbars", "--mute-audio")
#: flags that work on the project's machines for pages without WebGL: no GPU at all
HEADLESS_FLAGS = ("--headless", "--disable-gpu", *COMMON_FLAGS)
#: flags for pages that draw with WebGL (splat viewers): the new headless mode, with ANGLE on
#: SwiftShader, Chromium's software GL
SOFTWARE_GL_FLAGS = ("--headless=new", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                     *COMMON_FLAGS)


def chromium_executable() -> Optional[str]:
    """Path of a Chromium / Chrome binary on PATH, or None."""
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the base
    URL (``http://127.0.0.1:<port>``)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class Browser:
    """One headless Chromium process and one page (a flattened CDP session)."""

    def __init__(self, executable: str, profile_dir: Path, extra_flags: Sequence[str] = (),
                 timeout_s: float = 60.0, software_gl: bool = False) -> None:
        """Start the browser; ``software_gl``: :data:`SOFTWARE_GL_FLAGS` in place of
        :data:`HEADLESS_FLAGS`, for pages that draw with WebGL."""
        self.timeout_s = timeout_s
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_pipes() -> None:  # runs in the child, before exec
            # move both ends above 4 first: either may already sit on descriptor 3 or 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_read,
                                                                from_browser_write)]
            for target, fd in zip((3, 4), high):
                os.dup2(fd, target)  # inheritable, unlike os.pipe()'s descriptors

        self.process = subprocess.Popen(
            [executable, *(SOFTWARE_GL_FLAGS if software_gl else HEADLESS_FLAGS), *extra_flags, f"--user-data-dir={profile_dir}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=wire_pipes)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable", session=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ask the browser to quit; kill it if it does not within a few seconds."""
        try:
            self.call("Browser.close")
        except (OSError, TimeoutError, RuntimeError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass

    def call(self, method: str, params: Optional[dict[str, Any]] = None,
             session: bool = False) -> dict[str, Any]:
        """Send one command and return its result (events received meanwhile are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        """The first event ``method`` of the page session (already received or next)."""
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == self.session:
                    return self.events.pop(i)
            self.events.append(self._receive())

    def open(self, url: str, width: int, height: int) -> None:
        """Load ``url`` in a ``width`` × ``height`` viewport and wait for its load event."""
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=True)
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout_s: float, poll_s: float = 0.25) -> Any:
        """The first truthy value of ``expression``, evaluated every ``poll_s`` seconds.

        Raises:
            TimeoutError: still falsy after ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still false after {timeout_s} s")
            time.sleep(poll_s)
        return value

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """Save a PNG of the viewport (or of the whole page)."""
        result = self.call("Page.captureScreenshot",
                           {"format": "png", "captureBeyondViewport": full_page}, session=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"no DevTools message from Chromium in {self.timeout_s} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe (it exited)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)
