"""The root application the end-to-end tests run under `gateway run`.

http: Django (tests.urls); websocket: /echo/ echoes, /boom/ raises after accepting,
/stubborn/ accepts and never returns;
line: upper-cases each line, raises on "fail"; lifespan: writes "startup" and "shutdown"
to the file named by GATEWAY_E2E_LIFESPAN_MARKER.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import cast

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.server.e2e_settings")
django_asgi_app = get_asgi_application()

from gateway.types import ASGIApp, Receive, Scope, Send  # noqa: E402
from routers import ProtocolTypeRouter  # noqa: E402


def _mark(event: str) -> None:
    marker = os.environ.get("GATEWAY_E2E_LIFESPAN_MARKER")
    if marker:
        with Path(marker).open("a") as file:
            file.write(event + "\n")


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        phase = message["type"].removeprefix("lifespan.")
        _mark(phase)
        await send({"type": f"lifespan.{phase}.complete"})
        if phase == "shutdown":
            return


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send(
            {"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")}
        )


async def boom(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
    raise RuntimeError("boom after accept")


async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await asyncio.sleep(3600)  # ignores the disconnect; only the drain deadline ends it


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    apps = {"/echo/": echo, "/boom/": boom, "/stubborn/": stubborn}
    await apps[scope["path"]](scope, receive, send)


async def line(scope: Scope, receive: Receive, send: Send) -> None:
    text = (await receive())["text"]
    if text == "fail":
        raise RuntimeError("line app failed")
    await send({"type": "line.reply", "text": text.upper()})


application = ProtocolTypeRouter(
    {
        "http": cast(ASGIApp, django_asgi_app),
        "websocket": websocket,
        "line": line,
        "lifespan": lifespan,
    }
)
