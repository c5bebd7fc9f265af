"""What an idle device costs the embedded broker, and that the cheaper state still behaves.

An idle connection holds no task, no timer of its own and no empty queue: its CONNECT timeout
and keep-alive wait on the adapter's one `Deadlines` timer, and its packet task starts again
when bytes come. These tests check that state, and that deadlines still fire (never early),
keep-alives still cut a silent client off, and an idle client's next packets are handled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from protocol_adapters.mqtt.embedded_deadlines import Deadlines
from protocol_adapters.mqtt.embedded_topics import SubscriptionTree
from tests.mqtt.embedded_support import Recorder, running_broker
from tests.mqtt.raw_mqtt import Clients, RawClient

RESOLUTION = 0.05


class Item:
    """A `Deadlines` item that records when it was checked and answers from a script."""

    def __init__(self, *following: float | None) -> None:
        self.deadline_slot: int | None = None
        self.checked: list[float] = []
        self.following = list(following)

    def expired(self, now: float) -> float | None:
        self.checked.append(now)
        return self.following.pop(0) if self.following else None


async def wait_checked(item: Item, times: int = 1) -> None:
    async with asyncio.timeout(5.0):
        while len(item.checked) < times:
            await asyncio.sleep(RESOLUTION / 2)


async def test_a_deadline_fires_once_and_never_early() -> None:
    deadlines = Deadlines(RESOLUTION)
    loop = asyncio.get_running_loop()
    items = {Item(): loop.time() + delay for delay in (0.01, 0.12, 0.3)}
    for item, when in items.items():
        deadlines.add(item, when)
    assert len(deadlines) == 3
    for item, when in items.items():
        await wait_checked(item)
        assert item.checked[0] >= when
    await asyncio.sleep(3 * RESOLUTION)
    assert [len(item.checked) for item in items] == [1, 1, 1]
    assert len(deadlines) == 0


async def test_an_item_gets_the_deadline_it_returns_and_a_discarded_one_none() -> None:
    deadlines = Deadlines(RESOLUTION)
    now = asyncio.get_running_loop().time()
    again = Item(now + 0.2)
    dropped = Item()
    deadlines.add(again, now + 0.05)
    deadlines.add(dropped, now + 0.1)
    deadlines.discard(dropped)
    await wait_checked(again, 2)
    assert again.checked[1] >= now + 0.2
    assert dropped.checked == []
    assert again.deadline_slot is None
    assert len(deadlines) == 0


async def test_an_earlier_deadline_added_later_is_not_held_up_by_a_later_one() -> None:
    deadlines = Deadlines(RESOLUTION)
    now = asyncio.get_running_loop().time()
    late, early = Item(), Item()
    deadlines.add(late, now + 30.0)
    deadlines.add(early, now + 0.05)
    await wait_checked(early)
    assert late.checked == []
    deadlines.close()
    assert late.deadline_slot is None
    assert len(deadlines) == 0


def test_the_subscription_tree_shares_no_filled_container() -> None:
    # Nodes without children or subscribers share one empty dict: it must stay empty.
    tree = SubscriptionTree()
    tree.add("devices/a/commands", "a", 1)
    tree.add("devices/b/commands", "b", 0)
    tree.add("devices/a", "c", 1)
    tree.remove("devices/a/commands", "a")
    tree.remove("devices/x/commands", "x")
    assert tree.match("devices/a/commands") == {}
    assert tree.match("devices/b/commands") == {"b": 0}
    assert tree.match("devices/a") == {"c": 1}
    assert tree.match("devices/b") == {}


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    pool = Clients()
    yield pool
    await pool.aclose()


async def device(clients: Clients, port: int, client_id: str, keep_alive: int) -> RawClient:
    """A device that connected, subscribed to its commands and went idle."""
    client = await clients.open(port)
    assert (await client.connect(client_id, keep_alive=keep_alive)).return_code == 0
    assert await client.subscribe((f"devices/{client_id}/commands", 1)) == [1]
    return client


@pytest.mark.integration
async def test_idle_devices_hold_no_task_and_one_deadline_each(clients: Clients) -> None:
    app = Recorder()
    async with running_broker(app, AUTH="anonymous", SUBSCRIPTIONS=["devices/+/telemetry"]) as run:
        devices = [await device(clients, run.port, f"dev-{n}", 60) for n in range(5)]
        await asyncio.sleep(0.1)  # the last SUBACK's task ends once its bytes are handled
        connections = list(run.adapter.connections.values())
        assert len(connections) == 5
        assert [c.task for c in connections] == [None] * 5
        assert len(run.adapter.deadlines) == 5
        assert all(c.session is not None and c.session._queue is None for c in connections)
        await devices[2].publish("devices/dev-2/telemetry", b"after idling", qos=1)
        scope, payload = await app.next()
        assert (scope["client_id"], payload) == ("dev-2", b"after idling")
        await run.adapter.publish({"type": "mqtt.publish", "topic": "devices/dev-4/commands",
                                   "payload": b"reboot", "qos": 1})  # fmt: skip
        message = await devices[4].message()
        assert (message.topic, message.payload) == ("devices/dev-4/commands", b"reboot")


@pytest.mark.integration
async def test_the_shared_timer_cuts_off_only_the_silent_client(clients: Clients) -> None:
    async with running_broker(Recorder(), AUTH="anonymous") as run:
        silent = await device(clients, run.port, "silent", 1)
        talking = await device(clients, run.port, "talking", 1)
        forever = await device(clients, run.port, "forever", 0)
        for _ in range(8):  # 3.2 s: more than twice the 1.5 s a silent client is allowed
            await asyncio.sleep(0.4)
            await talking.ping()
        assert await silent.closed(timeout=5.0)
        await forever.ping()
        assert len(run.adapter.deadlines) == 1  # talking's; keep-alive 0 has no deadline


class Dropping(Item):
    """An item whose check discards another item of the same slot."""

    def __init__(self, deadlines: Deadlines, other: Item, log: list[Item]) -> None:
        super().__init__()
        self.deadlines, self.other, self.log = deadlines, other, log

    def expired(self, now: float) -> float | None:
        self.log.append(self)
        self.deadlines.discard(self.other)
        return super().expired(now)


class Logged(Item):
    def __init__(self, log: list[Item]) -> None:
        super().__init__()
        self.log = log

    def expired(self, now: float) -> float | None:
        self.log.append(self)
        return super().expired(now)


async def test_an_item_discarded_by_one_checked_before_it_is_not_checked() -> None:
    deadlines, log = Deadlines(RESOLUTION), []
    now = asyncio.get_running_loop().time()
    others = [Logged(log) for _ in range(20)]
    droppers = [Dropping(deadlines, other, log) for other in others]
    for item in [*droppers, *others]:
        deadlines.add(item, now + 0.01)  # all in one slot, checked in no set order
    await wait_checked(droppers[-1])
    await asyncio.sleep(3 * RESOLUTION)
    for dropper, other in zip(droppers, others, strict=True):
        assert dropper.checked != []
        if log.index(dropper) < (log.index(other) if other in log else len(log)):
            assert other.checked == []  # discarded before its turn
    assert len(log) == len(set(map(id, log)))
