from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from gateway.consumers import AsyncConsumer
from gateway.exceptions import UnknownProtocol
from gateway.testing import ApplicationCommunicator, HttpCommunicator
from gateway.types import Message, Receive, Scope, Send
from routers import ProtocolTypeRouter


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"http:{scope['path']}".encode()})


async def other_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "other.reply", "scope_type": scope["type"]})


async def test_dispatches_on_scope_type() -> None:
    router = ProtocolTypeRouter({"http": http_app, "other": other_app})

    response = await HttpCommunicator(router, "GET", "/x/").get_response()
    assert response["body"] == b"http:/x/"

    communicator = ApplicationCommunicator(router, {"type": "other"})
    assert await communicator.receive_output() == {"type": "other.reply", "scope_type": "other"}
    await communicator.wait()


async def test_lifespan_answered_when_not_configured() -> None:
    communicator = ApplicationCommunicator(ProtocolTypeRouter({"http": http_app}), _lifespan())
    await communicator.send_input({"type": "lifespan.startup"})
    assert await communicator.receive_output() == {"type": "lifespan.startup.complete"}
    await communicator.send_input({"type": "lifespan.shutdown"})
    assert await communicator.receive_output() == {"type": "lifespan.shutdown.complete"}
    await communicator.wait()  # the router returned after shutdown


async def test_lifespan_goes_to_configured_application() -> None:
    seen: list[Message] = []

    async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    communicator = ApplicationCommunicator(
        ProtocolTypeRouter({"http": http_app, "lifespan": lifespan_app}), _lifespan()
    )
    await communicator.send_input({"type": "lifespan.startup"})
    reply = await communicator.receive_output()
    assert reply == {"type": "lifespan.startup.failed", "message": "no database"}
    assert seen == [{"type": "lifespan.startup"}]


async def test_unknown_type_names_type_and_configured_types() -> None:
    router = ProtocolTypeRouter({"http": http_app, "websocket": other_app})
    with pytest.raises(UnknownProtocol) as excinfo:
        await router({"type": "mqtt"}, _never, _discard)
    message = str(excinfo.value)
    assert "'mqtt'" in message
    assert "'http'" in message
    assert "'websocket'" in message
    assert isinstance(excinfo.value, ValueError)


def test_consumer_class_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"AsyncConsumer\.as_asgi\(\)"):
        ProtocolTypeRouter({"channel": AsyncConsumer})  # type: ignore[dict-item]


def _lifespan() -> Scope:
    return {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}


async def _never() -> Message:
    raise AssertionError("the router must not receive")


async def _discard(message: Message) -> None:
    raise AssertionError("the router must not send")
