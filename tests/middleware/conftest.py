from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client


@pytest.fixture
def user() -> User:
    return User.objects.create_user("alice", password="correct horse")


@pytest.fixture
def session_cookie(user: User) -> str:
    """The session id of a real Django login by ``user``."""
    client = Client()
    assert client.login(username="alice", password="correct horse")
    return client.cookies[settings.SESSION_COOKIE_NAME].value
