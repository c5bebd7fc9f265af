"""The embedded broker under garbage: random bytes and broken packets from fresh connections.

One broker serves the whole run. Hypothesis drives it from a worker thread, and each example
runs as a coroutine in the test's own event loop, next to the broker: it opens a connection,
sends its bytes (in pieces, as TCP may deliver them), lets the broker answer or hang up, and
closes or resets the connection. After every example a well-behaved client must still
publish through the broker to the application and to a real mosquitto_sub connected all
along. At the end the broker holds no connection more than before, and the process has not
grown by more than `MAX_RSS_GROWTH`. Shrinking is off: the broker's state carries over from
one example to the next, so the falsifying example is reported as found.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.mqtt.embedded_support import (
    MosquittoSub,
    Recorder,
    RunningBroker,
    mosquitto_sub,
    running_broker,
)
from tests.mqtt.raw_mqtt import (
    RawClient,
    Will,
    connect,
    disconnect,
    packet,
    pingreq,
    publish,
    subscribe,
)

pytestmark = pytest.mark.integration

EXAMPLES = 200
LINGER = 0.05  # how long an example waits for the broker to answer or hang up
ALIVE = 5.0  # the good client's round trip must take less than this
MAX_RSS_GROWTH = 50 * 1024 * 1024
CHECK = "fuzz/check"
GOOD_ID = "fuzz-good-7f3a"  # ids hypothesis will not come up with
WATCHER_ID = "fuzz-watcher-7f3a"

# --- what is thrown at the broker ------------------------------------------------------------

TOPICS = st.sampled_from(["a", "a/b", "fuzz/x", "devices/d/telemetry", "$SYS/x", "", "a//b"])
FILTERS = TOPICS | st.sampled_from(["#", "+", "a/+/b", "a/#", "#/a", "a+", "+/#"])
TEXT = st.text(max_size=24) | st.binary(max_size=24)

connects = st.builds(
    connect,
    client_id=TEXT,
    username=st.none() | TEXT,
    password=st.none() | TEXT,
    clean=st.booleans(),
    keep_alive=st.integers(0, 65535),
    will=st.none()
    | st.builds(Will, TOPICS | TEXT, st.binary(max_size=64), st.integers(0, 3), st.booleans()),
)
publishes = st.builds(
    publish,
    TOPICS | TEXT,
    st.binary(max_size=512),
    qos=st.integers(0, 3),
    packet_id=st.integers(0, 65535),
    retain=st.booleans(),
    dup=st.booleans(),
)
subscribes = st.builds(
    subscribe,
    st.integers(0, 65535),
    st.lists(st.tuples(FILTERS | TEXT, st.integers(0, 3)), max_size=4),
)
any_packets = st.builds(packet, st.integers(0, 255), st.binary(max_size=64))
packets = st.one_of(
    connects,
    publishes,
    subscribes,
    any_packets,
    st.sampled_from([pingreq(), disconnect()]),
)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """Valid bytes with a few bytes flipped, inserted or deleted, cut short or extended."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "extend"]))
        at = draw(st.integers(0, len(data)))
        if how == "flip" and data:
            data[min(at, len(data) - 1)] ^= draw(st.integers(1, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif how == "truncate":
            del data[at:]
        else:
            data += draw(st.binary(min_size=1, max_size=256))
    return bytes(data)


def joined(*parts: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(*parts).map(b"".join)


streams = st.one_of(
    st.binary(max_size=2048),  # noise
    mutated(packets),  # one broken packet on a fresh connection
    joined(connects, st.binary(max_size=1024)),  # a valid CONNECT, then noise
    joined(connects, st.lists(packets | mutated(packets), max_size=6).map(b"".join)),
    mutated(st.lists(packets, min_size=1, max_size=6).map(b"".join)),  # a broken session
)


@dataclass(frozen=True)
class Attack:
    """The bytes of one connection, where TCP cuts them, and how the connection ends."""

    data: bytes
    cuts: tuple[int, ...]
    reset: bool

    def chunks(self) -> list[bytes]:
        edges = [0, *sorted(c for c in self.cuts if 0 < c < len(self.data)), len(self.data)]
        return [self.data[a:b] for a, b in itertools.pairwise(edges)]


attacks = st.builds(
    Attack, streams, st.lists(st.integers(1, 2048), max_size=4).map(tuple), st.booleans()
)

# --- one example -----------------------------------------------------------------------------


async def throw(port: int, attack: Attack) -> None:
    """Send the attack over a fresh connection; let the broker react; hang up."""
    client = await RawClient.open(port)
    try:
        with contextlib.suppress(ConnectionError):  # the broker may hang up first
            for chunk in attack.chunks():
                await client.send(chunk)
                await asyncio.sleep(0.001)  # one read each, most of the time
        await client.closed(LINGER)
    finally:
        if attack.reset:
            client.abort()
        else:
            await client.close()


async def assert_alive(run: RunningBroker, app: Recorder, watcher: MosquittoSub, n: int) -> None:
    """A good client's QoS 1 PUBLISH reaches the application and the subscriber."""
    topic, payload = f"{CHECK}/{n}", f"alive-{n}"
    async with asyncio.timeout(ALIVE):
        client = await RawClient.open(run.port)
        try:
            assert (await client.connect(GOOD_ID)).return_code == 0
            await client.publish(topic, payload.encode(), qos=1)
            await client.disconnect()
        finally:
            await client.close()
        while (await app.next())[1] != payload.encode():
            pass
        while await watcher.message() != f"{topic} {payload}":
            pass


def vm_rss() -> int:
    """This process's resident set size, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def settled_connections(run: RunningBroker, baseline: int, seconds: float) -> int:
    """The broker's open connections, once back at `baseline` or after `seconds`."""
    deadline = time.monotonic() + seconds
    while len(run.adapter.connections) != baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return len(run.adapter.connections)


# --- the test --------------------------------------------------------------------------------


async def test_the_broker_survives_garbage_and_keeps_serving() -> None:
    app = Recorder()
    options = {"AUTH": "anonymous", "ACL": None, "SUBSCRIPTIONS": [f"{CHECK}/#"]}
    async with (
        running_broker(app, **options) as run,
        mosquitto_sub(run.port, "-i", WATCHER_ID, "-q", "1", "-t", f"{CHECK}/#") as watcher,
    ):
        loop = asyncio.get_running_loop()
        count = itertools.count(1)
        await assert_alive(run, app, watcher, 0)
        baseline, rss = len(run.adapter.connections), vm_rss()

        async def example(attack: Attack) -> None:
            await throw(run.port, attack)
            await assert_alive(run, app, watcher, next(count))

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(attacks)
        def fuzz(attack: Attack) -> None:
            asyncio.run_coroutine_threadsafe(example(attack), loop).result()

        await asyncio.to_thread(fuzz)

        assert await settled_connections(run, baseline, 10.0) == baseline
        grown = vm_rss() - rss
        assert grown < MAX_RSS_GROWTH, f"the process grew by {grown / 2**20:.1f} MiB"
