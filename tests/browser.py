"""A real headless Chromium for page tests, driven over the DevTools protocol.

Only the installed `chromium` binary and the `websockets` client are used: no driver to
download, nothing but loopback traffic.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import tempfile
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.integration.support import not_installed

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
]


def chromium_path() -> str:
    """The Chromium binary; a failure under CI, a skip on a developer machine without one."""
    names = ("chromium", "chromium-browser", "google-chrome")
    found = next((path for path in map(shutil.which, names) if path), None)
    if found is None:
        not_installed("chromium is not installed (scripts/test installs it)")
    return found


class Page:
    """One browser tab: navigate, evaluate JavaScript, take a screenshot."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply["result"])

    async def goto(self, url: str) -> None:
        await self.call("Page.enable")
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        async with asyncio.timeout(timeout):
            while True:
                value = await self.evaluate(expression)
                if value:
                    return value
                await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> None:
        data = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(data["data"]))


@asynccontextmanager
async def open_page() -> AsyncIterator[Page]:
    """Start a headless Chromium with a fresh profile and yield its first tab."""
    profile = tempfile.mkdtemp(prefix="gateway-chromium-")
    proc = await asyncio.create_subprocess_exec(
        chromium_path(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    drain: asyncio.Task[bytes] | None = None
    try:
        assert proc.stderr is not None
        port = await asyncio.wait_for(_devtools_port(proc.stderr), 30)
        # Keep reading so a chatty Chromium never blocks on a full pipe.
        drain = asyncio.create_task(proc.stderr.read())
        targets = await asyncio.to_thread(_json, f"http://127.0.0.1:{port}/json/list")
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with connect(page_url, max_size=None) as ws:
            yield Page(ws)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if drain is not None:
            await drain
        await asyncio.to_thread(shutil.rmtree, profile, True)


async def _devtools_port(stderr: asyncio.StreamReader) -> int:
    while line := await stderr.readline():
        match = re.search(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        if match:
            return int(match.group(1))
    raise RuntimeError("chromium exited before opening its DevTools port")


def _json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)
