"""MQTT 3.1.1 packets on the wire: framing, decoding with every check the spec asks of a
server, and encoding of what a server sends.

Decoding raises `MalformedPacket` for anything MQTT says the server must close the
connection on; the broker logs the reason and closes. Nothing here does I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CONNACK_ACCEPTED",
    "CONNACK_BAD_PROTOCOL",
    "CONNACK_ID_REJECTED",
    "CONNACK_NOT_AUTHORIZED",
    "CONNACK_SERVER_UNAVAILABLE",
    "PINGRESP",
    "Connect",
    "Frame",
    "FrameReader",
    "MalformedPacket",
    "Publish",
    "Will",
    "ack",
    "connack",
    "decode_connect",
    "decode_packet_id",
    "decode_publish",
    "decode_subscribe",
    "decode_unsubscribe",
    "encode_publish",
    "suback",
    "unsuback",
    "validate_filter",
]

CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 3, 4, 5, 6, 7
SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT = 8, 10, 12, 14

CONNACK_ACCEPTED: Final = 0
CONNACK_BAD_PROTOCOL: Final = 1
CONNACK_ID_REJECTED: Final = 2
CONNACK_SERVER_UNAVAILABLE: Final = 3
CONNACK_NOT_AUTHORIZED: Final = 5

PINGRESP: Final = b"\xd0\x00"
_PROTOCOLS: Final = {"MQTT": 4, "MQIsdp": 3}
_FLAGS: Final = {PUBREL: 2, SUBSCRIBE: 2, UNSUBSCRIBE: 2}
"""Fixed-header flags MQTT requires per packet type (PUBLISH has its own; all others 0)."""
_EMPTY: Final = frozenset({PINGREQ, DISCONNECT})


class MalformedPacket(ValueError):
    """A packet MQTT 3.1.1 says the server must close the connection on."""


@dataclass(slots=True)
class Frame:
    """One packet's fixed header split off: its type, flags and the rest of its bytes."""

    kind: int
    flags: int
    body: bytes


class FrameReader:
    """Splits a byte stream into frames; refuses packets over `max_packet` bytes."""

    __slots__ = ("buffer", "max_packet")

    def __init__(self, max_packet: int) -> None:
        self.max_packet = max_packet
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next(self) -> Frame | None:
        """The next complete frame, or None until more bytes come."""
        buffer = self.buffer
        length, shift, index = 0, 0, 1
        while True:
            if index >= len(buffer):
                return None
            byte = buffer[index]
            length |= (byte & 0x7F) << shift
            index += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MalformedPacket("remaining length longer than 4 bytes")
        if length > self.max_packet:
            raise MalformedPacket(f"a {length}-byte packet, over the limit of {self.max_packet}")
        end = index + length
        if len(buffer) < end:
            return None
        header = buffer[0]
        frame = Frame(header >> 4, header & 0x0F, bytes(buffer[index:end]))
        del buffer[:end]
        _check_header(frame)
        return frame


def _check_header(frame: Frame) -> None:
    if frame.kind == PUBLISH:
        return
    if frame.kind not in (CONNECT, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE):
        if frame.kind not in _EMPTY:
            raise MalformedPacket(f"packet type {frame.kind} is not one a client sends")
        if frame.body:
            raise MalformedPacket(f"packet type {frame.kind} must be empty")
    if frame.flags != _FLAGS.get(frame.kind, 0):
        raise MalformedPacket(f"packet type {frame.kind} with reserved flags {frame.flags:#x}")


# --- decoding -------------------------------------------------------------------------------


class _Cursor:
    """Reads MQTT's fields from one packet body."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.at = 0

    @property
    def left(self) -> int:
        return len(self.body) - self.at

    def byte(self) -> int:
        if self.left < 1:
            raise MalformedPacket("packet ends early")
        self.at += 1
        return self.body[self.at - 1]

    def uint16(self) -> int:
        if self.left < 2:
            raise MalformedPacket("packet ends early")
        value: int = struct.unpack_from("!H", self.body, self.at)[0]
        self.at += 2
        return value

    def binary(self) -> bytes:
        size = self.uint16()
        if self.left < size:
            raise MalformedPacket("a field runs past the end of the packet")
        self.at += size
        return self.body[self.at - size : self.at]

    def text(self, what: str) -> str:
        return decode_text(self.binary(), what)

    def rest(self) -> bytes:
        data = self.body[self.at :]
        self.at = len(self.body)
        return data


def decode_text(raw: bytes, what: str) -> str:
    """A UTF-8 string field, refused when invalid or holding U+0000 (MQTT-1.5.3-1/2)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what} is not valid UTF-8") from None
    if "\x00" in text:
        raise MalformedPacket(f"{what} contains U+0000")
    return text


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(slots=True)
class Connect:
    """A decoded CONNECT; `level` 0 means a protocol name this server does not speak."""

    level: int
    clean: bool
    keep_alive: int
    client_id: str
    will: Will | None
    username: str | None
    password: bytes | None


def decode_connect(body: bytes) -> Connect:
    """A CONNECT body; a known protocol name at an unknown level comes back as level 0."""
    cursor = _Cursor(body)
    name = cursor.text("protocol name")
    level = cursor.byte()
    if name not in _PROTOCOLS:
        raise MalformedPacket(f"protocol name {name!r} is not MQTT")
    flags = cursor.byte()
    keep_alive = cursor.uint16()
    if level != _PROTOCOLS[name]:
        return Connect(0, True, keep_alive, "", None, None, None)
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag set")
    client_id = cursor.text("client id")
    will = _decode_will(cursor, flags)
    username = cursor.text("username") if flags & 0x80 else None
    if flags & 0x40 and level == 4 and username is None:
        raise MalformedPacket("password without a username")
    password = cursor.binary() if flags & 0x40 else None
    return Connect(level, bool(flags & 0x02), keep_alive, client_id, will, username, password)


def _decode_will(cursor: _Cursor, flags: int) -> Will | None:
    qos, retain = (flags >> 3) & 0x03, bool(flags & 0x20)
    if not flags & 0x04:
        if qos or retain:
            raise MalformedPacket("will QoS or retain set without a will")
        return None
    if qos == 3:
        raise MalformedPacket("will QoS 3")
    topic = cursor.text("will topic")
    _check_topic(topic)
    return Will(topic, cursor.binary(), qos, retain)


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


def decode_publish(frame: Frame) -> Publish:
    """A PUBLISH: QoS 3, a bad topic or a missing packet id are malformed."""
    qos = (frame.flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    dup = bool(frame.flags & 0x08)
    if dup and qos == 0:
        raise MalformedPacket("PUBLISH with QoS 0 and DUP set")
    cursor = _Cursor(frame.body)
    topic = cursor.text("topic")
    _check_topic(topic)
    packet_id = _nonzero(cursor.uint16()) if qos else None
    return Publish(topic, cursor.rest(), qos, bool(frame.flags & 0x01), dup, packet_id)


def _check_topic(topic: str) -> None:
    if not topic:
        raise MalformedPacket("empty topic")
    if "+" in topic or "#" in topic:
        raise MalformedPacket(f"wildcard in topic {topic!r}")


def _nonzero(packet_id: int) -> int:
    if packet_id == 0:
        raise MalformedPacket("packet id 0")
    return packet_id


def decode_packet_id(frame: Frame) -> int:
    """The packet id of a PUBACK, PUBREC, PUBREL or PUBCOMP."""
    if len(frame.body) != 2:
        raise MalformedPacket(f"packet type {frame.kind} must hold a packet id only")
    return _nonzero(struct.unpack("!H", frame.body)[0])


def validate_filter(topic_filter: str) -> None:
    """Refuse a filter with misplaced wildcards (MQTT-4.7.1-2/3)."""
    if not topic_filter:
        raise MalformedPacket("empty topic filter")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise MalformedPacket(f"misplaced '#' in filter {topic_filter!r}")
        if "+" in level and level != "+":
            raise MalformedPacket(f"misplaced '+' in filter {topic_filter!r}")


def decode_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]]]:
    """A SUBSCRIBE's packet id and (filter, requested QoS) pairs."""
    cursor = _Cursor(body)
    packet_id = _nonzero(cursor.uint16())
    topics: list[tuple[str, int]] = []
    while cursor.left:
        topic_filter = cursor.text("topic filter")
        validate_filter(topic_filter)
        options = cursor.byte()
        if options > 2:
            raise MalformedPacket(f"SUBSCRIBE options byte {options:#x}")
        topics.append((topic_filter, options))
    if not topics:
        raise MalformedPacket("SUBSCRIBE without a topic filter")
    return packet_id, topics


def decode_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    """An UNSUBSCRIBE's packet id and filters."""
    cursor = _Cursor(body)
    packet_id = _nonzero(cursor.uint16())
    filters = []
    while cursor.left:
        topic_filter = cursor.text("topic filter")
        validate_filter(topic_filter)
        filters.append(topic_filter)
    if not filters:
        raise MalformedPacket("UNSUBSCRIBE without a topic filter")
    return packet_id, filters


# --- encoding -------------------------------------------------------------------------------


def _length(size: int) -> bytes:
    out = bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out)


def connack(session_present: bool, code: int) -> bytes:
    return bytes((0x20, 2, int(session_present), code))


def ack(kind: int, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL (flags 2) or PUBCOMP for one packet id."""
    return struct.pack("!BBH", (kind << 4) | _FLAGS.get(kind, 0), 2, packet_id)


def suback(packet_id: int, codes: list[int]) -> bytes:
    return b"\x90" + _length(2 + len(codes)) + struct.pack("!H", packet_id) + bytes(codes)


def unsuback(packet_id: int) -> bytes:
    return struct.pack("!BBH", 0xB0, 2, packet_id)


def encode_publish(
    topic: bytes, payload: bytes, qos: int, retain: bool, dup: bool, packet_id: int | None
) -> bytes:
    """A PUBLISH; `topic` is already UTF-8."""
    header = 0x30 | (0x08 if dup else 0) | (qos << 1) | int(retain)
    variable = struct.pack("!H", len(topic)) + topic
    if qos:
        assert packet_id is not None
        variable += struct.pack("!H", packet_id)
    return bytes((header,)) + _length(len(variable) + len(payload)) + variable + payload
