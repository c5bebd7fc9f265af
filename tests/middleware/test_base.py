from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.middleware import BaseMiddleware
from gateway.types import Receive, Scope, Send
from tests.middleware.support import capture, handshake, websocket_scope

ROOT = Path(__file__).resolve().parents[2]


async def test_inner_gets_a_copy_of_the_scope() -> None:
    seen: list[Scope] = []
    outer = websocket_scope()

    answer = await handshake(BaseMiddleware(capture(seen)), outer)

    assert answer == {"type": "websocket.accept"}
    assert seen[0] == outer
    assert seen[0] is not outer


async def test_changes_by_the_inner_app_do_not_reach_the_caller() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        scope["user"] = "someone"
        scope["path"] = "/rewritten/"
        await send({"type": "websocket.accept"})

    outer = websocket_scope()

    await handshake(BaseMiddleware(app), outer)

    assert "user" not in outer
    assert outer["path"] == "/ws/"


def test_importing_the_middleware_needs_no_django_settings() -> None:
    code = (
        "import gateway.middleware, django.conf;"
        "print(len(gateway.middleware.__all__), django.conf.settings.configured)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["11", "False"]
