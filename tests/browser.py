"""A minimal headless-Chromium driver for the report tests (standard library only).

Chromium is started with ``--remote-debugging-pipe``: it reads DevTools-protocol commands (JSON,
each ended by a NUL byte) on file descriptor 3 and writes answers and events on descriptor 4, so no
websocket library and no network port are needed. Only what the tests use is here: open a page,
collect JavaScript exceptions and console errors, evaluate JavaScript, take screenshots.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--no-default-browser-check",
)


def find_chromium() -> str | None:
    """Path of a Chromium executable, or None (then the browser tests are skipped)."""
    env = os.environ.get("CRNN_CHROMIUM")
    if env:
        return env if shutil.which(env) or Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, executable: str, width: int = 1400, height: int = 950, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.profile = tempfile.mkdtemp(prefix="crnn-chromium-")
        cmd_r, cmd_w = os.pipe()  # we write commands, Chromium reads them on fd 3
        res_r, res_w = os.pipe()  # Chromium writes on fd 4, we read

        def child_fds() -> None:  # runs in the child before exec
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(3, 4), preexec_fn=child_fds,  # noqa: PLW1509 (single-threaded at this point)
        )
        os.close(cmd_r)
        os.close(res_w)
        self._out = os.fdopen(cmd_w, "wb", buffering=0)
        self._in = os.fdopen(res_r, "rb", buffering=0)
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr: list[str] = []
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next((t for t in targets if t["type"] == "page"), None)
        target_id = page["targetId"] if page else self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target_id, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    # -- protocol ----------------------------------------------------------------------------
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._in.read(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._answers[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace"))

    def call(self, method: str, *, session: bool = False, timeout_s: float | None = None, **params: Any) -> dict:
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self._out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        with self._cond:
            while mid not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "".join(self._stderr[-20:])
                    msg_text = f"no answer to {method} from Chromium (exit code {self.proc.poll()}); stderr:\n{tail}"
                    raise BrowserError(msg_text)
                self._cond.wait(min(left, 0.5))
            answer = self._answers.pop(mid)
        if "error" in answer:
            msg_text = f"{method} failed: {answer['error']}"
            raise BrowserError(msg_text)
        return answer.get("result", {})

    # -- page helpers --------------------------------------------------------------------------
    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        start = len(self.events)
        self.call("Page.navigate", session=True, url=url)
        self.wait_for_event("Page.loadEventFired", start)

    def wait_for_event(self, method: str, start: int = 0, timeout_s: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        with self._cond:
            while True:
                for ev in self.events[start:]:
                    if ev.get("method") == method:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    msg = f"timed out waiting for {method}"
                    raise BrowserError(msg)
                self._cond.wait(min(left, 0.5))

    def evaluate(self, expression: str, timeout_s: float | None = None) -> Any:
        """Value of a JavaScript expression (promises are awaited)."""
        res = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                        awaitPromise=True, timeout_s=timeout_s)
        if "exceptionDetails" in res:
            msg = f"JavaScript error in {expression[:80]!r}: {res['exceptionDetails']}"
            raise BrowserError(msg)
        return res["result"].get("value")

    def wait_until(self, expression: str, timeout_s: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                msg = f"timed out waiting for {expression!r}"
                raise BrowserError(msg)
            time.sleep(0.2)

    def child_frames(self) -> list[dict[str, Any]]:
        """Frames inside the page (iframes): dicts with ``id`` and ``url``."""
        tree = self.call("Page.getFrameTree", session=True)["frameTree"]
        out = []
        stack = list(tree.get("childFrames", []))
        while stack:
            node = stack.pop()
            out.append(node["frame"])
            stack.extend(node.get("childFrames", []))
        return out

    def evaluate_in_frame(self, frame_id: str, expression: str) -> Any:
        """Evaluate JavaScript inside a (possibly cross-origin) frame, in an isolated world."""
        ctx = self.call("Page.createIsolatedWorld", session=True, frameId=frame_id, worldName="crnn-test")
        res = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                        awaitPromise=True, contextId=ctx["executionContextId"])
        if "exceptionDetails" in res:
            msg = f"JavaScript error in frame: {res['exceptionDetails']}"
            raise BrowserError(msg)
        return res["result"].get("value")

    def errors(self) -> list[str]:
        """JavaScript exceptions, console errors and error log entries seen so far."""
        out = []
        with self._cond:
            events = list(self.events)
        for ev in events:
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                out.append(f"console.{p['type']}: {args}")
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                out.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}")
        return out

    def screenshot(self, path: str | os.PathLike[str], full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", session=True, timeout_s=60, **params)["data"]
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=5)
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # the process is gone: both readers see the end of their pipe
        self._reader.join(timeout=5)
        self._stderr_reader.join(timeout=5)
        for f in (self._out, self._in, self.proc.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
