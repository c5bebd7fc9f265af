"""MQTT 3.1.1 conformance: each scenario runs against the embedded broker and a real Mosquitto.

Mosquitto is the reference: every expectation here holds for it first. The MQTT-x.y.z-n
numbers are the normative statements of the MQTT 3.1.1 specification.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from tests.mqtt.conformance_support import KINDS, PASSWORD, Broker, BrokerKind, paho_client, serving
from tests.mqtt.device_support import fast_hashing
from tests.mqtt.raw_mqtt import (
    Connack,
    ConnectOptions,
    PacketType,
    Publish,
    Will,
    connect,
    disconnect,
    pingreq,
    pubcomp,
    publish,
    pubrec,
    raw_connection,
    raw_session,
    subscribe,
    unsubscribe,
)

pytestmark = [pytest.mark.integration]
__all__ = ["fast_hashing"]  # the fixture, imported for pytest

QUIET = 0.5  # how long "nothing more arrives" is watched for
_ids = itertools.count()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> BrokerKind:
    kind: BrokerKind = request.param
    return kind


@pytest.fixture
async def broker(kind: BrokerKind) -> AsyncIterator[Broker]:
    """A broker open to anonymous clients, with no topic ACL."""
    async with serving(kind) as started:
        yield started


# The embedded broker logs devices in against the database; Mosquitto reads its own files.
DEVICE_KINDS = [
    pytest.param("embedded", marks=pytest.mark.django_db(transaction=True)),
    pytest.param("mosquitto"),
]


@pytest.fixture(params=DEVICE_KINDS)
def device_kind(request: pytest.FixtureRequest) -> BrokerKind:
    kind: BrokerKind = request.param
    if kind == "embedded":
        request.getfixturevalue("fast_hashing")
    return kind


@pytest.fixture
async def device_broker(device_kind: BrokerKind) -> AsyncIterator[Broker]:
    """A broker that knows sensor-1..3 and holds each to devices/<its id>/#."""
    async with serving(device_kind, devices=True) as started:
        yield started


async def publish_from(broker: Broker, topic: str, payload: bytes, qos: int = 0) -> None:
    """Publish from a client of its own, and wait until the broker has taken the message."""
    async with raw_session(broker, f"publisher-{next(_ids)}") as publisher:
        await publisher.publish(topic, payload, qos=qos)


# --- basics --------------------------------------------------------------------------------


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_a_subscriber_receives_what_is_published(broker: Broker, qos: int) -> None:
    async with paho_client(broker, "subscriber") as sub, paho_client(broker, "publisher") as pub:
        assert await sub.subscribe("basic/t", 2) == 2
        await pub.publish("basic/t", b"hello", qos)
        message = await sub.message()
        assert (message.topic, message.payload, message.qos) == ("basic/t", b"hello", qos)
        assert message.retain is False


async def test_a_retained_message_reaches_a_later_subscriber_with_the_retain_flag(
    broker: Broker,
) -> None:
    async with paho_client(broker, "publisher") as pub:
        await pub.publish("retained/t", b"kept", 1, retain=True)
    async with paho_client(broker, "late") as late:
        assert await late.subscribe("retained/#", 1) == 1
        message = await late.message()
        assert (message.topic, message.payload, message.qos) == ("retained/t", b"kept", 1)
        assert message.retain is True  # MQTT-3.3.1-8


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_an_empty_retained_publish_clears_the_retained_message(
    broker: Broker, qos: int
) -> None:
    async with raw_session(broker, "publisher") as publisher:
        await publisher.publish("retained/t", b"old", qos=1, retain=True)
        await publisher.publish("retained/t", b"", qos=qos, retain=True, packet_id=2)
    async with raw_session(broker, "late") as late:
        assert await late.subscribe(("retained/t", 2)) == [2]
        await publish_from(broker, "retained/t", b"live", qos=1)
        # MQTT-3.3.1-10/11: nothing retained comes first, nor after.
        first = await late.message()
        assert (first.payload, first.retain) == (b"live", False)
        assert await late.messages_within(QUIET) == []


# --- sessions ------------------------------------------------------------------------------


async def test_a_persistent_session_keeps_its_subscription_and_queues_messages(
    broker: Broker,
) -> None:
    async with raw_session(broker, "persistent", clean=False) as client:
        assert client.connack == Connack(session_present=False, return_code=0)
        assert await client.subscribe(("session/t", 1)) == [1]
        await client.send(disconnect())
    await publish_from(broker, "session/t", b"while away", qos=1)
    async with raw_session(broker, "persistent", clean=False) as client:
        assert client.connack == Connack(session_present=True, return_code=0)  # MQTT-3.2.2-2
        message = await client.message()
        assert (message.topic, message.payload, message.qos) == ("session/t", b"while away", 1)


async def test_a_device_reconnects_to_its_persistent_session(device_broker: Broker) -> None:
    login = {"username": "sensor-1", "password": PASSWORD, "clean_session": False}
    async with paho_client(device_broker, "sensor-1-board", **login) as device:
        assert device.connack == (False, 0)
    for _ in range(3):  # a reconnect racing the old connection's teardown was once refused (5)
        async with paho_client(device_broker, "sensor-1-board", **login) as device:
            assert device.connack == (True, 0)


async def test_a_zero_length_client_id_is_accepted_with_a_clean_session(broker: Broker) -> None:
    async with raw_session(broker, "", clean=True) as client:  # MQTT-3.1.3-6
        await client.send(pingreq())
        await client.expect(PacketType.PINGRESP)


async def test_a_zero_length_client_id_is_refused_for_a_persistent_session(
    broker: Broker,
) -> None:
    async with raw_connection(broker) as client:
        # MQTT-3.1.3-8: CONNACK 0x02 (identifier rejected), then the connection is closed.
        assert await client.connect("", clean=False) == Connack(False, 2)
        assert await client.read_until_closed() == []


async def test_a_device_with_a_zero_length_client_id_may_use_its_own_topics(
    device_broker: Broker,
) -> None:
    login: ConnectOptions = {"username": "sensor-1", "password": PASSWORD}
    async with (
        raw_session(device_broker, "sensor-1-watch", **login) as watcher,
        raw_session(device_broker, "", **login) as device,
    ):
        assert await watcher.subscribe(("devices/sensor-1/#", 1)) == [1]
        await device.publish("devices/sensor-1/telemetry", b"21.5", qos=1)
        message = await watcher.message()
        assert (message.topic, message.payload) == ("devices/sensor-1/telemetry", b"21.5")


async def test_a_second_connection_with_the_same_client_id_takes_over(broker: Broker) -> None:
    async with raw_session(broker, "same") as first, raw_session(broker, "same") as second:
        assert await first.read_until_closed() == []  # MQTT-3.1.4-2
        await second.send(pingreq())
        await second.expect(PacketType.PINGRESP)


# --- messages in flight --------------------------------------------------------------------


@pytest.mark.parametrize("qos", [1, 2])
async def test_an_unacknowledged_publish_is_sent_again_after_reconnecting(
    broker: Broker, qos: int
) -> None:
    async with raw_session(broker, "slow", clean=False) as subscriber:
        assert await subscriber.subscribe(("inflight/t", qos)) == [qos]
        await publish_from(broker, "inflight/t", b"once", qos)
        first = Publish.parse(await subscriber.expect(PacketType.PUBLISH))
        assert (first.payload, first.qos, first.dup) == (b"once", qos, False)
    # Gone without a PUBACK / PUBREC: MQTT-4.4.0-1, the same packet id again, DUP set.
    async with raw_session(broker, "slow", clean=False) as subscriber:
        again = Publish.parse(await subscriber.expect(PacketType.PUBLISH))
        assert (again.payload, again.qos, again.dup) == (b"once", qos, True)
        assert again.packet_id == first.packet_id


async def test_an_uncompleted_pubrel_is_sent_again_after_reconnecting(broker: Broker) -> None:
    async with raw_session(broker, "slow", clean=False) as subscriber:
        assert await subscriber.subscribe(("inflight/t", 2)) == [2]
        await publish_from(broker, "inflight/t", b"once", 2)
        first = Publish.parse(await subscriber.expect(PacketType.PUBLISH))
        assert first.packet_id is not None
        await subscriber.send(pubrec(first.packet_id))
        assert (await subscriber.expect(PacketType.PUBREL)).packet_id == first.packet_id
    # Gone without a PUBCOMP: MQTT-4.4.0-1, the PUBREL again (not the PUBLISH).
    async with raw_session(broker, "slow", clean=False) as subscriber:
        again = await subscriber.expect(PacketType.PUBREL)
        assert (again.packet_id, again.flags) == (first.packet_id, 0x02)
        await subscriber.send(pubcomp(again.packet_id))
        assert await subscriber.messages_within(QUIET) == []


# --- wills ---------------------------------------------------------------------------------

WILL = Will("wills/board", b"gone", qos=1)
KEEP_ALIVE = 1
# Mosquitto 2.0 looks at keep-alives only every 5 s or so (src/keepalive.c checks when
# `last_keepalive_check + 5 < now`), so it cuts a silent client off up to ~6 s late. The
# embedded broker times each connection, so it is held to the spec's 1.5 keep-alives.
LATE_SWEEP: dict[BrokerKind, float] = {"embedded": 0.0, "mosquitto": 6.0}
SLACK = 2.0  # for a loaded host


async def test_the_will_is_published_when_the_keep_alive_expires(broker: Broker) -> None:
    async with raw_session(broker, "watcher") as watcher:
        assert await watcher.subscribe(("wills/#", 1)) == [1]
        async with raw_session(broker, "silent", keep_alive=KEEP_ALIVE, will=WILL) as silent:
            # MQTT-3.1.2-24: cut off after 1.5 keep-alives of silence, as if the network failed.
            deadline = 1.5 * KEEP_ALIVE + LATE_SWEEP[broker.kind] + SLACK
            message = await watcher.message(timeout=deadline)
            assert (message.topic, message.payload) == ("wills/board", b"gone")
            assert await silent.read_until_closed() == []


async def test_the_will_is_published_when_the_connection_drops(broker: Broker) -> None:
    async with raw_session(broker, "watcher") as watcher:
        assert await watcher.subscribe(("wills/#", 1)) == [1]
        async with raw_session(broker, "dropping", will=WILL):
            pass  # the socket is closed without a DISCONNECT
        message = await watcher.message()
        assert (message.topic, message.payload) == ("wills/board", b"gone")


async def test_no_will_is_published_after_a_disconnect(broker: Broker) -> None:
    async with raw_session(broker, "watcher") as watcher:
        assert await watcher.subscribe(("wills/#", 1)) == [1]
        async with raw_session(broker, "polite", will=WILL) as polite:
            await polite.send(disconnect())  # MQTT-3.14.4-3: the will is discarded
        await publish_from(broker, "wills/marker", b"after", qos=1)
        assert (await watcher.message()).topic == "wills/marker"
        assert await watcher.messages_within(QUIET) == []


# --- subscriptions -------------------------------------------------------------------------


async def test_overlapping_subscriptions_deliver_once_at_the_highest_qos_or_once_per_filter(
    broker: Broker,
) -> None:
    async with raw_session(broker, "overlapping") as subscriber:
        granted = await subscriber.subscribe(("a/#", 2), ("a/+", 1), ("marker", 0))
        assert granted == [2, 1, 0]
        await publish_from(broker, "a/b", b"both", qos=2)
        await publish_from(broker, "marker", b"end")
        levels = []
        while (message := await subscriber.message()).topic != "marker":
            assert message.payload == b"both"
            levels.append(message.qos)
        levels += [message.qos for message in await subscriber.messages_within(QUIET)]
        # MQTT-3.3.5-1: at least once at the highest QoS, and further copies MAY follow.
        assert sorted(levels) in ([2], [1, 2])


async def test_dollar_topics_are_not_matched_by_wildcards(broker: Broker) -> None:
    async with raw_session(broker, "wildcards") as subscriber:
        assert await subscriber.subscribe(("#", 0), ("+/y", 0)) == [0, 0]
        # Mosquitto takes this PUBLISH (and delivers it to a "$x/#" subscriber); a broker may
        # also refuse "$" topics from clients and close the connection, hence a client of its own.
        async with raw_session(broker, "dollar") as dollar:
            await dollar.send(publish("$x/y", b"dollar"))
        await publish_from(broker, "marker", b"end")
        messages = [await subscriber.message(), *await subscriber.messages_within(QUIET)]
        assert [message.topic for message in messages] == ["marker"]  # MQTT-4.7.2-1


async def test_no_messages_arrive_after_unsubscribing(broker: Broker) -> None:
    async with raw_session(broker, "leaving") as subscriber:
        assert await subscriber.subscribe(("news/t", 1), ("marker", 1)) == [1, 1]
        await publish_from(broker, "news/t", b"before", qos=1)
        assert (await subscriber.message()).payload == b"before"
        await subscriber.send(unsubscribe(2, ["news/t"]))
        assert (await subscriber.expect(PacketType.UNSUBACK)).packet_id == 2
        await publish_from(broker, "news/t", b"after", qos=1)
        await publish_from(broker, "marker", b"end", qos=1)
        assert (await subscriber.message()).topic == "marker"


@pytest.mark.parametrize("granted", [0, 1])
async def test_a_qos2_publish_arrives_at_the_subscriptions_qos(
    broker: Broker, granted: int
) -> None:
    async with raw_session(broker, "downgraded") as subscriber:
        assert await subscriber.subscribe(("down/t", granted)) == [granted]
        await publish_from(broker, "down/t", b"x", qos=2)
        message = await subscriber.message()
        assert (message.payload, message.qos) == (b"x", granted)  # MQTT-3.8.4-6


# --- the connection ------------------------------------------------------------------------


async def test_keep_alive_zero_is_never_cut_off(broker: Broker) -> None:
    async with raw_session(broker, "idle", keep_alive=0) as idle:
        await asyncio.sleep(3.0)
        await idle.send(pingreq())
        await idle.expect(PacketType.PINGRESP)


async def test_a_second_connect_closes_the_connection(broker: Broker) -> None:
    async with raw_session(broker, "twice") as client:
        await client.send(connect("twice"))
        assert await client.read_until_closed() == []  # MQTT-3.1.0-2


async def test_a_wrong_protocol_name_closes_the_connection_without_connack(
    broker: Broker,
) -> None:
    async with raw_connection(broker) as client:
        await client.send(connect("wrong-name", protocol=b"MQTX"))
        assert await client.read_until_closed() == []  # MQTT-3.1.2-1


async def test_a_wrong_protocol_level_is_answered_with_connack_1_then_closed(
    broker: Broker,
) -> None:
    async with raw_connection(broker) as client:
        # MQTT-3.1.2-2: return code 0x01 (unacceptable protocol level), then closed.
        assert await client.connect("wrong-level", level=7) == Connack(False, 1)
        assert await client.read_until_closed() == []


async def test_a_client_id_that_is_not_utf8_closes_the_connection_without_connack(
    broker: Broker,
) -> None:
    async with raw_connection(broker) as client:
        await client.send(connect(b"board-\xff"))
        assert await client.read_until_closed() == []  # MQTT-1.5.3-1


INVALID_PUBLISHES = {
    "qos-3": publish("bad/t", b"x", qos=3),  # MQTT-3.3.1-4
    "nul-in-topic": publish("bad/\x00t", b"x"),  # MQTT-1.5.3-2
    "topic-not-utf8": publish(b"bad/\xff\xfe", b"x"),  # MQTT-1.5.3-1
}


@pytest.mark.parametrize("packet", INVALID_PUBLISHES.values(), ids=INVALID_PUBLISHES.keys())
async def test_an_invalid_publish_closes_the_connection(broker: Broker, packet: bytes) -> None:
    async with raw_session(broker, "invalid") as client:
        await client.send(packet)
        assert await client.read_until_closed() == []


BEFORE_CONNECT = {
    "publish": publish("early/t", b"x"),
    "subscribe": subscribe(1, [("early/#", 0)]),
    "pingreq": pingreq(),
}


@pytest.mark.parametrize("packet", BEFORE_CONNECT.values(), ids=BEFORE_CONNECT.keys())
async def test_a_packet_before_connect_closes_the_connection(broker: Broker, packet: bytes) -> None:
    async with raw_connection(broker) as client:
        await client.send(packet)
        assert await client.read_until_closed() == []  # MQTT-3.1.0-1
