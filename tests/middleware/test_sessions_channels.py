"""Session middleware edge cases fail with the errors Channels and Django users catch.

Each test runs our SessionMiddlewareStack and Channels' (when installed) the same way.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.exceptions import SessionInterrupted
from django.core.exceptions import SuspiciousOperation
from django.test import override_settings

import gateway.middleware
from gateway.db import database_sync_to_async
from gateway.testing import HttpCommunicator
from gateway.types import Receive, Scope, Send
from tests.layers.reference import IMPLEMENTATIONS, import_reference

pytestmark = pytest.mark.django_db(transaction=True)


def sessions(name: str) -> Any:
    """Our middleware module, or Channels' sessions module when the reference is installed."""
    return import_reference("channels.sessions") if name == "channels" else gateway.middleware


async def saves_session(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    scope["session"]["colour"] = "blue"
    await database_sync_to_async(scope["session"].save)()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def deletes_session_midway(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    session = scope["session"]
    session["colour"] = "blue"
    await database_sync_to_async(session.save)()
    # Elsewhere (another request logging the user out) the session is deleted.
    store = import_module(settings.SESSION_ENGINE).SessionStore
    await database_sync_to_async(store(session_key=session.session_key).flush)()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_invalid_samesite_setting_is_an_assertion_error(name: str) -> None:
    app = sessions(name).SessionMiddlewareStack(saves_session)
    with override_settings(SESSION_COOKIE_SAMESITE="Hello"), pytest.raises(AssertionError):
        await HttpCommunicator(app, "GET", "/").get_response()


async def test_invalid_samesite_is_also_the_value_error_django_raises() -> None:
    app = gateway.middleware.SessionMiddlewareStack(saves_session)
    with (
        override_settings(SESSION_COOKIE_SAMESITE="Hello"),
        pytest.raises(ValueError, match="SESSION_COOKIE_SAMESITE"),
    ):
        await HttpCommunicator(app, "GET", "/").get_response()


@pytest.mark.parametrize("samesite", ["Strict", "None", "lax"])
async def test_valid_samesite_settings_set_the_cookie(samesite: str) -> None:
    app = gateway.middleware.SessionMiddlewareStack(saves_session)
    with override_settings(SESSION_COOKIE_SAMESITE=samesite):
        response = await HttpCommunicator(app, "GET", "/").get_response()
    cookies = [value for key, value in response["headers"] if key.lower() == b"set-cookie"]
    assert f"SameSite={samesite}".encode() in cookies[0]


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_session_deleted_during_the_request_is_suspicious(name: str) -> None:
    app = sessions(name).SessionMiddlewareStack(deletes_session_midway)
    with pytest.raises(SuspiciousOperation):
        await HttpCommunicator(app, "GET", "/").get_response()


async def test_session_deleted_during_the_request_is_also_djangos_error() -> None:
    app = gateway.middleware.SessionMiddlewareStack(deletes_session_midway)
    with pytest.raises(SessionInterrupted, match="session was deleted before the request"):
        await HttpCommunicator(app, "GET", "/").get_response()
