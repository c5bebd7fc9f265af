"""The ASGI lifespan protocol, run once per process around every listener."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.types import ASGIApp, Message

logger = logging.getLogger("gateway.server")


class Lifespan:
    """Runs the root app's lifespan: startup before anything listens, shutdown after all stop.

    An application that answers the lifespan scope with a ValueError (Django's ASGI handler,
    a ProtocolTypeRouter without a "lifespan" entry) does not support it, and that is fine.
    """

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.supported = True
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._answers: asyncio.Queue[Message | BaseException | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> bool:
        """Send `lifespan.startup`; False when the application reported or raised a failure."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        self._task = asyncio.create_task(self._run({**scope, "state": self.state}))
        await self._queue.put({"type": "lifespan.startup"})
        answer = await self._answers.get()
        if isinstance(answer, ValueError | None):
            self._unsupported(answer)
            return True
        return self._outcome(answer, "startup")

    async def shutdown(self, timeout: float) -> bool:
        """Send `lifespan.shutdown` and wait up to `timeout` seconds for the answer."""
        if not self.supported or self._task is None or self._task.done():
            return True
        await self._queue.put({"type": "lifespan.shutdown"})
        try:
            answer = await asyncio.wait_for(self._answers.get(), timeout)
        except TimeoutError:
            logger.error("Lifespan shutdown did not finish within %.1f seconds.", timeout)
            self._task.cancel()
            return False
        return self._outcome(answer, "shutdown")

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._queue.get, self._send)
        except BaseException as exc:
            await self._answers.put(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            # Returning without answering means the app ignores lifespan.
            await self._answers.put(None)

    async def _send(self, message: Message) -> None:
        await self._answers.put(message)

    def _unsupported(self, error: ValueError | None) -> None:
        self.supported = False
        reason = f" ({type(error).__name__}: {error})" if error is not None else ""
        logger.info("The application does not support the lifespan protocol%s.", reason)

    def _outcome(self, answer: Message | BaseException | None, phase: str) -> bool:
        if isinstance(answer, BaseException):
            logger.error("Lifespan %s raised.", phase, exc_info=answer)
            return False
        if answer is None:
            # Returning instead of answering `lifespan.shutdown` is a clean shutdown too.
            logger.log(
                logging.DEBUG if phase == "shutdown" else logging.ERROR,
                "The application returned during lifespan %s.",
                phase,
            )
            return phase == "shutdown"
        if answer["type"] == f"lifespan.{phase}.complete":
            logger.debug("Lifespan %s complete.", phase)
            return True
        logger.error("Lifespan %s failed: %s", phase, answer.get("message", "") or answer["type"])
        return False
