"""`gateway routes`: every route of every protocol, and `--email ADDRESS`."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import path, re_path

from gateway.cli import main
from gateway.consumers.email import AsyncEmailConsumer
from gateway.consumers.websocket import AsyncWebsocketConsumer
from gateway.middleware import BaseMiddleware
from gateway.routes import collect_routes, match_email
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
