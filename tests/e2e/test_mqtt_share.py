"""Two `gateway run` processes on one `$share` group split the messages: each handled once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.mqtt.external_support import WAIT, read_events, start_gateway_process

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

MESSAGES = 40


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


async def publish_all(broker: Mosquitto) -> None:
    """One QoS 1 message per topic work/0..39, each from its own mosquitto_pub."""
    for n in range(MESSAGES):
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port),
            "-t", f"work/{n}", "-q", "1", "-m", f"m{n}",
        )  # fmt: skip
        assert await proc.wait() == 0


def test_two_processes_on_one_share_group_handle_each_message_once(
    broker: Mosquitto, tmp_path: Path
) -> None:
    events = tmp_path / "events.log"
    group = {"MQTT_TEST_SHARED_GROUP": "workers"}
    one = start_gateway_process(tmp_path / "one", broker, events, **group)
    try:
        two = start_gateway_process(tmp_path / "two", broker, events, **group)
        try:
            asyncio.run(publish_all(broker))
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                if sum(row[0] == "done" for row in read_events(events)) >= MESSAGES:
                    break
                time.sleep(0.05)
            time.sleep(0.3)  # room for a duplicate to show up, if there were one
        finally:
            two.kill()
    finally:
        one.kill()
    done = [row for row in read_events(events) if row[0] == "done"]
    handled = Counter(payload for *_, payload in done)
    assert handled == Counter(f"m{n}" for n in range(MESSAGES))  # each exactly once
    by_process = Counter(pid for _, pid, _, _ in done)
    assert set(by_process) == {one.proc.pid, two.proc.pid}, by_process  # the load was split
