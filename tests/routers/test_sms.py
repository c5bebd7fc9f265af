from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.exceptions import RouteNotFound
from gateway.testing.sms import sms_scope
from gateway.types import Message, Scope
from routers.sms import (
    SMSFromRouter,
    SMSToRouter,
    country,
    normalize_number,
    number_country,
    phone,
)


class Recorder:
    """An app that remembers the scope it was called with."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.scopes.append(scope)


async def _nothing() -> Message:
    return {"type": "sms.disconnect"}


async def _drop(message: Message) -> None:
    pass


async def route(router: Any, from_: str, to: str = "+15005550006") -> Scope:
    """Call the router with a fresh scope; return the scope the chosen app got."""
    scope = sms_scope(from_, to)
    apps = [r.application for r in router.routes] + [router.default]
    before = {id(app): len(app.scopes) for app in apps if app is not None}
    await router(scope, _nothing, _drop)
    for app in apps:
        if app is not None and len(app.scopes) > before[id(app)]:
            chosen: Scope = app.scopes[-1]
            chosen["_app"] = app.name
            return chosen
    raise AssertionError("no application was called")


@pytest.fixture
def apps() -> dict[str, Recorder]:
    return {name: Recorder(name) for name in ("uk", "us", "toronto", "ca", "intl")}


@pytest.fixture
def router(apps: dict[str, Recorder]) -> SMSFromRouter:
    return SMSFromRouter(
        [
            phone("+44", apps["uk"]),
            phone("+1", apps["us"]),
            phone("+1416", apps["toronto"]),
        ],
        default=apps["intl"],
    )


async def test_longest_prefix_wins(router: SMSFromRouter) -> None:
    assert (await route(router, "+447700900123"))["_app"] == "uk"
    assert (await route(router, "+12125550123"))["_app"] == "us"
    toronto = await route(router, "+14165550123")
    assert toronto["_app"] == "toronto"
    assert toronto["url_route"] == {"args": (), "kwargs": {"prefix": "+1416"}}


async def test_short_codes_and_sender_ids_go_to_the_default(router: SMSFromRouter) -> None:
    short = await route(router, "72345")
    assert short["_app"] == "intl"
    assert short["from"] == "72345"
    assert short["url_route"]["kwargs"] == {}
    assert (await route(router, "ACME"))["_app"] == "intl"
    assert (await route(router, "+33612345678"))["_app"] == "intl"


async def test_whatsapp_prefix_is_stripped_into_the_scope(router: SMSFromRouter) -> None:
    scope = sms_scope("+447700900123", "+15005550006")
    scope["from"] = "whatsapp:+447700900123"
    scope["whatsapp"] = False
    seen: list[Scope] = []

    async def app(inner: Scope, receive: Any, send: Any) -> None:
        seen.append(inner)

    await SMSFromRouter([phone("+44", app)])(scope, _nothing, _drop)
    assert seen[0]["from"] == "+447700900123"
    assert seen[0]["whatsapp"] is True
    assert scope["from"] == "whatsapp:+447700900123", "the router must copy the scope"
    assert "url_route" not in scope


async def test_messy_numbers_are_normalised(router: SMSFromRouter) -> None:
    scope = await route(router, "+44 (0) 7700 900123")
    assert scope["_app"] == "uk"
    assert scope["from"] == "+447700900123"
    assert normalize_number("0044 7700-900123") == "+447700900123"
    assert normalize_number("+1 (416) 555.0123") == "+14165550123"


async def test_without_default_an_unknown_sender_is_route_not_found(
    apps: dict[str, Recorder],
) -> None:
    router = SMSFromRouter([phone("+44", apps["uk"])])
    with pytest.raises(RouteNotFound, match="72345"):
        await router(sms_scope("72345", "+15005550006"), _nothing, _drop)


async def test_to_router_routes_on_the_destination(apps: dict[str, Recorder]) -> None:
    router = SMSToRouter([phone("+44", apps["uk"]), phone("+1", apps["us"])])
    scope = await route(router, "+33612345678", to="+447700900999")
    assert scope["_app"] == "uk"
    assert scope["url_route"]["kwargs"] == {"prefix": "+44"}


async def test_country_routes_inside_a_shared_prefix(apps: dict[str, Recorder]) -> None:
    router = SMSFromRouter(
        [phone("+1", apps["us"]), country("CA", apps["ca"]), phone("+1416", apps["toronto"])]
    )
    vancouver = await route(router, "+1 604 555 0123")
    assert vancouver["_app"] == "ca"
    assert vancouver["url_route"]["kwargs"] == {"country": "CA"}
    assert (await route(router, "+12125550123"))["_app"] == "us"
    # A longer prefix is more specific than the country.
    assert (await route(router, "+14165550123"))["_app"] == "toronto"
    assert number_country("+447700900123") == "GB"


async def test_nested_routers_merge_url_route(apps: dict[str, Recorder]) -> None:
    inner = SMSToRouter([phone("+44", apps["uk"])])
    outer = SMSFromRouter([phone("+1", inner)])
    await outer(sms_scope("+12125550123", "+447700900999"), _nothing, _drop)
    seen = apps["uk"].scopes[-1]
    assert seen["url_route"]["kwargs"] == {"prefix": "+44"}
    assert seen["from"] == "+12125550123"


@pytest.mark.parametrize("bad", ["44", "+", "+0", "+44a", "", "+1234567890123456"])
def test_bad_prefixes_are_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid prefix"):
        phone(bad, Recorder("x"))


def test_duplicate_prefixes_and_unknown_countries_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'\+44' is routed twice"):
        SMSFromRouter([phone("+44", Recorder("a")), phone("+4 4", Recorder("b"))])
    with pytest.raises(ValueError, match="'XX'"):
        country("XX", Recorder("a"))


def test_country_without_phonenumbers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.sms

    monkeypatch.setattr(gateway.sms, "phonenumbers_module", lambda: None)
    with pytest.raises(ImportError, match=r"django-protocol-gateway\[phone\]"):
        country("CA", Recorder("a"))


def test_consumer_class_instead_of_as_asgi_is_refused() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from gateway.consumers import AsyncSmsConsumer

    with pytest.raises(ImproperlyConfigured, match="as_asgi"):
        phone("+44", AsyncSmsConsumer)  # type: ignore[arg-type]


prefixes = st.lists(st.from_regex(r"\+[1-9][0-9]{0,3}", fullmatch=True), max_size=8, unique=True)
numbers = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{6,12}", fullmatch=True),
    st.from_regex(r"[0-9]{4,6}", fullmatch=True),
)


@settings(max_examples=200, deadline=None)
@given(prefixes=prefixes, number=numbers)
def test_prefix_routing_matches_a_brute_force_reference(prefixes: list[str], number: str) -> None:
    router = SMSFromRouter([phone(p, Recorder(p)) for p in prefixes], default=Recorder("default"))
    app, kwargs = router.resolve(number)
    matching = [p for p in prefixes if number.startswith("+") and number.startswith(p)]
    expected = max(matching, key=len) if matching else "default"
    assert getattr(app, "name", None) == expected
    assert kwargs == ({"prefix": expected} if matching else {})
