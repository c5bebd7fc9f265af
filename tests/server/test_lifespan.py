from __future__ import annotations

import asyncio
from typing import Any

from gateway.lifespan import Lifespan
from gateway.types import Receive, Scope, Send


async def test_startup_and_shutdown_complete_and_state_is_shared() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.startup":
                scope["state"]["pool"] = "ready"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    state: dict[str, Any] = {}
    lifespan = Lifespan(app, state)
    assert await lifespan.startup()
    assert state == {"pool": "ready"}
    assert await lifespan.shutdown(timeout=5)
    assert seen == ["lifespan.startup", "lifespan.shutdown"]


async def test_startup_failed_is_reported() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    assert not await Lifespan(app, {}).startup()


async def test_an_app_raising_value_error_does_not_support_lifespan() -> None:
    async def django_like(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    lifespan = Lifespan(django_like, {})
    assert await lifespan.startup()
    assert not lifespan.supported
    assert await lifespan.shutdown(timeout=5)


async def test_an_app_raising_anything_else_fails_startup() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise RuntimeError("cannot connect")

    assert not await Lifespan(broken, {}).startup()


async def test_shutdown_is_bounded_by_its_timeout() -> None:
    async def hangs_on_shutdown(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await asyncio.sleep(3600)

    lifespan = Lifespan(hangs_on_shutdown, {})
    assert await lifespan.startup()
    assert not await lifespan.shutdown(timeout=0.1)
