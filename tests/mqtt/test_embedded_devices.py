"""Devices against the embedded broker: login, their own topics only, presence and wills."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import paho.mqtt.client as paho
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from paho.mqtt.enums import CallbackAPIVersion

from tests.mqtt.device_support import fast_hashing, get_device, make_device
from tests.mqtt.embedded_support import (
    WAIT,
    Recorder,
    mosquitto_pub,
    mosquitto_sub,
    running_broker,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_hashing"),
]
__all__ = ["fast_hashing"]  # the fixture, imported for pytest

DEVICES = ["devices/+/telemetry", "devices/+/status"]


async def test_a_device_logs_in_and_is_online_while_connected() -> None:
    await make_device("dev-1", "s3cret")
    app = Recorder()
    async with running_broker(app, SUBSCRIPTIONS=DEVICES) as run:
        code, err = await mosquitto_pub(
            run.port, "-u", "dev-1", "-P", "s3cret", "-t", "devices/dev-1/telemetry", "-m", "1"
        )
        assert code == 0, err
        scope, payload = await app.next()
        assert scope["device_id"] == "dev-1"
        assert payload == b"1"
    device = await get_device("dev-1")
    assert device.online is False  # it disconnected
    assert device.last_seen is not None


async def test_a_wrong_password_is_refused() -> None:
    await make_device("dev-1", "s3cret")
    async with running_broker(Recorder(), SUBSCRIPTIONS=DEVICES) as run:
        code, err = await mosquitto_pub(
            run.port, "-u", "dev-1", "-P", "guess", "-t", "devices/dev-1/telemetry", "-m", "1"
        )
        assert code != 0
        assert "not authori" in err.lower()
        code, err = await mosquitto_pub(run.port, "-t", "devices/x/telemetry", "-m", "1")
        assert code != 0, "no username at all is refused too"
        assert run.metrics.get("mqtt", "rejected") == 2
    assert (await get_device("dev-1")).online is False


async def test_a_device_may_not_publish_to_another_devices_topics() -> None:
    await make_device("dev-1", "s3cret")
    app = Recorder()
    login = ["-u", "dev-1", "-P", "s3cret", "-q", "1"]
    async with running_broker(app, SUBSCRIPTIONS=DEVICES) as run:
        code, _ = await mosquitto_pub(run.port, *login, "-t", "devices/dev-2/telemetry", "-m", "x")
        assert code == 0  # MQTT 3.1.1 has no way to refuse a PUBLISH: it is dropped
        code, _ = await mosquitto_pub(run.port, *login, "-t", "devices/dev-1/telemetry", "-m", "ok")
        assert code == 0
        scope, payload = await app.next()
        assert (scope["topic"], payload) == ("devices/dev-1/telemetry", b"ok")
        assert app.messages.empty()
        assert run.metrics.get("mqtt", "rejected") == 1


async def test_a_device_may_not_subscribe_to_another_devices_topics() -> None:
    await make_device("dev-1", "s3cret")
    login = ["-u", "dev-1", "-P", "s3cret"]
    async with running_broker(Recorder(), SUBSCRIPTIONS=DEVICES) as run:
        async with mosquitto_sub(run.port, *login, "-t", "devices/dev-2/#") as sub:
            assert sub.granted == "128"  # the SUBACK failure return code
        async with mosquitto_sub(run.port, *login, "-t", "devices/#") as sub:
            assert sub.granted == "128"
        async with mosquitto_sub(run.port, *login, "-t", "devices/dev-1/#", "-q", "1") as sub:
            assert sub.granted == "1"


def _silent_client(port: int, connected: threading.Event) -> paho.Client:
    """A paho client that connects with a 1 s keep-alive and a will, then stops its loop."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="dev-1-board")
    client.username_pw_set("dev-1", "s3cret")
    client.will_set("devices/dev-1/status", "lost", qos=1)
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port, keepalive=1)
    client.loop_start()
    return client


def _close(client: paho.Client) -> None:
    sock: Any = client.socket()
    if sock is not None:
        sock.close()


async def test_a_silent_device_is_cut_off_marked_offline_and_its_will_published() -> None:
    await make_device("dev-1", "s3cret")
    await make_device("ops", "watch", topics=["devices/+/status"])  # a per-device override
    app = Recorder()
    async with (
        running_broker(app, SUBSCRIPTIONS=["devices/+/status"]) as run,
        mosquitto_sub(run.port, "-u", "ops", "-P", "watch", "-t", "devices/+/status") as ops,
    ):
        connected = threading.Event()
        client = await asyncio.to_thread(_silent_client, run.port, connected)
        try:
            assert await asyncio.to_thread(connected.wait, WAIT)
            assert (await get_device("dev-1")).online is True
            await asyncio.to_thread(client.loop_stop)  # no more PINGREQ; the socket stays open
            assert await ops.message() == "devices/dev-1/status lost"
            scope, payload = await app.next()
            assert (scope["topic"], scope["device_id"], payload) == (
                "devices/dev-1/status",
                "dev-1",
                b"lost",
            )
        finally:
            await asyncio.to_thread(_close, client)
        assert (await get_device("dev-1")).online is False


@pytest.mark.urls("tests.django_app.device_admin_urls")
async def test_the_admin_action_sends_a_command_to_a_device() -> None:
    device = await make_device("dev-1", "s3cret")
    admin = await sync_to_async(User.objects.create_superuser)("root", "r@example.com", "pw")
    browser = Client()
    await sync_to_async(browser.force_login)(admin)
    form: dict[str, Any] = {
        "action": "send_command",
        "_selected_action": [str(device.pk)],
        "topic_suffix": "commands",
        "payload": '{"led": "on"}',
    }
    async with (
        running_broker(Recorder(), SUBSCRIPTIONS=DEVICES) as run,
        mosquitto_sub(run.port, "-u", "dev-1", "-P", "s3cret", "-t", "devices/dev-1/#") as sub,
    ):
        page = await sync_to_async(browser.post)("/admin/gateway/device/", form)
        assert page.status_code == 200
        assert b"Send a command" in page.content
        done = await sync_to_async(browser.post)("/admin/gateway/device/", {**form, "apply": "1"})
        assert done.status_code == 302
        assert await sub.message() == 'devices/dev-1/commands {"led":"on"}'
