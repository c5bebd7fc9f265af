"""login() and logout() fail and signal as in Channels, whose users' tests match their texts.

Each test runs against our functions and Channels' (when installed).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.backends.db import SessionStore
from django.test import override_settings

import gateway.middleware
from tests.layers.reference import IMPLEMENTATIONS, import_reference

pytestmark = pytest.mark.django_db(transaction=True)


def auth(name: str) -> Any:
    """Our middleware module, or Channels' auth module when the reference is installed."""
    return import_reference("channels.auth") if name == "channels" else gateway.middleware


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_login_without_a_session(name: str) -> None:
    wording = "Cannot find session in scope. You should wrap your consumer in SessionMiddleware."
    with pytest.raises(ValueError, match=wording):
        await auth(name).login({}, user=None)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_login_without_a_user(name: str) -> None:
    wording = "User must be passed as an argument or must be present in the scope."
    with pytest.raises(ValueError, match=wording):
        await auth(name).login({"session": SessionStore()}, user=None)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_login_with_several_backends_and_none_named(name: str) -> None:
    backends = [
        "django.contrib.auth.backends.ModelBackend",
        "django.contrib.auth.backends.AllowAllUsersModelBackend",
    ]
    wording = "You have multiple authentication backends configured"
    user = User(pk=7, username="bob")
    with (
        override_settings(AUTHENTICATION_BACKENDS=backends),
        pytest.raises(ValueError, match=wording),
    ):
        await auth(name).login({"session": SessionStore()}, user)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_logout_of_nobody_sends_no_signal_and_adds_no_user(name: str) -> None:
    signals: list[object] = []

    def on_logout(sender: object, user: object, **kwargs: object) -> None:
        signals.append(user)

    scope: dict[str, Any] = {"session": SessionStore()}
    user_logged_out.connect(on_logout)
    try:
        await auth(name).logout(scope)
    finally:
        user_logged_out.disconnect(on_logout)
    assert signals == []
    assert "user" not in scope
