"""What only the in-memory layer promises: no leaks, any event loop, receivers on other threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.layers import InMemoryChannelLayer

from .helpers import receive, waiting_receive


async def test_idle_channels_are_dropped() -> None:
    layer = InMemoryChannelLayer()
    await layer.send("queued", {"type": "t"})
    await receive(layer, "queued")
    waiting = await waiting_receive(layer, "handed-off")
    await layer.send("handed-off", {"type": "t"})
    await waiting
    timed_out = asyncio.create_task(layer.receive("timed-out"))
    await asyncio.sleep(0.01)
    timed_out.cancel()
    with pytest.raises(asyncio.CancelledError):
        await timed_out
    assert layer._queues == {}
    assert layer._waiters == {}


async def test_cancel_after_hand_off_puts_the_message_back_first() -> None:
    layer = InMemoryChannelLayer()
    task = await waiting_receive(layer, "race")
    await layer.send("race", {"type": "t", "n": 1})
    await layer.send("race", {"type": "t", "n": 2})
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(await receive(layer, "race"))["n"] for _ in range(2)] == [1, 2]


async def test_expired_messages_nobody_receives_are_swept() -> None:
    layer = InMemoryChannelLayer(expiry=0.1, group_expiry=0.1)
    await layer.send("abandoned", {"type": "t"})
    await layer.group_add("room", "abandoned")
    await asyncio.sleep(0.2)
    await layer.send("other", {"type": "t"})  # any send may run the sweep
    assert set(layer._queues) == {"other"}
    assert layer._groups == {}


async def test_flush_keeps_waiting_receivers_waiting() -> None:
    layer = InMemoryChannelLayer()
    task = await waiting_receive(layer, "waiting")
    await layer.flush()
    await layer.send("waiting", {"type": "t"})
    assert await asyncio.wait_for(task, 10) == {"type": "t"}


def test_one_layer_serves_successive_event_loops() -> None:
    layer = InMemoryChannelLayer()

    async def exchange(n: int) -> int:
        task = asyncio.create_task(layer.receive("loops"))
        await asyncio.sleep(0.01)
        await layer.send("loops", {"type": "t", "n": n})
        message = await asyncio.wait_for(task, 10)
        return int(message["n"])

    assert [asyncio.run(exchange(n)) for n in range(3)] == [0, 1, 2]


def test_receiver_of_a_closed_loop_is_skipped() -> None:
    layer = InMemoryChannelLayer()
    loop = asyncio.new_event_loop()
    abandoned = loop.create_task(layer.receive("orphan"))
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()  # the receive never finishes: its loop is gone

    async def later() -> dict[str, object]:
        await layer.send("orphan", {"type": "t"})
        return await receive(layer, "orphan")

    assert asyncio.run(later()) == {"type": "t"}
    assert not abandoned.done()


async def test_send_from_another_thread_wakes_the_receiver() -> None:
    layer = InMemoryChannelLayer()
    task = await waiting_receive(layer, "threads")
    thread = threading.Thread(
        target=asyncio.run, args=(layer.send("threads", {"type": "t", "from": "thread"}),)
    )
    thread.start()
    message = await asyncio.wait_for(task, 10)
    thread.join(10)
    assert message == {"type": "t", "from": "thread"}


async def test_receive_into_a_future_of_the_receiver() -> None:
    layer = InMemoryChannelLayer()
    loop = asyncio.get_running_loop()
    await layer.send("c", {"type": "t", "n": 1})
    queued: asyncio.Future[dict[str, object]] = loop.create_future()
    layer.receive_into("c", queued)  # a queued message resolves it at once
    assert queued.result()["n"] == 1
    waiting: asyncio.Future[dict[str, object]] = loop.create_future()
    layer.receive_into("c", waiting)
    await layer.group_add("g", "c")
    await layer.group_send("g", {"type": "t", "n": 2})
    assert waiting.result()["n"] == 2
    assert layer._waiters == {}


async def test_a_receiver_future_resolved_by_its_owner_loses_no_message() -> None:
    layer = InMemoryChannelLayer()
    loop = asyncio.get_running_loop()
    rung: asyncio.Future[object] = loop.create_future()
    layer.receive_into("c", rung)
    rung.set_result(None)  # its owner was woken by something else first
    await layer.send("c", {"type": "t", "n": 1})  # skips the done future: queued
    layer.forget_receiver("c", rung)
    handed: asyncio.Future[object] = loop.create_future()
    layer.receive_into("c", handed)
    await layer.send("c", {"type": "t", "n": 2})
    assert handed.result() == {"type": "t", "n": 1}
    layer.forget_receiver("c", handed)  # handed over but never taken: put back first
    assert [(await receive(layer, "c"))["n"] for _ in range(2)] == [1, 2]
    assert layer._queues == {}
    assert layer._waiters == {}
