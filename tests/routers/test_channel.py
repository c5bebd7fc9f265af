from __future__ import annotations

import pytest

from gateway.exceptions import RouteNotFound
from gateway.testing import ApplicationCommunicator
from gateway.types import ASGIApp, Message, Receive, Scope, Send
from routers import ChannelNameRouter


def worker(name: str) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        await send({"type": "done", "worker": name, "channel": scope["channel"], **message})

    return app


async def test_dispatches_on_channel_name() -> None:
    router = ChannelNameRouter({"thumbnails": worker("thumbs"), "mail": worker("mail")})
    communicator = ApplicationCommunicator(router, {"type": "channel", "channel": "mail"})
    await communicator.send_input({"type": "mail.send", "to": "a@example.com"})
    reply = await communicator.receive_output()
    assert reply == {
        "type": "mail.send",
        "worker": "mail",
        "channel": "mail",
        "to": "a@example.com",
    }


async def test_missing_channel_key_is_a_clear_error() -> None:
    router = ChannelNameRouter({"mail": worker("mail")})
    with pytest.raises(ValueError, match="without a 'channel' key") as excinfo:
        await router({"type": "http"}, _never, _discard)
    assert "'http'" in str(excinfo.value)


async def test_unknown_channel_name() -> None:
    router = ChannelNameRouter({"mail": worker("mail")})
    with pytest.raises(RouteNotFound, match="'sms'"):
        await router({"type": "channel", "channel": "sms"}, _never, _discard)


async def _never() -> Message:
    raise AssertionError("the router must not receive")


async def _discard(message: Message) -> None:
    raise AssertionError("the router must not send")
