from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.testing import ApplicationCommunicator, WebsocketCommunicator
from gateway.types import Receive, Scope, Send


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw WebSocket app: accepts with the last subprotocol, echoes frames, closes on "bye"."""
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/deny/":
        await send({"type": "websocket.close", "code": 4003})
        return
    protocols = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": protocols[-1] if protocols else None,
            "headers": [(b"x-path", scope["path"].encode())],
        }
    )
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 1000})
        elif message.get("text") == "silence":
            continue
        elif message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def test_scope() -> None:
    communicator = WebsocketCommunicator(
        echo,
        "/ws/room%201/?token=abc",
        headers=[(b"origin", b"http://example.com")],
        subprotocols=["v1", "v2"],
        spec_version="2.3",
    )
    scope = communicator.scope
    assert scope["type"] == "websocket"
    assert scope["path"] == "/ws/room 1/"
    assert scope["query_string"] == b"token=abc"
    assert scope["headers"] == [(b"origin", b"http://example.com")]
    assert scope["subprotocols"] == ["v1", "v2"]
    assert scope["spec_version"] == "2.3"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert await communicator.connect() == (True, "v2")
    assert communicator.response_headers == [(b"x-path", b"/ws/room 1/")]
    await communicator.disconnect()


async def test_denied_connection_reports_code() -> None:
    assert await WebsocketCommunicator(echo, "/deny/").connect() == (False, 4003)


async def test_frames_and_json() -> None:
    communicator = WebsocketCommunicator(echo, "/")
    assert await communicator.connect() == (True, None)
    await communicator.send_to(text_data="hi")
    assert await communicator.receive_from() == "hi"
    await communicator.send_to(bytes_data=b"\x00\xff")
    assert await communicator.receive_from() == b"\x00\xff"
    await communicator.send_json_to({"n": [1, 2]})
    assert await communicator.receive_json_from() == {"n": [1, 2]}
    await communicator.send_to(text_data="silence")
    assert await communicator.receive_nothing()
    await communicator.send_to(text_data="late")
    await communicator.receive_output()
    await communicator.disconnect()
    assert communicator.future.done()


async def test_receive_nothing_sees_pending_output() -> None:
    communicator = WebsocketCommunicator(echo, "/")
    await communicator.connect()
    await communicator.send_to(text_data="x")
    assert not await communicator.receive_nothing(timeout=5)
    await communicator.disconnect()


async def test_receive_from_fails_on_close() -> None:
    communicator = WebsocketCommunicator(echo, "/")
    await communicator.connect()
    await communicator.send_to(text_data="bye")
    with pytest.raises(AssertionError, match=r"websocket\.close"):
        await communicator.receive_from()
    await communicator.disconnect()


async def test_receive_json_from_needs_text() -> None:
    communicator = WebsocketCommunicator(echo, "/")
    await communicator.connect()
    await communicator.send_to(bytes_data=b"{}")
    with pytest.raises(AssertionError, match="not a text frame"):
        await communicator.receive_json_from()
    await communicator.disconnect()


async def test_send_to_needs_exactly_one_payload() -> None:
    communicator = WebsocketCommunicator(echo, "/")
    with pytest.raises(AssertionError, match="exactly one"):
        await communicator.send_to()
    with pytest.raises(AssertionError, match="exactly one"):
        await communicator.send_to(text_data="a", bytes_data=b"b")
    communicator.stop()


def test_path_must_be_str() -> None:
    with pytest.raises(TypeError, match="str"):
        WebsocketCommunicator(echo, b"/ws/")  # type: ignore[arg-type]


async def test_communicators_are_asgiref_communicators() -> None:
    from asgiref.testing import ApplicationCommunicator as Asgiref

    assert issubclass(ApplicationCommunicator, Asgiref)
    assert issubclass(WebsocketCommunicator, ApplicationCommunicator)


def test_importable_without_settings_or_server() -> None:
    code = (
        "import sys, gateway.testing\n"
        "from django.conf import settings\n"
        "assert not settings.configured\n"
        "assert 'uvicorn' not in sys.modules\n"
        "print('ok')\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
