"""Django's devices drive a real Mosquitto's dynamic security (issue 14, part 1).

Each test starts Mosquitto with the dynamic-security plugin on a free 127.0.0.1 port; the
GATEWAY setting names a `MosquittoDynsec` adapter for it, so saving a device in Django pushes
it there, and the adapter's start (a gateway start) resyncs everything.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from django_app.broker_access import set_password
from django_app.models.devices import Device, DeviceCredential
from gateway import broker_access
from gateway.adapters import AdapterContext
from gateway.broker_access import DeviceAccess
from gateway.conf import GatewaySettings
from gateway.db import database_sync_to_async
from gateway.metrics import MetricsRegistry
from gateway.server import Gateway
from protocol_adapters.mqtt.dynsec import DynsecSyncer, MosquittoDynsec
from tests.integration.mosquitto import Mosquitto, free_port
from tests.mqtt.conformance_support import Broker
from tests.mqtt.device_support import fast_hashing
from tests.mqtt.dynsec_support import (
    ADMIN,
    ADMIN_PASSWORD,
    dynsec_gateway,
    running_dynsec_mosquitto,
)
from tests.mqtt.raw_mqtt import RawClient, raw_connection, raw_session

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
__all__ = ["fast_hashing"]

NOT_AUTHORISED = 5
QUIET = 0.5


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    with running_dynsec_mosquitto() as broker:
        yield broker


@pytest.fixture
def broker(mosquitto: Mosquitto, settings: Any, fast_hashing: None) -> Broker:
    """The Mosquitto, with GATEWAY naming the adapter that keeps it in step."""
    settings.GATEWAY = dynsec_gateway(mosquitto.port)
    return Broker("mosquitto", mosquitto.port)


@pytest.fixture
async def observer(broker: Broker) -> AsyncIterator[RawClient]:
    """The admin client, subscribed to every topic."""
    async with raw_session(broker, "observer", username=ADMIN, password=ADMIN_PASSWORD) as client:
        assert await client.subscribe(("#", 1)) == [1]
        yield client


@database_sync_to_async
def add_device(device_id: str, password: str, topics: tuple[str, ...] = ()) -> None:
    """What the admin or ``adddevices`` does: a device and its credential, password set."""
    device = Device.objects.create(device_id=device_id)
    credential = DeviceCredential(device=device, topics=list(topics))
    set_password(credential, password)
    credential.save()


@database_sync_to_async
def new_password(device_id: str, password: str) -> None:
    credential = DeviceCredential.objects.get(device__device_id=device_id)
    set_password(credential, password)
    credential.save()


@database_sync_to_async
def disable(device_id: str) -> None:
    """Take the device's credential away: it may no longer log in."""
    DeviceCredential.objects.filter(device__device_id=device_id).delete()


async def login(broker: Broker, device_id: str, password: str) -> int:
    async with raw_connection(broker) as client:
        return (await client.connect(device_id, username=device_id, password=password)).return_code


async def start_gateway(settings: Any) -> MosquittoDynsec:
    """The adapter as the gateway starts it (its start is the full resync)."""
    options = settings.GATEWAY["ADAPTERS"]["dynsec"]["OPTIONS"]
    assert MosquittoDynsec.check_options(options) == []

    async def no_dead_letters(letter: Any) -> None:
        raise AssertionError(letter)

    context = AdapterContext(
        app=no_dead_letters, name="dynsec", options=options, metrics=MetricsRegistry(),
        dead_letter=no_dead_letters,
    )  # fmt: skip
    adapter = MosquittoDynsec(context)
    await adapter.start()
    return adapter


async def test_a_device_made_in_django_publishes_within_its_topics_only(
    broker: Broker, observer: RawClient
) -> None:
    await add_device("pump-1", "secret-1")
    async with raw_session(broker, "pump-1", username="pump-1", password="secret-1") as device:
        await device.publish("devices/pump-1/telemetry", b"mine", qos=1)
        await device.publish("devices/pump-2/telemetry", b"not mine", qos=1)
        assert await device.subscribe(("devices/pump-1/commands", 1)) == [1]
        assert await device.subscribe(("devices/+/commands", 1)) == [0x80]
    assert [m.topic for m in await observer.messages_within(QUIET)] == ["devices/pump-1/telemetry"]
    assert await login(broker, "pump-1", "wrong") == NOT_AUTHORISED


async def test_a_disabled_device_is_dropped_and_refused(broker: Broker) -> None:
    await add_device("pump-1", "secret-1")
    async with raw_session(broker, "pump-1", username="pump-1", password="secret-1") as device:
        await disable("pump-1")
        assert await device.closed(1.0), "the live connection was not dropped within a second"
    assert await login(broker, "pump-1", "secret-1") == NOT_AUTHORISED


async def test_a_deleted_device_is_dropped_and_forgotten(broker: Broker) -> None:
    await add_device("pump-1", "secret-1")
    async with raw_session(broker, "pump-1", username="pump-1", password="secret-1") as device:
        await database_sync_to_async(Device.objects.filter(device_id="pump-1").delete)()
        assert await device.closed(1.0)
    assert await login(broker, "pump-1", "secret-1") == NOT_AUTHORISED


async def test_a_new_password_takes_effect(broker: Broker) -> None:
    await add_device("pump-1", "old-secret")
    async with raw_session(broker, "pump-1", username="pump-1", password="old-secret") as device:
        await new_password("pump-1", "new-secret")
        assert await device.closed(1.0), "the old login stayed connected"
    assert await login(broker, "pump-1", "old-secret") == NOT_AUTHORISED
    assert await login(broker, "pump-1", "new-secret") == 0


async def test_new_topics_take_effect(broker: Broker, observer: RawClient) -> None:
    await add_device("pump-1", "secret-1")

    @database_sync_to_async
    def set_topics(topics: list[str]) -> None:
        credential = DeviceCredential.objects.get(device__device_id="pump-1")
        credential.topics = topics
        credential.save()

    await set_topics(["fleet/{device_id}/#"])
    async with raw_session(broker, "pump-1", username="pump-1", password="secret-1") as device:
        await device.publish("fleet/pump-1/x", b"now allowed", qos=1)
        await device.publish("devices/pump-1/x", b"no longer", qos=1)
    assert [m.topic for m in await observer.messages_within(QUIET)] == ["fleet/pump-1/x"]


async def test_a_gateway_start_resyncs_without_dropping_devices(
    broker: Broker, settings: Any
) -> None:
    await add_device("pump-1", "secret-1")
    await add_device("pump-2", "secret-2")
    gateway = settings.GATEWAY
    settings.GATEWAY = {}  # the gateway is down: these changes do not reach the broker
    await database_sync_to_async(Device.objects.filter(device_id="pump-2").delete)()
    await database_sync_to_async(Device.objects.create)(device_id="pump-3")
    settings.GATEWAY = gateway
    async with raw_session(broker, "pump-1", username="pump-1", password="secret-1") as device:
        adapter = await start_gateway(settings)
        assert adapter.health().status == "ok"
        assert "deleted: pump-2" in adapter.health().detail
        assert "created: pump-3" in adapter.health().detail
        assert not await device.closed(QUIET), "the resync dropped a device in step"
        await device.publish("devices/pump-1/still", b"here", qos=1)
        again = await broker_access.resync()
        assert not again[0].changed(), again[0].lines()
    assert await login(broker, "pump-2", "secret-2") == NOT_AUTHORISED


async def test_a_password_changed_without_the_plaintext_disables_the_device(
    broker: Broker,
) -> None:
    await add_device("pump-1", "secret-1")

    @database_sync_to_async
    def change_hash_only() -> None:  # a path that never told the broker the password
        credential = DeviceCredential.objects.get(device__device_id="pump-1")
        credential.set_password("elsewhere")
        credential.save()

    await change_hash_only()
    assert await login(broker, "pump-1", "secret-1") == NOT_AUTHORISED
    reports = await broker_access.resync()
    assert reports[0].without_password == ["pump-1"]
    await new_password("pump-1", "secret-2")
    assert await login(broker, "pump-1", "secret-2") == 0


async def test_syncbroker_reports_what_it_changed(broker: Broker, settings: Any) -> None:
    gateway = settings.GATEWAY
    settings.GATEWAY = {}
    await add_device("pump-1", "secret-1")
    settings.GATEWAY = gateway
    out = io.StringIO()
    await sync_to_async(call_command)("syncbroker", stdout=out)
    text = out.getvalue()
    assert "created: pump-1" in text
    assert "no password on the broker (set it again to enable): pump-1" in text
    out = io.StringIO()
    await sync_to_async(call_command)("syncbroker", stdout=out)
    assert "unchanged: 1" in out.getvalue()


async def test_a_renamed_device_loses_its_old_login(broker: Broker) -> None:
    await add_device("pump-1", "secret-1")

    @database_sync_to_async
    def rename() -> None:
        device = Device.objects.get(device_id="pump-1")
        device.device_id = "pump-9"
        device.save()

    await rename()
    assert await login(broker, "pump-1", "secret-1") == NOT_AUTHORISED
    reports = await broker_access.resync()
    assert reports[0].without_password == ["pump-9"]  # its password was never pushed


async def test_an_unreachable_broker_leaves_the_gateway_up_and_degraded(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.GATEWAY = dynsec_gateway(free_port(), TIMEOUT=1.0)
    adapter = await start_gateway(settings)
    assert adapter.health().status == "degraded"
    assert "cannot reach Mosquitto's dynamic security" in caplog.text
    await add_device("pump-1", "secret-1")  # the save succeeds; the push is logged
    assert "not pushed to the broker" in caplog.text


async def test_a_gateway_process_start_syncs_and_reports_in_its_health(
    broker: Broker, settings: Any
) -> None:
    await add_device("pump-1", "secret-1")

    async def root(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("no lifespan")  # the gateway carries on without one

    gateway = Gateway(root, settings=GatewaySettings({**settings.GATEWAY, "LOOP": "asyncio"}),
                      host="127.0.0.1", port=0)  # fmt: skip
    async with raw_session(broker, "pump-1", username="pump-1", password="secret-1") as device:
        ready = asyncio.Event()
        serving = asyncio.create_task(gateway.serve(ready))
        await asyncio.wait_for(ready.wait(), 30)
        try:
            async with httpx.AsyncClient() as client:
                health = (await client.get(gateway.listeners[0].address + "/-/health")).json()
        finally:
            gateway.stop()
            assert await asyncio.wait_for(serving, 30) == 0
        assert health["adapters"]["dynsec"]["status"] == "ok"
        assert health["adapters"]["dynsec"]["detail"] == "unchanged: 1"
        assert not await device.closed(QUIET)


async def test_two_gateways_syncing_at_once_agree(broker: Broker, settings: Any) -> None:
    options = settings.GATEWAY["ADAPTERS"]["dynsec"]["OPTIONS"]
    first, second = DynsecSyncer("one", options), DynsecSyncer("two", options)
    devices = [DeviceAccess(f"pump-{n}", enabled=True, fingerprint="f") for n in range(20)]
    reports = await asyncio.gather(*(s.apply(devices, complete=True) for s in (first, second)))
    assert [r.errors for r in reports] == [[], []]
    again = await first.apply(devices, complete=True)
    assert (again.unchanged, again.changed()) == (20, False)


async def test_adddevices_reaches_the_broker(broker: Broker) -> None:
    await sync_to_async(call_command)(
        "adddevices", "pump-1", "pump-2", password="s3cret", stdout=io.StringIO()
    )
    assert [await login(broker, d, "s3cret") for d in ("pump-1", "pump-2")] == [0, 0]
    await sync_to_async(call_command)("adddevices", "pump-1", password="n3w", stdout=io.StringIO())
    assert [await login(broker, "pump-1", p) for p in ("s3cret", "n3w")] == [NOT_AUTHORISED, 0]


@pytest.mark.urls("tests.django_app.device_admin_urls")
async def test_a_password_set_in_the_admin_reaches_the_broker(
    broker: Broker, admin_client: Any
) -> None:
    await add_device("pump-1", "old-secret")
    pump = await Device.objects.aget(device_id="pump-1")
    credential = await DeviceCredential.objects.aget(device=pump)
    form = {
        "device_id": "pump-1",
        "name": "",
        "credential-TOTAL_FORMS": "1",
        "credential-INITIAL_FORMS": "1",
        "credential-MIN_NUM_FORMS": "0",
        "credential-MAX_NUM_FORMS": "1",
        "credential-0-id": str(credential.pk),
        "credential-0-device": str(pump.pk),
        "credential-0-topics": "[]",
        "credential-0-new_password": "admin-set",
    }
    page = await sync_to_async(admin_client.post)(f"/admin/gateway/device/{pump.pk}/change/", form)
    assert page.status_code == 302, page.content.decode()[:2000]
    assert await login(broker, "pump-1", "old-secret") == NOT_AUTHORISED
    assert await login(broker, "pump-1", "admin-set") == 0
