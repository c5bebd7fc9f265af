"""The embedded broker's pieces without sockets: packets, sessions, the subscription tree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mqtt import topic_matches
from protocol_adapters.mqtt.embedded_sessions import Outgoing, QueueLimits, Session
from protocol_adapters.mqtt.embedded_topics import RetainedStore, SubscriptionTree
from protocol_adapters.mqtt.wire import (
    PUBACK,
    PUBREL,
    Frame,
    FrameReader,
    MalformedPacket,
    ack,
    decode_connect,
    decode_publish,
    decode_subscribe,
    encode_publish,
)


def _connect_body(flags: int, client_id: bytes, name: bytes = b"MQTT", level: int = 4) -> bytes:
    def field(raw: bytes) -> bytes:
        return len(raw).to_bytes(2, "big") + raw

    return field(name) + bytes((level, flags)) + b"\x00\x3c" + field(client_id)


def test_frames_are_split_as_bytes_arrive() -> None:
    reader = FrameReader(max_packet=100)
    packet = encode_publish(b"a/b", b"hello", 1, False, False, 7)
    for byte in packet[:-1]:
        reader.feed(bytes((byte,)))
        assert reader.next() is None
    reader.feed(packet[-1:] + b"\xc0\x00")
    frame = reader.next()
    assert frame is not None
    publish = decode_publish(frame)
    assert (publish.topic, publish.payload, publish.qos, publish.packet_id) == (
        "a/b",
        b"hello",
        1,
        7,
    )
    ping = reader.next()
    assert ping is not None
    assert ping.kind == 12
    assert reader.next() is None


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\xff\xff\xff\xff\x01",  # five length bytes
        b"\x30\x80\x01",  # 128 bytes, over the limit of 100
        b"\xc2\x00",  # PINGREQ with flags
        b"\x20\x02\x00\x00",  # CONNACK from a client
        b"\x60\x02\x00\x01",  # PUBREL without its flags
    ],
)
def test_bad_frames_are_malformed(data: bytes) -> None:
    reader = FrameReader(max_packet=100)
    reader.feed(data)
    with pytest.raises(MalformedPacket):
        reader.next()


@pytest.mark.parametrize(
    ("flags", "body"),
    [
        (0x06, b"\x00\x01a\x00\x01"),  # QoS 3
        (0x08, b"\x00\x01a"),  # QoS 0 with DUP
        (0x00, b"\x00\x03a\x00b"),  # NUL in the topic
        (0x00, b"\x00\x02\xff\xfe"),  # not UTF-8
        (0x00, b"\x00\x03a/#"),  # a wildcard
        (0x02, b"\x00\x01a\x00\x00"),  # packet id 0
        (0x00, b"\x00"),  # ends early
    ],
)
def test_bad_publishes_are_malformed(flags: int, body: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decode_publish(Frame(3, flags, body))


def test_connect_rules() -> None:
    assert decode_connect(_connect_body(0x02, b"dev")).client_id == "dev"
    assert decode_connect(_connect_body(0x02, b"dev", b"MQIsdp", 3)).level == 3
    assert decode_connect(_connect_body(0x02, b"dev", level=5)).level == 0  # CONNACK 1
    for flags, client_id in [(0x03, b"x"), (0x12, b"x"), (0x42, b"x"), (0x02, b"\xc3")]:
        with pytest.raises(MalformedPacket):
            decode_connect(_connect_body(flags, client_id))
    with pytest.raises(MalformedPacket):
        decode_connect(_connect_body(0x02, b"x", b"MQTX"))


def test_subscribe_filters_are_checked() -> None:
    assert decode_subscribe(b"\x00\x05\x00\x03a/#\x01") == (5, [("a/#", 1)])
    for body in (b"\x00\x05\x00\x03#/a\x01", b"\x00\x05\x00\x02a+\x00", b"\x00\x05\x00\x01a\x03"):
        with pytest.raises(MalformedPacket):
            decode_subscribe(body)
    with pytest.raises(MalformedPacket):
        decode_subscribe(b"\x00\x05")  # no filter


def test_the_tree_matches_like_topic_matches() -> None:
    tree = SubscriptionTree()
    for client, topic_filter, qos in [
        ("a", "devices/+/telemetry", 1),
        ("a", "devices/#", 0),
        ("b", "#", 2),
        ("c", "devices/d1/telemetry", 0),
        ("d", "+/+", 1),
    ]:
        tree.add(topic_filter, client, qos)
    assert tree.match("devices/d1/telemetry") == {"a": 1, "b": 2, "c": 0}
    assert tree.match("devices") == {"a": 0, "b": 2}  # "devices/#" matches its parent
    assert tree.match("x/y") == {"b": 2, "d": 1}
    assert tree.match("$SYS/x") == {}  # no first-level wildcard matches a $-topic
    tree.remove("#", "b")
    tree.remove("devices/d1/telemetry", "c")
    assert tree.match("devices/d1/telemetry") == {"a": 1}


_LEVELS = st.sampled_from(["a", "b", "", "$s"])
_TOPICS = st.lists(_LEVELS, min_size=1, max_size=4).map("/".join)
_FILTERS = st.lists(st.sampled_from(["a", "b", "", "$s", "+"]), min_size=1, max_size=4).flatmap(
    lambda levels: st.sampled_from(["/".join(levels), "/".join([*levels, "#"]), "#"])
)


@given(st.lists(_FILTERS, min_size=1, max_size=6, unique=True), _TOPICS)
def test_the_tree_agrees_with_topic_matches(filters: list[str], topic: str) -> None:
    tree = SubscriptionTree()
    for index, topic_filter in enumerate(filters):
        tree.add(topic_filter, f"c{index}", 0)
    expected = {f"c{i}" for i, f in enumerate(filters) if topic_matches(f, topic)}
    assert set(tree.match(topic)) == expected


def test_an_empty_retained_message_clears_the_topic() -> None:
    store = RetainedStore(limit=2)
    assert store.put("a", b"1", 1)
    assert store.put("b", b"2", 0)
    assert not store.put("c", b"3", 0)  # full
    assert store.put("a", b"", 0)
    assert [m.topic for m in store.matching("#")] == ["b"]


class Wire:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def writable(self) -> bool:
        return True

    def take_over(self) -> None:
        pass


def test_a_session_resends_in_flight_with_dup_then_its_queue() -> None:
    session = Session("c", "", clean=False, limits=QueueLimits(max_inflight=1))
    first, second = Wire(), Wire()
    session.attach(first)
    for n in (1, 2):
        session.deliver(Outgoing(b"t", b"%d" % n, 1))
    assert first.sent == [encode_publish(b"t", b"1", 1, False, False, 1)]  # window of 1
    session.detach()
    session.attach(second)
    assert second.sent == [encode_publish(b"t", b"1", 1, False, True, 1)]
    session.puback(1)
    assert second.sent[-1] == encode_publish(b"t", b"2", 1, False, False, 2)


def test_a_qos2_release_is_resent_on_reconnect() -> None:
    session = Session("c", "", clean=False, limits=QueueLimits())
    session.attach(Wire())
    session.deliver(Outgoing(b"t", b"x", 2))
    session.pubrec(1)
    session.detach()
    again = Wire()
    session.attach(again)
    assert again.sent == [ack(PUBREL, 1)]
    session.pubcomp(1)
    assert not session.releasing


def test_the_queue_drops_the_oldest_past_its_limits() -> None:
    session = Session("c", "", clean=False, limits=QueueLimits(max_messages=3, max_bytes=10))
    dropped = sum(session.deliver(Outgoing(b"t", b"%d" % n, 1)) for n in range(5))
    assert dropped == 2
    assert [m.payload for m in session.queue] == [b"2", b"3", b"4"]
    assert session.deliver(Outgoing(b"t", b"123456789", 1)) == 3  # 10 bytes alone
    assert session.queued_bytes == 10
    wire = Wire()
    session.attach(wire)
    assert wire.sent == [encode_publish(b"t", b"123456789", 1, False, False, 1)]


def test_inbound_acknowledgements() -> None:
    session = Session("c", "", clean=True, limits=QueueLimits())
    wire = Wire()
    session.attach(wire)
    session.handling.add(4)
    session.acknowledge(1, 4)
    assert wire.sent == [ack(PUBACK, 4)]
    assert not session.handling
    session.acknowledge(2, 5)
    assert 5 in session.received
    session.pubrel(5)
    assert 5 not in session.received
