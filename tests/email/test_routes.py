"""`gateway routes`: every route of every protocol, and `--email ADDRESS`."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import path, re_path

from gateway.cli import main
from gateway.consumers.email import AsyncEmailConsumer
from gateway.consumers.websocket import AsyncWebsocketConsumer
from gateway.middleware import (
    AllowedHostsOriginValidator,
    AuthMiddlewareStack,
    BaseMiddleware,
    OriginValidator,
)
from gateway.routes import collect_routes, find_branch, match_email
from routers import ChannelNameRouter, EmailToRouter, ProtocolTypeRouter, URLRouter, address


class Ticket(AsyncEmailConsumer):
    pass


class Device(AsyncEmailConsumer):
    pass


class Catchall(AsyncEmailConsumer):
    pass


class Dashboard(AsyncWebsocketConsumer):
    pass


class Worker(AsyncEmailConsumer):
    pass


async def django_like(scope: Any, receive: Any, send: Any) -> None:
    return None


application = ProtocolTypeRouter(
    {
        "http": django_like,
        "websocket": BaseMiddleware(
            URLRouter(
                [
                    path("ws/dashboard/", Dashboard.as_asgi()),
                    path(
                        "ws/rooms/", URLRouter([re_path(r"^(?P<room>\w+)/$", Dashboard.as_asgi())])
                    ),
                ]
            )
        ),
        "email": EmailToRouter(
            [
                address(r"support@example\.com", Ticket.as_asgi()),
                address(r"(?P<device_id>[\w-]+)@devices\.example\.com", Device.as_asgi()),
            ],
            default=Catchall.as_asgi(),
        ),
        "channel": ChannelNameRouter({"notify": Worker.as_asgi()}),
    }
)
email = application.application_mapping["email"]
no_default = ProtocolTypeRouter(
    {"email": EmailToRouter([address(r"support@example\.com", Ticket.as_asgi())])}
)
APP = "tests.email.test_routes:application"


def test_collect_routes_lists_every_protocol() -> None:
    rows = [tuple(row) for row in collect_routes(application)]
    here = __name__
    assert rows == [
        ("http", "*", f"{here}.django_like"),
        ("websocket", "ws/dashboard/", f"{here}.Dashboard"),
        ("websocket", r"ws/rooms/^(?P<room>\w+)/$", f"{here}.Dashboard"),
        ("email", r"support@example\.com", f"{here}.Ticket"),
        ("email", r"(?P<device_id>[\w-]+)@devices\.example\.com", f"{here}.Device"),
        ("email", "(default)", f"{here}.Catchall"),
        ("channel", "notify", f"{here}.Worker"),
    ]


def test_match_email() -> None:
    match = match_email(application, "Pump-1@devices.example.com")
    assert match == (
        r"(?P<device_id>[\w-]+)@devices\.example\.com",
        f"{__name__}.Device",
        {"device_id": "Pump-1"},
    )
    assert match_email(no_default, "sales@example.com") is None


class KeepsItsAppAsApp:
    """A middleware that keeps the application it wraps as ``app``, as Starlette's do."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def test_find_branch_through_protocol_router_and_middleware_of_both_kinds() -> None:
    router = EmailToRouter([address(r"a@b\.test", Ticket.as_asgi())])
    for wrap in (BaseMiddleware, KeepsItsAppAsApp):
        root = wrap(ProtocolTypeRouter({"email": wrap(wrap(router)), "http": django_like}))
        assert find_branch(root, "email") is router
        assert find_branch(root, "http") is django_like
        assert find_branch(root, "mqtt") is None
    channels = ChannelNameRouter({"email": Worker.as_asgi()})
    # One level of ProtocolTypeRouter: a channel router's names are not protocols.
    assert find_branch(ProtocolTypeRouter({"channel": channels}), "channel") is channels
    # A root without a ProtocolTypeRouter serves every protocol itself.
    assert find_branch(KeepsItsAppAsApp(router), "email") is router
    assert find_branch(django_like, "email") is django_like


def test_routes_behind_middleware_keeping_its_app_as_app() -> None:
    wrapped = KeepsItsAppAsApp(ProtocolTypeRouter({"email": KeepsItsAppAsApp(email)}))
    assert [row.pattern for row in collect_routes(wrapped)] == [
        r"support@example\.com",
        r"(?P<device_id>[\w-]+)@devices\.example\.com",
        "(default)",
    ]
    assert match_email(wrapped, "support@example.com") == (
        r"support@example\.com",
        f"{__name__}.Ticket",
        {},
    )


def test_routes_through_the_readme_websocket_stack() -> None:
    # The README's stack: the origin validator keeps its application as ``application``.
    websocket = AllowedHostsOriginValidator(
        AuthMiddlewareStack(URLRouter([path("ws/dashboard/", Dashboard.as_asgi())]))
    )
    root = ProtocolTypeRouter({"websocket": websocket, "email": OriginValidator(email, ["*"])})
    assert [tuple(row) for row in collect_routes(root)] == [
        ("websocket", "ws/dashboard/", f"{__name__}.Dashboard"),
        ("email", r"support@example\.com", f"{__name__}.Ticket"),
        ("email", r"(?P<device_id>[\w-]+)@devices\.example\.com", f"{__name__}.Device"),
        ("email", "(default)", f"{__name__}.Catchall"),
    ]
    assert find_branch(root, "email") is email


def test_command_prints_the_routes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", APP]) == 0
    out = capsys.readouterr().out
    assert "ws/dashboard/" in out
    assert r"(?P<device_id>[\w-]+)@devices\.example\.com" in out
    assert "(default)" in out
    assert len(out.splitlines()) == 7


def test_command_with_email_tells_the_route(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", APP, "--email", "support@EXAMPLE.com"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(r"support@EXAMPLE.com: support@example\.com -> ")
    assert "Ticket kwargs={}" in out
    assert main(["routes", "tests.email.test_routes:no_default", "--email", "x@y.test"]) == 1
    assert "no route" in capsys.readouterr().out
