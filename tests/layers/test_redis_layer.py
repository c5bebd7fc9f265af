"""What is particular to the Redis layer: CONFIG, inbox capacity, capacities inside scripts."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
from django.test import override_settings

from gateway.exceptions import ChannelFull, ImproperlyConfiguredGateway
from gateway.layers import get_channel_layer
from gateway.layers.redis import RedisChannelLayer
from gateway.layers.redis.config import HostSpec, glob_to_lua, parse_hosts
from gateway.layers.redis.wire import _Reader, pack
from tests.integration.redis import RedisServer

from .conftest import redis_layer_config
from .helpers import WAIT, nothing_waiting, receive


def test_hosts_in_every_channels_format() -> None:
    hosts = parse_hosts(
        [
            "redis://:secret@10.0.0.1:6380/2",
            ("10.0.0.2", 6381),
            {"address": "rediss://cache:6379", "password": "x"},
            {"address": ("10.0.0.3", 6382), "db": 1},
            {"host": "10.0.0.4", "port": 6383},
        ]
    )
    assert hosts == [
        HostSpec(url="redis://:secret@10.0.0.1:6380/2"),
        HostSpec(kwargs={"host": "10.0.0.2", "port": 6381}),
        HostSpec(url="rediss://cache:6379", kwargs={"password": "x"}),
        HostSpec(kwargs={"host": "10.0.0.3", "port": 6382, "db": 1}),
        HostSpec(kwargs={"host": "10.0.0.4", "port": 6383}),
    ]
    assert parse_hosts(None) == [HostSpec(kwargs={"host": "localhost", "port": 6379})]
    (sentinel,) = parse_hosts(
        [{"sentinels": [("s1", "26379")], "master_name": "main", "password": "p"}]
    )
    assert sentinel == HostSpec(
        kwargs={"password": "p"}, sentinels=(("s1", 26379),), master_name="main"
    )
    assert sentinel.label == "sentinel:main"


@pytest.mark.parametrize("hosts", ["redis://one:6379", [], [42]], ids=repr)
def test_bad_hosts_are_refused(hosts: object) -> None:
    with pytest.raises(ImproperlyConfiguredGateway, match="host"):
        parse_hosts(hosts)  # type: ignore[arg-type]


def test_channels_redis_backends_are_aliases_of_ours() -> None:
    for backend in (
        "channels_redis.core.RedisChannelLayer",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
    ):
        layers = {"default": {"BACKEND": backend, "CONFIG": {"hosts": [("127.0.0.1", 1)]}}}
        with override_settings(CHANNEL_LAYERS=layers):
            assert isinstance(get_channel_layer(), RedisChannelLayer)


@pytest.mark.parametrize(
    ("glob", "lua"),
    [
        ("http.response!*", "^http%.response!.*$"),
        ("tiny-?", "^tiny%-.$"),
        ("[ab]*", "^[ab].*$"),
        ("[!x]y", "^[^x]y$"),
    ],
)
def test_globs_become_lua_patterns(glob: str, lua: str) -> None:
    assert glob_to_lua(glob) == lua


def test_the_fallback_reply_parser_reads_every_reply_kind() -> None:
    reader = _Reader()
    reader.feed(b"+OK\r\n:42\r\n$3\r\nab")
    assert reader.gets() == b"OK"
    assert reader.gets() == 42
    assert reader.gets() is False  # the bulk string is not complete yet
    reader.feed(b"c\r\n*3\r\n$-1\r\n*1\r\n:1\r\n-ERR bad\r\n")
    assert reader.gets() == b"abc"
    nil, inner, error = reader.gets()
    assert (nil, inner, str(error)) == (None, [1], "ERR bad")
    assert pack(("SET", b"k", 1)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"


@pytest.mark.integration
async def test_a_specific_channel_whose_receiver_lags_refuses_sends(
    redis_server: RedisServer,
) -> None:
    layer = RedisChannelLayer(**redis_layer_config(redis_server.url, capacity=2))
    sender = RedisChannelLayer(**redis_layer_config(redis_server.url, prefix=layer.prefix))
    try:
        channel = await layer.new_channel()
        await sender.send(channel, {"type": "test.message", "n": -1})
        assert (await receive(layer, channel))["n"] == -1  # the inbox is being popped now
        accepted = 0
        async with asyncio.timeout(WAIT):
            while True:  # the receiving process reports the full buffer: sends stop
                try:
                    await sender.send(channel, {"type": "test.message", "n": accepted})
                except ChannelFull:
                    break
                accepted += 1
                await asyncio.sleep(0.01)
        assert accepted >= 2
        assert [(await receive(layer, channel))["n"] for _ in range(2)] == [0, 1]
        async with asyncio.timeout(WAIT):
            while True:  # drained: accepted again
                try:
                    await sender.send(channel, {"type": "test.message", "n": 99})
                    break
                except ChannelFull:
                    await asyncio.sleep(0.01)
        async with asyncio.timeout(WAIT):
            while (await layer.receive(channel))["n"] != 99:
                pass
    finally:
        await layer.flush()
        for each in (layer, sender):
            await each.close()


@pytest.mark.integration
async def test_a_receive_on_a_new_channel_wakes_every_queued_pop(
    redis_server: RedisServer,
) -> None:
    # The receive task keeps several blocking pops queued on its connection, each watching one
    # wake-up list besides the lists to pop. A receive on a list none of them watches wakes
    # them all; otherwise the new channel's messages would wait for the stale pops to time
    # out (block_seconds, a minute here), and the ones queued behind them.
    layer = RedisChannelLayer(**redis_layer_config(redis_server.url, block_seconds=60))
    try:
        first = asyncio.create_task(layer.receive("woken-first"))
        await asyncio.sleep(0.2)  # its pops are blocking in Redis
        async with asyncio.timeout(WAIT):  # well under block_seconds
            for n in range(20):  # more than the pops queued at any time
                await layer.send("woken-second", {"type": "test.message", "n": n})
                assert (await layer.receive("woken-second"))["n"] == n
            await layer.send("woken-first", {"type": "test.message", "n": -1})
            assert (await first)["n"] == -1
    finally:
        await layer.flush()
        await layer.close()


@pytest.mark.integration
@pytest.mark.parametrize("specific", [False, True], ids=["normal", "specific"])
async def test_a_full_list_whose_oldest_entries_expired_takes_new_ones(
    redis_server: RedisServer, specific: bool
) -> None:
    # SEND pushes first and takes the entry back when the list was full, unless dropping the
    # expired entries at its head made room. A normal channel's list is bounded by capacity,
    # a process's inbox (nobody popping it here) by inbox_capacity.
    config = {"capacity": 2, "inbox_capacity": 2, "expiry": 1}
    layer = RedisChannelLayer(**redis_layer_config(redis_server.url, **config))
    receiver = RedisChannelLayer(**redis_layer_config(redis_server.url, prefix=layer.prefix))
    try:
        channel = receiver.new_channel_name() if specific else "bounded-expiring"
        for n in range(2):
            await layer.send(channel, {"type": "test.message", "n": n})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "test.message", "n": 2})
        await asyncio.sleep(1.5)  # both expired: the next send drops them and is accepted
        await layer.send(channel, {"type": "test.message", "n": 3})
        await layer.send(channel, {"type": "test.message", "n": 4})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "test.message", "n": 5})
        assert [(await receive(receiver, channel))["n"] for _ in range(2)] == [3, 4]
        assert await nothing_waiting(receiver, channel)
    finally:
        await layer.flush()
        for each in (layer, receiver):
            await each.close()


@pytest.mark.integration
@pytest.mark.parametrize("pattern", ["tiny-*", re.compile(r"^tiny-")], ids=["glob", "regex"])
async def test_group_send_applies_channel_capacity_patterns(
    redis_server: RedisServer, pattern: object
) -> None:
    layer = RedisChannelLayer(
        **redis_layer_config(redis_server.url, channel_capacity={pattern: 1}, capacity=3)
    )
    try:
        for member in ("tiny-one", "roomy"):
            await layer.group_add("room", member)
        for n in range(3):
            await layer.group_send("room", {"type": "test.message", "n": n})
        assert (await receive(layer, "tiny-one"))["n"] == 0
        assert await nothing_waiting(layer, "tiny-one")
        assert [(await receive(layer, "roomy"))["n"] for _ in range(3)] == [0, 1, 2]
    finally:
        await layer.flush()
        await layer.close()


@pytest.mark.integration
def test_one_layer_serves_successive_and_concurrent_event_loops(
    redis_server: RedisServer,
) -> None:
    """Each loop gets its own connections, also while another loop runs in another thread."""
    layer = RedisChannelLayer(**redis_layer_config(redis_server.url))

    async def exchange(n: int) -> int:
        channel = await layer.new_channel()
        task = asyncio.create_task(layer.receive(channel))
        await asyncio.sleep(0.01)
        await layer.send(channel, {"type": "t", "n": n})
        message = await asyncio.wait_for(task, WAIT)
        await layer.close()
        return int(message["n"])

    assert [asyncio.run(exchange(n)) for n in range(3)] == [0, 1, 2]

    async def main_loop() -> list[int]:
        results: list[int] = []
        thread = threading.Thread(target=lambda: results.append(asyncio.run(exchange(10))))
        thread.start()
        results.append(await exchange(20))  # this loop's exchange, while the other one runs
        await asyncio.to_thread(thread.join, WAIT)
        return sorted(results)

    assert asyncio.run(main_loop()) == [10, 20]
    assert asyncio.run(exchange(30)) == 30


def test_a_loop_in_another_thread_does_not_take_this_loops_messages(
    redis_server: RedisServer,
) -> None:
    """Each loop pops its own inbox: a thread's loop already waiting (as under async_to_sync)
    must not pop a message sent to a channel of the main loop before that one receives."""
    layer = RedisChannelLayer(**redis_layer_config(redis_server.url))
    waiting, stop = threading.Event(), threading.Event()

    async def other_loop() -> None:
        channel = await layer.new_channel()
        task = asyncio.create_task(layer.receive(channel))
        await asyncio.sleep(0.2)  # its blocking pop is on its way to Redis
        waiting.set()
        await asyncio.to_thread(stop.wait, WAIT)
        task.cancel()
        await layer.close()

    thread = threading.Thread(target=lambda: asyncio.run(other_loop()))
    thread.start()

    async def main() -> dict[str, object]:
        assert await asyncio.to_thread(waiting.wait, WAIT)
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "t", "for": "main"})
        await asyncio.sleep(0.2)  # time enough for the other loop's pop to take it
        try:
            return await receive(layer, channel)
        finally:
            await layer.flush()
            await layer.close()

    try:
        assert asyncio.run(main()) == {"type": "t", "for": "main"}
    finally:
        stop.set()
        thread.join(WAIT)
