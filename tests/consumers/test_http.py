from __future__ import annotations

import pytest

from gateway.consumers import AsyncHttpConsumer
from gateway.testing import ApplicationCommunicator, HttpCommunicator


class Upper(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_response(
            201,
            body.upper(),
            headers={"Content-Type": "text/plain", b"x-method": self.scope["method"].encode()},
        )


async def test_send_response_with_dict_headers() -> None:
    communicator = HttpCommunicator(Upper.as_asgi(), "post", "/upper/?x=1", body=b"shout")
    response = await communicator.get_response()
    assert response["status"] == 201
    assert response["body"] == b"SHOUT"
    assert response["headers"] == [(b"Content-Type", b"text/plain"), (b"x-method", b"POST")]


async def test_body_chunks_are_collected_before_handle() -> None:
    http_scope = {"type": "http", "method": "PUT", "path": "/", "headers": []}
    communicator = ApplicationCommunicator(Upper.as_asgi(), http_scope)
    await communicator.send_input({"type": "http.request", "body": b"one ", "more_body": True})
    assert await communicator.receive_nothing()
    await communicator.send_input({"type": "http.request", "body": b"two", "more_body": True})
    await communicator.send_input({"type": "http.request"})
    start = await communicator.receive_output()
    assert start["status"] == 201
    body = await communicator.receive_output()
    assert body == {"type": "http.response.body", "body": b"ONE TWO", "more_body": False}
    await communicator.wait()


class Streaming(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_headers(headers=[(b"content-type", b"text/event-stream")])
        for part in (b"data: 1\n\n", b"data: 2\n\n"):
            await self.send_body(part, more_body=True)
        await self.send_body(b"")


async def test_streamed_body() -> None:
    response = await HttpCommunicator(Streaming.as_asgi(), "GET", "/events/").get_response()
    assert response["status"] == 200
    assert response["headers"] == [(b"content-type", b"text/event-stream")]
    assert response["body"] == b"data: 1\n\ndata: 2\n\n"


async def test_client_leaving_mid_body_calls_disconnect_not_handle() -> None:
    calls: list[str] = []

    class Recording(AsyncHttpConsumer):
        async def handle(self, body: bytes) -> None:
            calls.append("handle")

        async def disconnect(self) -> None:
            calls.append(f"disconnect after {b''.join(self.body)!r}")

    communicator = HttpCommunicator(Recording.as_asgi(), "POST", "/upload/")
    await communicator.send_input({"type": "http.request", "body": b"part", "more_body": True})
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait()
    assert calls == ["disconnect after b'part'"]


async def test_disconnect_runs_after_handle_fails() -> None:
    calls: list[str] = []

    class Failing(AsyncHttpConsumer):
        async def handle(self, body: bytes) -> None:
            raise RuntimeError("cannot answer")

        async def disconnect(self) -> None:
            calls.append("disconnect")

    communicator = HttpCommunicator(Failing.as_asgi(), "GET", "/")
    with pytest.raises(RuntimeError, match="cannot answer"):
        await communicator.get_response()
    assert calls == ["disconnect"]


async def test_handle_must_be_provided() -> None:
    communicator = HttpCommunicator(AsyncHttpConsumer.as_asgi(), "GET", "/")
    with pytest.raises(NotImplementedError, match="handle"):
        await communicator.get_response()


async def test_body_must_be_bytes() -> None:
    class Wrong(AsyncHttpConsumer):
        async def handle(self, body: bytes) -> None:
            await self.send_headers()
            await self.send_body("text")  # type: ignore[arg-type]

    communicator = HttpCommunicator(Wrong.as_asgi(), "GET", "/")
    await communicator.send_input({"type": "http.request"})
    await communicator.receive_output()
    with pytest.raises(TypeError, match="must be bytes"):
        await communicator.wait()
