"""The admin's "Send a command" waits for the answers, through a real Mosquitto and paho devices."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from django_app.models.commands import DeviceCommand
from django_app.models.devices import Device
from gateway import MqttTopicRouter, ProtocolTypeRouter
from gateway.db import database_sync_to_async
from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.mqtt.external_support import running_gateway, settings_for
from tests.mqtt.paho_support import AnsweringDevice

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.django_app.device_admin_urls"),
]


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


@database_sync_to_async
def devices(*device_ids: str) -> list[str]:
    return [str(Device.objects.create(device_id=d).pk) for d in device_ids]


@sync_to_async
def admin_browser() -> Client:
    browser = Client()
    browser.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    return browser


async def test_send_a_command_shows_each_answer_and_each_timeout(broker: Mosquitto) -> None:
    pks = await devices("pump-1", "pump-2", "mute")
    browser = await admin_browser()
    form: dict[str, Any] = {
        "action": "send_command",
        "_selected_action": pks,
        "topic_suffix": "commands",
        "payload": '{"led": "on"}',
        "wait": "on",
        "command": "led",
        "timeout": "1.5",
        "apply": "1",
    }
    app = ProtocolTypeRouter({"mqtt": MqttTopicRouter([])})
    async with running_gateway(app, settings_for(broker, COMMANDS=True)):
        answering = [
            await asyncio.to_thread(AnsweringDevice, broker, device_id)
            for device_id in ("pump-1", "pump-2")
        ]
        try:
            page = await sync_to_async(browser.post)("/admin/gateway/device/", form)
        finally:
            for device in answering:
                device.close()
        assert page.status_code == 200
        html = page.content.decode()
        for device_id in ("pump-1", "pump-2"):
            assert (
                f"<td>{device_id}</td><td>answered</td><td><code>{{&quot;device&quot;: "
                f"&quot;{device_id}&quot;, &quot;command&quot;: &quot;led&quot;"
            ) in html
        assert "<td>mute</td><td>timed out</td><td><code>no answer within 1.5s</code>" in html

    # The history is written just after the round trip; the gateway's stop writes the rest.
    # The device's own page lists its command history.
    pump = await sync_to_async(Device.objects.get)(device_id="pump-1")
    detail = await sync_to_async(browser.get)(f"/admin/gateway/device/{pump.pk}/change/")
    assert "Command history" in detail.content.decode()
    assert "<td>led</td><td><code>{&quot;led&quot;:&quot;on&quot;}</code></td><td>answered" in (
        detail.content.decode()
    )
    history = await sync_to_async(browser.get)("/admin/gateway/devicecommand/")
    assert history.status_code == 200
    assert "timed out" in history.content.decode()
    statuses = await sync_to_async(
        lambda: sorted(DeviceCommand.objects.values_list("device__device_id", "status"))
    )()
    assert statuses == [("mute", "timed_out"), ("pump-1", "answered"), ("pump-2", "answered")]


async def test_the_form_needs_a_valid_command_name_to_wait() -> None:
    pks = await devices("pump-1")
    browser = await admin_browser()
    form = {
        "action": "send_command",
        "_selected_action": pks,
        "topic_suffix": "commands",
        "payload": "{}",
        "wait": "on",
        "command": "a/+/b",
        "apply": "1",
    }
    page = await sync_to_async(browser.post)("/admin/gateway/device/", form)
    assert page.status_code == 200
    assert "wildcard" in page.content.decode()


async def test_the_add_page_shows_an_empty_history() -> None:
    browser = await admin_browser()
    page = await sync_to_async(browser.get)("/admin/gateway/device/add/")
    assert page.status_code == 200
    assert "No commands yet." in page.content.decode()
