"""`ApplicationCommunicator`: run any ASGI application in-process and talk to it."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

from asgiref.testing import ApplicationCommunicator as BaseApplicationCommunicator

from gateway.db import close_old_connections_enabled
from gateway.types import ASGIApp, Message, Scope

T = TypeVar("T")


async def run_in_test_context(coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run one application call as an adapter would, in a fresh context, within `timeout`.

    Connection closing is off in that context, as Django's test client does, so the test's
    database connection and transaction stay usable. The communicators of one-event scopes
    (MQTT, email, SMS) run the protocol's own runner through this.
    """
    context = contextvars.Context()
    context.run(close_old_connections_enabled.set, False)
    task: asyncio.Task[T] = context.run(asyncio.create_task, coroutine)
    try:
        return await asyncio.wait_for(task, timeout)
    except TimeoutError:
        raise TimeoutError(f"The application did not return within {timeout} seconds.") from None


class ApplicationCommunicator(BaseApplicationCommunicator):
    """asgiref's `ApplicationCommunicator`, typed, that keeps the test's DB connections."""

    # Lets asgiref's __del__ run on an instance whose __init__ refused its arguments.
    _future: asyncio.Task[None] | None = None

    def __init__(self, application: ASGIApp, scope: Scope) -> None:
        super().__init__(application, scope)  # type: ignore[no-untyped-call]

    @property
    def future(self) -> asyncio.Task[None]:
        """The application's task, started on first use in a fresh context."""
        if self._future is None:
            # A fresh context, as asgiref does, so the test's context variables do not
            # leak in; with connection closing off, as Django's test client does.
            context = contextvars.Context()
            context.run(close_old_connections_enabled.set, False)
            coroutine = self.application(self.scope, self.input_queue.get, self.output_queue.put)
            self._future = context.run(asyncio.create_task, coroutine)
        return self._future

    async def send_input(self, message: Message) -> None:
        """Send one message to the application."""
        await super().send_input(message)  # type: ignore[no-untyped-call]

    async def receive_output(self, timeout: float = 1) -> Message:
        """Return the next message the application sent; TimeoutError after ``timeout``.

        Unlike asgiref's, this raises the application's exception as soon as it
        fails, instead of after the whole timeout.
        """
        application: asyncio.Future[None] = self.future
        getter = asyncio.ensure_future(self.output_queue.get())
        done, _ = await asyncio.wait(
            {getter, application}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            message: Message = getter.result()
            return message
        getter.cancel()
        await asyncio.gather(getter, return_exceptions=True)
        if application.done():
            application.result()
            raise TimeoutError("The application finished without sending a message.")
        application.cancel()
        await asyncio.gather(application, return_exceptions=True)
        raise TimeoutError(f"The application sent nothing within {timeout} seconds.")

    async def receive_nothing(self, timeout: float = 0.1, interval: float = 0.01) -> bool:
        """True if the application sends nothing within ``timeout``."""
        nothing: bool = await super().receive_nothing(timeout, interval)  # type: ignore[no-untyped-call]
        return nothing

    async def wait(self, timeout: float = 1) -> None:
        """Wait for the application to finish, raising what it raised."""
        await super().wait(timeout)  # type: ignore[no-untyped-call]
