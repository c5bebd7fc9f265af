"""The root application of the IMAP end-to-end test: appends each subject to a marker file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gateway.types import Receive, Scope, Send
from routers import ProtocolTypeRouter
from routers.email import EmailToRouter, address


async def record(scope: Scope, receive: Receive, send: Send) -> None:
    event = await receive()
    lines = event["raw"].decode().splitlines()
    subject = next((line[9:] for line in lines if line.startswith("Subject: ")), "")
    line = f"{scope['source']} {scope['recipient']} {subject}\n"
    await asyncio.to_thread(_append, Path(os.environ["GATEWAY_IMAP_E2E_MARKER"]), line)


def _append(path: Path, line: str) -> None:
    with path.open("a") as file:
        file.write(line)


application = ProtocolTypeRouter({"email": EmailToRouter([address(r"inbox@example\.com", record)])})
