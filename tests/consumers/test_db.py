from __future__ import annotations

import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import IntegrityError, connections

from gateway.consumers import AsyncJsonWebsocketConsumer, JsonWebsocketConsumer
from gateway.db import close_old_connections_enabled, database_sync_to_async
from gateway.testing import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)


class Accounts(JsonWebsocketConsumer):
    """Creates and counts users with the ORM, straight from sync handlers."""

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content["action"] == "create":
            User.objects.create_user(content["username"])
        names = list(User.objects.order_by("username").values_list("username", flat=True))
        self.send_json({"users": names})


async def test_sync_consumer_uses_the_orm() -> None:
    await database_sync_to_async(User.objects.create_user)("existing")
    communicator = WebsocketCommunicator(Accounts.as_asgi(), "/accounts/")
    await communicator.connect()
    await communicator.send_json_to({"action": "list"})
    assert await communicator.receive_json_from() == {"users": ["existing"]}
    await communicator.send_json_to({"action": "create", "username": "ada"})
    assert await communicator.receive_json_from() == {"users": ["ada", "existing"]}
    await communicator.disconnect()
    assert await User.objects.filter(username="ada").aexists()


async def test_database_errors_propagate_from_sync_consumers() -> None:
    communicator = WebsocketCommunicator(Accounts.as_asgi(), "/accounts/")
    await communicator.connect()
    await communicator.send_json_to({"action": "create", "username": "twin"})
    await communicator.receive_json_from()
    await communicator.send_json_to({"action": "create", "username": "twin"})
    with pytest.raises(IntegrityError):
        await communicator.wait()


@database_sync_to_async
def create_and_count(username: str) -> tuple[int, bool]:
    User.objects.create_user(username)
    return User.objects.count(), threading.current_thread() is threading.main_thread()


class AsyncAccounts(AsyncJsonWebsocketConsumer):
    """Reaches the ORM through database_sync_to_async from async handlers."""

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        count, in_main_thread = await create_and_count(content["username"])
        await self.send_json({"count": count, "in_main_thread": in_main_thread})


async def test_async_consumer_with_database_sync_to_async() -> None:
    communicator = WebsocketCommunicator(AsyncAccounts.as_asgi(), "/accounts/")
    await communicator.connect()
    await communicator.send_json_to({"username": "grace"})
    assert await communicator.receive_json_from() == {"count": 1, "in_main_thread": False}
    await communicator.send_json_to({"username": "linus"})
    assert (await communicator.receive_json_from())["count"] == 2
    await communicator.disconnect()


def _mark_connection_fresh() -> bool:
    """Use the thread's connection and mark it; Django's close_old_connections clears the mark."""
    User.objects.exists()
    connection = connections["default"]
    connection.health_check_done = True
    return connection.health_check_done


async def test_database_sync_to_async_closes_old_connections_after_the_call() -> None:
    await database_sync_to_async(_mark_connection_fresh)()
    marked = await sync_to_async(lambda: connections["default"].health_check_done)()
    assert marked is False

    await sync_to_async(_mark_connection_fresh)()
    marked = await sync_to_async(lambda: connections["default"].health_check_done)()
    assert marked is True


async def test_communicators_keep_connections_open_like_the_test_client() -> None:
    token = close_old_connections_enabled.set(False)
    try:
        await database_sync_to_async(_mark_connection_fresh)()
    finally:
        close_old_connections_enabled.reset(token)
    marked = await sync_to_async(lambda: connections["default"].health_check_done)()
    assert marked is True
