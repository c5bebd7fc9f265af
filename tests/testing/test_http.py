from __future__ import annotations

import pytest

from gateway.testing import HttpCommunicator
from gateway.types import Receive, Scope, Send


async def scope_echo(scope: Scope, receive: Receive, send: Send) -> None:
    request = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]})
    await send({"type": "http.response.body", "body": scope["method"].encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b"|" + request["body"]})


async def test_scope_and_response() -> None:
    communicator = HttpCommunicator(
        scope_echo,
        "post",
        "/caf%C3%A9/items?page=2&q=a%20b",
        body=b"payload",
        headers=[(b"host", b"example.com")],
    )
    response = await communicator.get_response()
    assert response["status"] == 200
    assert response["headers"] == [(b"a", b"1")]
    scope = communicator.scope
    assert scope["type"] == "http"
    assert scope["method"] == "POST"
    assert scope["path"] == "/café/items"
    assert scope["query_string"] == b"page=2&q=a%20b"
    assert scope["headers"] == [(b"host", b"example.com")]
    assert scope["asgi"]["version"] == "3.0"
    assert scope["raw_path"] == b"/caf%C3%A9/items"
    assert response["body"] == b"POST|payload"


async def test_streamed_response_is_joined() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 204})
        for part in (b"a", b"b"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"c"})

    response = await HttpCommunicator(app, "GET", "/").get_response()
    assert response == {"status": 204, "headers": [], "body": b"abc"}


async def test_application_error_surfaces() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise LookupError("no such thing")

    with pytest.raises(LookupError, match="no such thing"):
        await HttpCommunicator(app, "GET", "/").get_response(timeout=30)


async def test_silent_application_times_out() -> None:
    cancelled: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await receive()
            await receive()
        except BaseException:
            cancelled.append(True)
            raise

    communicator = HttpCommunicator(app, "GET", "/")
    with pytest.raises(TimeoutError):
        await communicator.get_response(timeout=0.05)
    assert cancelled == [True]


def test_body_must_be_bytes() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="bytes"):
        HttpCommunicator(app, "POST", "/", body="text")  # type: ignore[arg-type]


async def test_wrong_response_message_is_reported() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    with pytest.raises(AssertionError, match="response start"):
        await HttpCommunicator(app, "GET", "/").get_response()
