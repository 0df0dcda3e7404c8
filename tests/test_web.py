"""The classroom web view in a real browser: `prefix-tui TRACE --web` served by
textual-serve, loaded in headless Chromium (Debian's package), driven over the Chrome
DevTools Protocol. The test waits for the header in what the page receives, presses → in
the page (through xterm.js, the websocket and Textual's web driver), and waits for the step
counter to move. Every wait is for an observable event (a port that answers, a DevTools
line, a websocket frame); nothing sleeps a fixed time.

Skipped, with the reason, where Chromium or textual-serve is missing (`apt-get install -y
chromium`, `pip install 'prefix-tui[web]'`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tui.web import is_local, without_web_flags

TRACE = str(ROOT / "traces" / "lessons" / "01-blocks-and-hashes.jsonl")
ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\x1b\][^\x07]*\x07")
WAIT_S = 180  # the app imports vLLM in each browser session: slow on a busy machine


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium: apt-get install -y chromium (Debian's package) for the browser test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prefix-tui --web exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the web view never listened")


def devtools_url(proc: subprocess.Popen) -> str:
    """Chromium prints its DevTools websocket on stderr once it listens."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode("utf-8", "replace")
        if not line and proc.poll() is not None:
            break
        m = re.search(r"DevTools listening on (ws://\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError("Chromium did not start its DevTools endpoint")


class Page:
    """A minimal DevTools client: one page, its websocket frames, key presses."""

    def __init__(self, ws) -> None:  # noqa: ANN001 - aiohttp's ClientWebSocketResponse
        self.ws = ws
        self.next_id = 0
        self.session: str | None = None
        self.received = bytearray()  # what the app sent the page, escapes removed
        self.replies: dict[int, dict] = {}

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        await self.ws.send_str(json.dumps(msg))
        while self.next_id not in self.replies:
            await self.pump()
        reply = self.replies.pop(self.next_id)
        assert "error" not in reply, reply
        return reply.get("result", {})

    async def pump(self) -> None:
        msg = json.loads((await self.ws.receive()).data)
        if "id" in msg:
            self.replies[msg["id"]] = msg
        elif msg.get("method") == "Network.webSocketFrameReceived":
            frame = msg["params"]["response"]
            data = frame["payloadData"]
            raw = base64.b64decode(data) if frame.get("opcode") == 2 else data.encode()
            self.received += ANSI.sub(b"", raw)

    async def wait_for_text(self, pattern: str) -> re.Match:
        deadline = time.monotonic() + WAIT_S
        rx = re.compile(pattern.encode())
        while time.monotonic() < deadline:
            m = rx.search(self.received)
            if m:
                return m
            await asyncio.wait_for(self.pump(), timeout=max(1.0, deadline - time.monotonic()))
        raise AssertionError(f"the page never showed {pattern!r}")

    async def press(self, key: str, code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key,
                            windowsVirtualKeyCode=code, nativeVirtualKeyCode=code)


async def drive(devtools: str, url: str) -> tuple[str, str]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.ws_connect(devtools, max_msg_size=0) as ws:
        page = Page(ws)
        target = await page.call("Target.createTarget", url="about:blank")
        attached = await page.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        page.session = attached["sessionId"]
        await page.call("Network.enable")
        await page.call("Emulation.setDeviceMetricsOverride", width=1600, height=1000,
                        deviceScaleFactor=1, mobile=False)
        await page.call("Page.navigate", url=url)
        first = await page.wait_for_text(r"step 1 / 4")
        before = first.group(0).decode()
        # xterm.js reads keys from its hidden textarea; focus it as a click would.
        await page.call("Runtime.evaluate", expression=(
            "document.querySelector('.xterm-helper-textarea').focus()"))
        page.received.clear()
        await page.press("ArrowRight", 39)
        moved = await page.wait_for_text(r"step 2 / 4")
        return before, moved.group(0).decode()


def test_web_view_in_headless_chromium_steps_on_a_key(tmp_path):
    pytest.importorskip("textual_serve", reason="--web needs textual-serve: pip install 'prefix-tui[web]'")
    pytest.importorskip("aiohttp", reason="the DevTools client uses aiohttp (textual-serve's)")
    browser = chromium()
    port = free_port()
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tui", TRACE, "--block-size", "4", "--num-gpu-blocks-override",
             "16", "--web", "--port", str(port)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    chrome = None
    try:
        wait_for_port(port, server, log)
        chrome = subprocess.Popen(
            [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        before, after = asyncio.run(drive(devtools_url(chrome), f"http://localhost:{port}/"))
        assert before == "step 1 / 4", before
        assert after == "step 2 / 4", after
    finally:
        for proc in (chrome, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        # textual-serve's sessions run in the server's process group: end what is left.
        try:
            os.killpg(server.pid, 15)
        except ProcessLookupError:
            pass


def test_web_flags_are_stripped_and_hosts_told_apart():
    argv = ["t.jsonl", "--web", "--port", "9000", "--host=0.0.0.0", "--block-size", "4"]
    assert without_web_flags(argv) == ["t.jsonl", "--block-size", "4"]
    assert is_local("localhost") and is_local("127.0.0.1") and is_local("::1")
    assert not is_local("0.0.0.0") and not is_local("192.168.1.5")


def test_web_refuses_bad_flags_before_serving(capsys):
    from tui.cli import main

    assert main([TRACE, "--web", "--headless"]) == 2
    assert "not with --headless" in capsys.readouterr().err
    assert main(["/nonexistent.jsonl", "--web"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/nonexistent.jsonl" in err[0]
