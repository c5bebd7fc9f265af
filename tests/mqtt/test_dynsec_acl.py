"""One ACL: a device's topic filters allow and deny the same on the embedded broker and on a
Mosquitto whose dynamic security the gateway filled from the same Django device.

Each case runs against both: the embedded broker reads the device from the database, the
Mosquitto gets it pushed as a dynsec client and role.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, Literal

import pytest

from django_app.broker_access import set_password
from django_app.models.devices import DeviceCredential
from gateway.db import database_sync_to_async
from tests.mqtt.conformance_support import Broker
from tests.mqtt.device_support import fast_hashing, make_device
from tests.mqtt.dynsec_support import dynsec_gateway, running_dynsec_mosquitto
from tests.mqtt.embedded_support import Recorder, running_broker
from tests.mqtt.raw_mqtt import raw_session

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
__all__ = ["fast_hashing"]

Kind = Literal["embedded", "mosquitto-dynsec"]
PASSWORD = "acl-test-password"
TOPICS = ("devices/{device_id}/#", "fleet/+/status", "+/alarm")
PUBLISHED = {
    "devices/pump-1/telemetry": True,
    "devices/pump-1": True,  # "a/#" covers its parent "a"
    "devices/pump-1/a/b": True,
    "devices/pump-2/telemetry": False,
    "devices": False,
    "fleet/north/status": True,
    "fleet/north/south/status": False,
    "fleet/status": False,
    "site/alarm": True,
    "site/x/alarm": False,
}
SUBSCRIBED = {
    "devices/pump-1/#": True,
    "devices/pump-1/commands": True,
    "devices/pump-1/+": True,
    "devices/pump-1": True,
    "devices/+/commands": False,
    "devices/#": False,
    "#": False,
    "fleet/+/status": True,
    "fleet/north/status": True,
    "fleet/+/+": False,
    "fleet/#": False,
    "+/alarm": True,
    "x/alarm": True,
    "$SYS/alarm": False,  # MQTT's "+" never matches a "$" level; dynsec's would, unless denied
    "+/+": False,
}


@pytest.fixture(params=["embedded", "mosquitto-dynsec"])
async def broker(
    request: pytest.FixtureRequest, settings: Any, fast_hashing: None
) -> AsyncIterator[Broker]:
    """pump-1 limited to TOPICS, and an observer allowed everything, on either broker."""
    kind: Kind = request.param
    port = 0
    async with AsyncExitStack() as stack:
        if kind == "mosquitto-dynsec":
            mosquitto = stack.enter_context(running_dynsec_mosquitto())
            settings.GATEWAY = dynsec_gateway(mosquitto.port)  # the saves below push the devices
            port = mosquitto.port
        await make_pushed("pump-1", TOPICS)
        await make_pushed("observer", ("#",))
        if kind == "embedded":
            run = await stack.enter_async_context(running_broker(Recorder(), SUBSCRIPTIONS=["#"]))
            port = run.port
        yield Broker("embedded" if kind == "embedded" else "mosquitto", port)


async def make_pushed(device_id: str, topics: tuple[str, ...]) -> None:
    """A device as `adddevices` makes it: the password reaches a broker that needs it."""
    await make_device(device_id, PASSWORD, topics)

    @database_sync_to_async
    def push_password() -> None:
        credential = DeviceCredential.objects.get(device__device_id=device_id)
        set_password(credential, PASSWORD)
        credential.save()

    await push_password()


async def test_publish_is_allowed_on_the_same_topics(broker: Broker) -> None:
    async with (
        raw_session(broker, "observer", username="observer", password=PASSWORD) as observer,
        raw_session(broker, "pump-1", username="pump-1", password=PASSWORD) as device,
    ):
        assert await observer.subscribe(("#", 1)) == [1]
        for topic in PUBLISHED:
            await device.publish(topic, topic.encode(), qos=1)
        received = {message.topic for message in await observer.messages_within(0.5)}
    assert received == {topic for topic, allowed in PUBLISHED.items() if allowed}


@pytest.mark.parametrize(("topic_filter", "allowed"), SUBSCRIBED.items())
async def test_subscribe_is_allowed_for_the_same_filters(
    broker: Broker, topic_filter: str, allowed: bool
) -> None:
    async with raw_session(broker, "pump-1", username="pump-1", password=PASSWORD) as device:
        assert await device.subscribe((topic_filter, 1)) == ([1] if allowed else [0x80])
