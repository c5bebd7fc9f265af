"""`EmailToRouter` and `address()`: anchored, case-insensitive recipient routing."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from gateway.consumers.email import AsyncEmailConsumer
from gateway.exceptions import RouteNotFound
from gateway.types import Receive, Scope, Send
from routers import EmailToRouter, address


class Recorder:
    """An endpoint that keeps the scopes it was called with."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)


async def nothing() -> dict[str, Any]:
    return {"type": "email.disconnect"}


async def ignore(message: Any) -> None:
    return None


def email_scope(recipient: str) -> dict[str, Any]:
    return {"type": "email", "recipient": recipient, "sender": "a@b.test"}


async def test_named_groups_become_url_route_kwargs_and_scope_is_copied() -> None:
    device = Recorder("device")
    router = EmailToRouter([address(r"(?P<device_id>[\w-]+)@devices\.example\.com", device)])
    scope = email_scope("pump-3@devices.example.com")
    await router(scope, nothing, ignore)
    [seen] = device.scopes
    assert seen["url_route"] == {"args": (), "kwargs": {"device_id": "pump-3"}}
    assert "url_route" not in scope  # the caller's scope is untouched


def test_patterns_are_anchored_and_case_insensitive() -> None:
    support = Recorder("support")
    router = EmailToRouter([address(r"support@example\.com", support)])
    assert router.accepts("Support@EXAMPLE.com")
    assert not router.accepts("support@example.com.evil.test")
    assert not router.accepts("xsupport@example.com")
    assert not router.accepts("support@exampleXcom")


def test_first_match_wins_then_default() -> None:
    first, second, fallback = Recorder("1"), Recorder("2"), Recorder("d")
    router = EmailToRouter(
        [address(r"support@example\.com", first), address(r".*@example\.com", second)],
        default=fallback,
    )
    assert router.resolve("support@example.com")[1] is first  # type: ignore[index]
    assert router.resolve("sales@example.com")[1] is second  # type: ignore[index]
    assert router.resolve("x@elsewhere.test")[1] is fallback  # type: ignore[index]


async def test_no_match_raises_route_not_found() -> None:
    router = EmailToRouter([address(r"support@example\.com", Recorder("s"))])
    assert not router.accepts("sales@example.com")
    with pytest.raises(RouteNotFound, match=r"sales@example\.com"):
        await router(email_scope("sales@example.com"), nothing, ignore)
    assert await router.aaccepts("support@example.com")


async def test_nested_router_merges_kwargs_and_falls_through_when_it_declines() -> None:
    inner_app, later = Recorder("inner"), Recorder("later")
    inner = EmailToRouter([address(r"(?P<box>alerts)@(?P<domain>[a-z.]+)", inner_app)])
    router = EmailToRouter(
        [address(r"[^@]+@(?P<domain>example\.com)", inner), address(r".*", later)]
    )
    await router(email_scope("alerts@example.com"), nothing, ignore)
    assert inner_app.scopes[0]["url_route"]["kwargs"] == {"domain": "example.com", "box": "alerts"}
    await router(email_scope("other@example.com"), nothing, ignore)
    assert len(later.scopes) == 1


def test_bad_routes_are_refused_at_configuration() -> None:
    with pytest.raises(ValueError, match="not a regular expression"):
        address(r"(unclosed", Recorder("x"))
    with pytest.raises(ImproperlyConfigured, match=r"as_asgi\(\)"):
        address(r"a@b", AsyncEmailConsumer)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="address"):
        EmailToRouter([(r"a@b", Recorder("x"))])  # type: ignore[list-item]


@given(st.from_regex(r"[a-z0-9._+-]{1,20}@[a-z0-9-]{1,10}\.(com|test)", fullmatch=True))
def test_literal_routes_match_only_their_address_in_any_case(recipient: str) -> None:
    import re

    router = EmailToRouter([address(re.escape(recipient), Recorder("x"))])
    assert router.accepts(recipient.upper())
    assert not router.accepts(recipient + "x")
    assert not router.accepts("x" + recipient)


@given(st.text(max_size=80))
def test_routing_never_raises_on_arbitrary_recipients(recipient: str) -> None:
    router = EmailToRouter(
        [address(r"(?P<user>[^@]+)@(?P<domain>[^@]+)", Recorder("x"))],
    )
    found = router.resolve(recipient)
    if found is not None:
        kwargs = found[2]
        assert f"{kwargs['user']}@{kwargs['domain']}" == recipient
    else:
        assert recipient.count("@") != 1 or recipient.startswith("@") or recipient.endswith("@")
