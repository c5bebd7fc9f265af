from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from gateway.metrics import registry
from gateway.middleware import AllowedHostsOriginValidator, OriginValidator
from gateway.middleware.origin import DENIED_CLOSE_CODE
from gateway.types import Receive, Scope, Send
from tests.middleware.support import capture, handshake, http_request, http_scope, websocket_scope

ACCEPT = {"type": "websocket.accept"}
DENY = {"type": "websocket.close", "code": DENIED_CLOSE_CODE}


async def answer_for(validator_patterns: list[str], origin: str | None) -> dict[str, object]:
    headers = [] if origin is None else [(b"origin", origin.encode("latin1"))]
    app = OriginValidator(capture([]), validator_patterns)
    return dict(await handshake(app, websocket_scope(*headers)))


@pytest.mark.parametrize(
    ("patterns", "origin"),
    [
        (["http://example.com"], "http://example.com"),
        (["http://example.com"], "http://example.com:80"),
        (["http://example.com"], "HTTP://EXAMPLE.COM"),
        (["https://example.com:8443"], "https://example.com:8443"),
        ([".example.com"], "https://chat.example.com"),
        ([".example.com"], "https://example.com"),
        (["http://.example.com"], "http://a.b.example.com:80"),
        (["example.com"], "https://example.com:9999"),
        (["[::1]"], "http://[::1]:8000"),
        (["*"], "https://anything.example.org"),
        (["*"], None),
        (["other.org", "example.com"], "http://example.com"),
    ],
)
async def test_allowed_origins_are_accepted(patterns: list[str], origin: str | None) -> None:
    assert await answer_for(patterns, origin) == ACCEPT


@pytest.mark.parametrize(
    ("patterns", "origin"),
    [
        (["http://example.com"], "https://example.com"),
        (["http://example.com"], "http://example.com:8080"),
        (["https://example.com:8443"], "https://example.com"),
        (["example.com"], "https://chat.example.com"),
        ([".example.com"], "https://evil-example.com"),
        ([".example.com"], "https://example.com.evil.org"),
        (["http://.example.com"], "https://chat.example.com"),
        (["example.com"], None),
        (["example.com"], "null"),
        (["example.com"], "http://[::1"),
        (["example.com"], "http://example.com:99999"),
        ([], "http://example.com"),
    ],
)
async def test_other_origins_are_refused(patterns: list[str], origin: str | None) -> None:
    assert await answer_for(patterns, origin) == DENY


async def test_refusal_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    before = registry.get("websocket", "rejected")

    with caplog.at_level(logging.WARNING, logger="gateway.security"):
        answer = await answer_for(["https://example.com"], "https://evil.org")

    assert answer == DENY
    [record] = [r for r in caplog.records if r.name == "gateway.security"]
    assert "'https://evil.org'" in record.getMessage()
    assert "/ws/" in record.getMessage()
    assert "127.0.0.1" in record.getMessage()
    assert registry.get("websocket", "rejected") == before + 1


async def test_the_inner_app_never_runs_when_refused() -> None:
    ran: list[Scope] = []

    answer = await handshake(OriginValidator(capture(ran), ["example.com"]), websocket_scope())

    assert answer == DENY
    assert ran == []


async def test_http_passes_through() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    start = await http_request(OriginValidator(app, []), http_scope())

    assert start["status"] == 204


def test_malformed_pattern_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="malformed allowed origin"):
        OriginValidator(capture([]), ["http://example.com:port"])


async def allowed_hosts_answer(origin: str) -> dict[str, object]:
    app = AllowedHostsOriginValidator(capture([]))
    return dict(await handshake(app, websocket_scope((b"origin", origin.encode()))))


async def test_allowed_hosts_come_from_settings() -> None:
    with override_settings(ALLOWED_HOSTS=[".example.org"]):
        assert await allowed_hosts_answer("https://iot.example.org") == ACCEPT
        assert await allowed_hosts_answer("http://example.com") == DENY


async def test_allowed_hosts_are_read_at_each_handshake() -> None:
    app = AllowedHostsOriginValidator(capture([]))
    scope = websocket_scope((b"origin", b"https://example.net"))

    with override_settings(ALLOWED_HOSTS=["example.net"]):
        assert dict(await handshake(app, scope)) == ACCEPT
    with override_settings(ALLOWED_HOSTS=["example.com"]):
        assert dict(await handshake(app, scope)) == DENY


async def test_debug_with_no_allowed_hosts_allows_localhost() -> None:
    with override_settings(DEBUG=True, ALLOWED_HOSTS=[]):
        assert await allowed_hosts_answer("http://localhost:8000") == ACCEPT
        assert await allowed_hosts_answer("http://127.0.0.1:8000") == ACCEPT
        assert await allowed_hosts_answer("http://[::1]:8000") == ACCEPT
        assert await allowed_hosts_answer("http://example.com") == DENY


async def test_no_allowed_hosts_without_debug_allows_nothing() -> None:
    with override_settings(DEBUG=False, ALLOWED_HOSTS=[]):
        assert await allowed_hosts_answer("http://localhost:8000") == DENY


async def test_wildcard_allowed_host_allows_everything() -> None:
    with override_settings(ALLOWED_HOSTS=["*"]):
        assert await allowed_hosts_answer("https://anywhere.example") == ACCEPT
