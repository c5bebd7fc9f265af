"""MQTT 3.1.1 by hand: packets built byte by byte, and a raw client that sends what a test asks.

A real client library refuses to send what the tests need (a QoS 3 PUBLISH, a second CONNECT,
invalid UTF-8, a wrong protocol name, a PUBLISH before CONNECT, half a packet, a PUBLISH never
acknowledged) and hides what they check (the CONNACK return code, the session-present flag,
the DUP flag, the moment the broker closes the socket). Text fields may be given as bytes, so
that a test can put invalid UTF-8 where the broker expects text. "The broker closed the
connection" means that reading returns EOF or the connection is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Protocol, TypeAlias, TypedDict, Unpack

WAIT: Final = 20.0  # only turns a hang into a failure (CI machines are shared and noisy)

Text: TypeAlias = str | bytes


class PacketType(IntEnum):
    """The control packet types of the fixed header's high nibble."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


# --- encoding ------------------------------------------------------------------------------


def encode_length(length: int) -> bytes:
    """MQTT's variable-length "remaining length": 7 bits a byte, high bit = more follows."""
    out = bytearray()
    while True:
        length, byte = divmod(length, 128)
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def text_field(value: Text) -> bytes:
    """A string field: its length in two bytes, then its bytes (UTF-8 for a str)."""
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(2, "big") + data


def packet(first_byte: int, body: bytes = b"") -> bytes:
    """A packet: its first byte (type << 4 | flags, any value), the remaining length, the body."""
    return bytes([first_byte]) + encode_length(len(body)) + body


@dataclass(frozen=True)
class Will:
    """The will a CONNECT carries; `qos` goes into the flags as given, even 3."""

    topic: Text
    payload: bytes
    qos: int = 0
    retain: bool = False


def connect(
    client_id: Text = "",
    *,
    username: Text | None = None,
    password: Text | None = None,
    clean: bool = True,
    keep_alive: int = 60,
    will: Will | None = None,
    protocol: Text = "MQTT",
    level: int = 4,
) -> bytes:
    """A CONNECT; `protocol` and `level` may be wrong on purpose."""
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    flags |= 0x02 if clean else 0
    payload = text_field(client_id)
    if will is not None:
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        payload += text_field(will.topic) + text_field(will.payload)
    payload += b"".join(text_field(value) for value in (username, password) if value is not None)
    header = text_field(protocol) + bytes([level, flags]) + keep_alive.to_bytes(2, "big")
    return packet(PacketType.CONNECT << 4, header + payload)


class ConnectOptions(TypedDict, total=False):
    """What a CONNECT carries besides the client id (defaults as for `connect`)."""

    username: Text | None
    password: Text | None
    clean: bool
    keep_alive: int
    will: Will | None
    protocol: Text
    level: int


def publish(
    topic: Text,
    payload: bytes = b"",
    *,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int = 1,
) -> bytes:
    """A PUBLISH; `qos` goes into the header as given, so 3 makes a malformed one."""
    flags = (0x08 if dup else 0) | qos << 1 | (0x01 if retain else 0)
    body = text_field(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return packet(PacketType.PUBLISH << 4 | flags, body)


def subscribe(packet_id: int, filters: Sequence[tuple[Text, int]]) -> bytes:
    """A SUBSCRIBE of (topic filter, requested QoS) pairs."""
    body = b"".join(text_field(topic_filter) + bytes([qos]) for topic_filter, qos in filters)
    return packet(PacketType.SUBSCRIBE << 4 | 0x02, packet_id.to_bytes(2, "big") + body)


def unsubscribe(packet_id: int, filters: Sequence[Text]) -> bytes:
    """An UNSUBSCRIBE of topic filters."""
    body = b"".join(text_field(topic_filter) for topic_filter in filters)
    return packet(PacketType.UNSUBSCRIBE << 4 | 0x02, packet_id.to_bytes(2, "big") + body)


def puback(packet_id: int) -> bytes:
    """A PUBACK: QoS 1 delivery received."""
    return packet(PacketType.PUBACK << 4, packet_id.to_bytes(2, "big"))


def pubrec(packet_id: int) -> bytes:
    """A PUBREC: QoS 2 delivery received (part 1)."""
    return packet(PacketType.PUBREC << 4, packet_id.to_bytes(2, "big"))


def pubrel(packet_id: int) -> bytes:
    """A PUBREL: QoS 2 delivery released (part 2)."""
    return packet(PacketType.PUBREL << 4 | 0x02, packet_id.to_bytes(2, "big"))


def pubcomp(packet_id: int) -> bytes:
    """A PUBCOMP: QoS 2 delivery complete (part 3)."""
    return packet(PacketType.PUBCOMP << 4, packet_id.to_bytes(2, "big"))


def pingreq() -> bytes:
    """A PINGREQ."""
    return packet(PacketType.PINGREQ << 4)


def disconnect() -> bytes:
    """A DISCONNECT."""
    return packet(PacketType.DISCONNECT << 4)


# --- decoding ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    """One packet as read: its type, the fixed header's flags and the rest."""

    type: PacketType
    flags: int
    body: bytes

    @property
    def packet_id(self) -> int:
        """The packet identifier of an acknowledgement (PUBACK ... UNSUBACK)."""
        return int.from_bytes(self.body[:2], "big")


@dataclass(frozen=True)
class Connack:
    """A CONNACK: the session-present flag and the return code (0 accepted)."""

    session_present: bool
    return_code: int


@dataclass(frozen=True)
class Publish:
    """A PUBLISH as the broker sent it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None

    @classmethod
    def parse(cls, packet: Packet) -> Publish:
        """The PUBLISH that `packet` (of type PUBLISH) carries."""
        assert packet.type == PacketType.PUBLISH, packet
        qos, retain, dup = packet.flags >> 1 & 0x03, packet.flags & 0x01, packet.flags & 0x08
        size = int.from_bytes(packet.body[:2], "big")
        topic, rest = packet.body[2 : 2 + size].decode(), packet.body[2 + size :]
        packet_id = int.from_bytes(rest[:2], "big") if qos else None
        return cls(topic, rest[2:] if qos else rest, qos, bool(retain), bool(dup), packet_id)


async def _read_packet(reader: asyncio.StreamReader) -> Packet:
    first = (await reader.readexactly(1))[0]
    length = 0
    for shift in range(0, 28, 7):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            body = await reader.readexactly(length)
            return Packet(PacketType(first >> 4), first & 0x0F, body)
    raise ValueError("the broker sent a remaining length of more than 4 bytes")


# --- the client ----------------------------------------------------------------------------


class ConnectionClosed(ConnectionError):
    """The broker closed the connection (EOF) or reset it."""


class RawClient:
    """One TCP connection to a broker, speaking MQTT only as far as the test tells it to.

    A `strict` client wants every packet it reads to be the one it waits for. Otherwise a
    delivery that comes meanwhile (a PUBLISH, a PUBREL) is acknowledged, and kept for `message`.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, strict: bool = True
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.strict = strict
        self.connack: Connack | None = None
        self.inbox: deque[Publish] = deque()

    @classmethod
    async def open(
        cls,
        port: int,
        host: str = "127.0.0.1",
        *,
        local_host: str | None = None,
        strict: bool = True,
    ) -> RawClient:
        """Open a TCP connection (from `local_host`, another loopback address, if given)."""
        local = (local_host, 0) if local_host is not None else None
        opening = asyncio.open_connection(host, port, local_addr=local)
        reader, writer = await asyncio.wait_for(opening, WAIT)
        return cls(reader, writer, strict=strict)

    async def send(self, *packets: bytes) -> None:
        """Send these bytes as they are."""
        self.writer.write(b"".join(packets))
        await self.writer.drain()

    async def read(self, timeout: float = WAIT) -> Packet:
        """The next packet; ConnectionClosed if the broker closes the connection first."""
        try:
            async with asyncio.timeout(timeout):
                return await _read_packet(self.reader)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ConnectionClosed from exc

    async def expect(self, kind: PacketType, timeout: float = WAIT) -> Packet:
        """The next packet, which must be of `kind` (deliveries first, unless `strict`)."""
        while True:
            received = await self.read(timeout)
            if received.type == kind:
                return received
            if self.strict or received.type not in (PacketType.PUBLISH, PacketType.PUBREL):
                raise AssertionError(f"expected {kind.name}, got {received}")
            await self._take(received)

    async def connect(self, client_id: Text = "", **options: Unpack[ConnectOptions]) -> Connack:
        """Send a CONNECT (see `connect`) and return the CONNACK, also kept in `connack`."""
        await self.send(connect(client_id, **options))
        body = (await self.expect(PacketType.CONNACK)).body
        self.connack = Connack(bool(body[0] & 0x01), body[1])
        return self.connack

    async def subscribe(self, *filters: tuple[Text, int], packet_id: int = 1) -> list[int]:
        """SUBSCRIBE to (filter, QoS) pairs; the SUBACK's return codes (0x80 = refused)."""
        await self.send(subscribe(packet_id, filters))
        suback = await self.expect(PacketType.SUBACK)
        assert suback.packet_id == packet_id, suback
        return list(suback.body[2:])

    async def publish(
        self, topic: Text, payload: bytes, *, qos: int = 0, retain: bool = False, packet_id: int = 1
    ) -> None:
        """PUBLISH and finish its QoS flow; at QoS 0 a PINGREQ round trip shows it was read."""
        await self.send(publish(topic, payload, qos=qos, retain=retain, packet_id=packet_id))
        if qos == 0:
            await self.ping()
        elif qos == 1:
            assert (await self.expect(PacketType.PUBACK)).packet_id == packet_id
        else:
            assert (await self.expect(PacketType.PUBREC)).packet_id == packet_id
            await self.send(pubrel(packet_id))
            assert (await self.expect(PacketType.PUBCOMP)).packet_id == packet_id

    async def ping(self) -> None:
        """PINGREQ, and wait for the PINGRESP."""
        await self.send(pingreq())
        await self.expect(PacketType.PINGRESP)

    async def message(self, timeout: float = WAIT) -> Publish:
        """The next message delivered, acknowledged as its QoS asks (a PUBREL gets its PUBCOMP)."""
        while not self.inbox:
            await self._take(await self.read(timeout))
        return self.inbox.popleft()

    async def messages_within(self, seconds: float) -> list[Publish]:
        """Every message until none comes for `seconds` (to show that nothing more came)."""
        with contextlib.suppress(TimeoutError):
            while True:
                await self._take(await self.read(seconds))
        messages = list(self.inbox)
        self.inbox.clear()
        return messages

    async def read_until_closed(self, timeout: float = WAIT) -> list[Packet]:
        """What the broker sends before it closes the connection (TimeoutError if it does not)."""
        packets = []
        while True:
            try:
                packets.append(await self.read(timeout))
            except ConnectionClosed:
                return packets

    async def closed(self, timeout: float = WAIT) -> bool:
        """Whether the broker closes the connection within `timeout` (what it sends is dropped)."""
        try:
            async with asyncio.timeout(timeout):
                await self.read_until_closed(timeout)
        except TimeoutError:
            return False
        return True

    async def disconnect(self) -> None:
        """A clean DISCONNECT; return once the broker closed the connection, as it must."""
        await self.send(disconnect())
        assert await self.closed(), "the broker kept the connection open after DISCONNECT"
        await self.close()

    async def close(self) -> None:
        """Close our end without a DISCONNECT (what the broker sees as the network failing)."""
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)

    def abort(self) -> None:
        """Drop the connection without a DISCONNECT (a TCP reset)."""
        self.writer.transport.abort()

    async def _take(self, received: Packet) -> None:
        """Play our part in a delivery: acknowledge a PUBLISH and keep it, complete a PUBREL."""
        if received.type == PacketType.PUBREL:
            await self.send(pubcomp(received.packet_id))
            return
        message = Publish.parse(received)
        if message.packet_id is not None:
            await self.send((puback if message.qos == 1 else pubrec)(message.packet_id))
        self.inbox.append(message)


# --- opening and closing -------------------------------------------------------------------


class Address(Protocol):
    """Where a broker listens."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


@asynccontextmanager
async def raw_connection(broker: Address) -> AsyncIterator[RawClient]:
    """A strict client's TCP connection, nothing sent yet; closed afterwards."""
    client = await RawClient.open(broker.port, broker.host)
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def raw_session(
    broker: Address, client_id: Text, **options: Unpack[ConnectOptions]
) -> AsyncIterator[RawClient]:
    """A connection whose CONNECT the broker accepted; `client.connack` tells the rest."""
    async with raw_connection(broker) as client:
        connack = await client.connect(client_id, **options)
        assert connack.return_code == 0, connack
        yield client


class Clients:
    """The raw clients one test opens; `aclose` closes those still open."""

    def __init__(self, *, strict: bool = True) -> None:
        self.strict = strict
        self.opened: list[RawClient] = []

    async def open(self, port: int, *, local_host: str | None = None) -> RawClient:
        """A client of 127.0.0.1:`port` (see `RawClient.open`), closed by `aclose`."""
        client = await RawClient.open(port, local_host=local_host, strict=self.strict)
        self.opened.append(client)
        return client

    async def aclose(self) -> None:
        """Close every client opened here."""
        for client in self.opened:
            await client.close()
