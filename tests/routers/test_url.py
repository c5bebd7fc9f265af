from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import include, path, re_path, register_converter

import routers
from gateway.consumers import AsyncConsumer
from gateway.exceptions import RouteNotFound, StopConsumer
from gateway.testing import ApplicationCommunicator
from gateway.types import ASGIApp, Message, Receive, Scope, Send
from routers import URLRouter


class FourDigitYear:
    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        if len(value) != 4:
            raise ValueError("not a four digit year")
        return int(value)

    def to_url(self, value: int) -> str:
        return f"{value:04d}"


register_converter(FourDigitYear, "yyyy")


def recorder(name: str) -> ASGIApp:
    """An endpoint that reports its name and the scope it was given."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "routed", "endpoint": name, "scope": scope})

    return app


async def route(router: ASGIApp, path_: str, **extra: Any) -> Scope:
    """Route a scope and return the scope the endpoint saw, with its name as "endpoint"."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await router({"type": "websocket", "path": path_, **extra}, _never, send)
    assert len(sent) == 1
    return {**sent[0]["scope"], "endpoint": sent[0]["endpoint"]}


async def test_path_with_converters() -> None:
    router = URLRouter(
        [
            path("rooms/<int:room>/", recorder("room")),
            path("users/<slug:user>/", recorder("user")),
            path("items/<uuid:item>/", recorder("item")),
            path("files/<path:name>", recorder("file")),
            path("archive/<yyyy:year>/", recorder("year")),
        ]
    )
    scope = await route(router, "/rooms/42/")
    assert scope["endpoint"] == "room"
    assert scope["url_route"] == {"args": (), "kwargs": {"room": 42}}

    scope = await route(router, "/users/jane-doe/")
    assert scope["url_route"]["kwargs"] == {"user": "jane-doe"}

    item = uuid.uuid4()
    scope = await route(router, f"/items/{item}/")
    assert scope["url_route"]["kwargs"] == {"item": item}

    scope = await route(router, "/files/a/b/c.txt")
    assert scope["url_route"]["kwargs"] == {"name": "a/b/c.txt"}

    scope = await route(router, "/archive/2024/")
    assert scope["url_route"]["kwargs"] == {"year": 2024}


async def test_converter_refusing_a_value_means_no_match() -> None:
    router = URLRouter([path("archive/<yyyy:year>/", recorder("year"))])
    with pytest.raises(RouteNotFound, match=re.escape("No route found for path 'archive/24/'.")):
        await router({"type": "websocket", "path": "/archive/24/"}, _never, _discard)


async def test_re_path_named_and_positional_groups() -> None:
    router = URLRouter(
        [
            re_path(r"^named/(?P<code>[a-z]+)/$", recorder("named")),
            re_path(r"^positional/(\d+)/(\d+)/$", recorder("positional")),
        ]
    )
    scope = await route(router, "/named/abc/")
    assert scope["url_route"] == {"args": (), "kwargs": {"code": "abc"}}

    scope = await route(router, "/positional/1/22/")
    assert scope["url_route"] == {"args": ("1", "22"), "kwargs": {}}


async def test_the_typed_path_and_re_path_route_like_djangos() -> None:
    inner = URLRouter([routers.re_path(r"^(?P<room>\w+)/$", recorder("room"))])
    router = URLRouter(
        [
            routers.path("rooms/<int:floor>/", inner, {"building": "a"}, name="rooms"),
            routers.path("lobby/", AsyncConsumer.as_asgi(), name="lobby"),
        ]
    )
    scope = await route(router, "/rooms/3/blue/")
    assert scope["endpoint"] == "room"
    assert scope["url_route"]["kwargs"] == {"floor": 3, "building": "a", "room": "blue"}
    assert [pattern.name for pattern in router.routes] == ["rooms", "lobby"]
    assert type(routers.path("x/", recorder("x"))) is type(path("x/", recorder("x")))


async def test_endpoint_must_match_whole_path() -> None:
    router = URLRouter(
        [path("chat/", recorder("chat")), path("chat/<str:room>/", recorder("room"))]
    )
    scope = await route(router, "/chat/lobby/")
    assert scope["endpoint"] == "room"
    assert scope["url_route"]["kwargs"] == {"room": "lobby"}


async def test_default_kwargs_of_a_route() -> None:
    router = URLRouter([path("feed/", recorder("feed"), {"kind": "news"})])
    scope = await route(router, "/feed/")
    assert scope["url_route"]["kwargs"] == {"kind": "news"}


async def test_nested_routers_merge_args_and_kwargs() -> None:
    inner = URLRouter(
        [
            path("users/<slug:user>/", recorder("user")),
            re_path(r"^raw/(\d+)/$", recorder("raw")),
        ]
    )
    router = URLRouter(
        [
            path("tenants/<int:tenant>/", URLRouter([path("rooms/<int:room>/", inner)])),
            re_path(r"^legacy/(\d+)/", URLRouter([re_path(r"^(\w+)/$", recorder("legacy"))])),
        ]
    )
    scope = await route(router, "/tenants/7/rooms/3/users/bob/")
    assert scope["endpoint"] == "user"
    assert scope["url_route"] == {"args": (), "kwargs": {"tenant": 7, "room": 3, "user": "bob"}}
    assert scope["path_remaining"] == ""

    scope = await route(router, "/tenants/7/rooms/3/raw/99/")
    assert scope["url_route"] == {"args": ("99",), "kwargs": {"tenant": 7, "room": 3}}

    scope = await route(router, "/legacy/5/x/")
    assert scope["url_route"] == {"args": ("5", "x"), "kwargs": {}}


async def test_inner_kwargs_are_added_to_outer_url_route() -> None:
    router = URLRouter([path("devices/<str:device>/", recorder("device"))])
    outer = {"args": ("a",), "kwargs": {"tenant": "acme"}}
    scope = await route(router, "", path_remaining="devices/d1/", url_route=outer)
    assert scope["url_route"] == {"args": ("a",), "kwargs": {"tenant": "acme", "device": "d1"}}


async def test_nested_router_miss_falls_through_to_later_routes() -> None:
    router = URLRouter(
        [
            path("api/", URLRouter([path("v1/", recorder("v1"))])),
            path("api/v2/", recorder("v2")),
        ]
    )
    scope = await route(router, "/api/v2/")
    assert scope["endpoint"] == "v2"


async def test_router_behind_middleware_uses_path_remaining() -> None:
    inner = URLRouter([path("chat/<str:room>/", recorder("chat"))])

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        await inner({**scope, "user": "anna"}, receive, send)

    router = URLRouter([re_path(r"^ws/", middleware)])
    scope = await route(router, "/ws/chat/lobby/")
    assert scope["user"] == "anna"
    assert scope["url_route"]["kwargs"] == {"room": "lobby"}

    with pytest.raises(RouteNotFound, match=re.escape("No route found for path 'nope/'.")):
        await router({"type": "websocket", "path": "/ws/nope/"}, _never, _discard)


async def test_path_remaining_wins_over_path() -> None:
    router = URLRouter([path("inner/", recorder("inner"))])
    scope = await route(router, "/outer/inner/", path_remaining="inner/")
    assert scope["endpoint"] == "inner"
    assert scope["path"] == "/outer/inner/"


async def test_root_path_is_stripped() -> None:
    router = URLRouter([path("ws/chat/", recorder("chat"))])
    scope = await route(router, "/prefix/ws/chat/", root_path="/prefix")
    assert scope["endpoint"] == "chat"
    assert scope["root_path"] == "/prefix"

    with pytest.raises(RouteNotFound, match=re.escape("No route found for path '/ws/chat/'.")):
        await router(
            {"type": "websocket", "path": "/ws/chat/", "root_path": "/prefix"}, _never, _discard
        )
    with pytest.raises(RouteNotFound):
        await router(
            {"type": "websocket", "path": "/prefixed/ws/chat/", "root_path": "/prefix"},
            _never,
            _discard,
        )


async def test_no_route_error_is_a_value_error_naming_the_path() -> None:
    router = URLRouter([path("chat/", recorder("chat"))])
    with pytest.raises(RouteNotFound) as excinfo:
        await router({"type": "websocket", "path": "/nothing/here/"}, _never, _discard)
    assert str(excinfo.value) == "No route found for path 'nothing/here/'."
    assert isinstance(excinfo.value, ValueError)


async def test_scope_without_path() -> None:
    router = URLRouter([path("chat/", recorder("chat"))])
    with pytest.raises(ValueError, match="No 'path' key"):
        await router({"type": "channel", "channel": "x"}, _never, _discard)


async def test_scope_is_copied_not_mutated() -> None:
    router = URLRouter([path("a/", URLRouter([path("<int:n>/", recorder("n"))]))])
    original: Scope = {"type": "websocket", "path": "/a/1/", "headers": []}
    snapshot = dict(original)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await router(original, _never, send)
    assert original == snapshot
    routed = sent[0]["scope"]
    assert routed is not original
    assert routed["url_route"]["kwargs"] == {"n": 1}


def test_consumer_class_route_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"AsyncConsumer\.as_asgi\(\)"):
        URLRouter([path("ws/", AsyncConsumer)])


class EchoRoute(AsyncConsumer):
    async def websocket_connect(self, message: Message) -> None:
        await self.send({"type": "routed", "kwargs": self.scope["url_route"]["kwargs"]})
        raise StopConsumer


async def test_consumer_instance_route_serves_the_scope_as_in_channels() -> None:
    # Channels accepts an instance (it is an ASGI callable); as_asgi() stays the advice.
    router = URLRouter([path("ws/<str:room>/", EchoRoute())])
    communicator = ApplicationCommunicator(router, {"type": "websocket", "path": "/ws/lobby/"})
    await communicator.send_input({"type": "websocket.connect"})
    assert await communicator.receive_output() == {"type": "routed", "kwargs": {"room": "lobby"}}
    await communicator.wait()


def test_as_asgi_route_is_accepted() -> None:
    router = URLRouter([path("ws/", AsyncConsumer.as_asgi())])
    assert len(router.routes) == 1


def test_include_is_refused_with_the_text_channels_users_match() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        URLRouter([path("x/", include([path("y/", recorder("y"))]))])
    assert "include() is not supported in URLRouter." in str(excinfo.value)


async def _never() -> Message:
    raise AssertionError("routing must not receive")


async def _discard(message: Message) -> None:
    raise AssertionError("routing must not send")
