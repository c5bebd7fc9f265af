"""`gateway worker`: the Worker on the in-memory layer (the Redis one is in test_redis_durable)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import AsyncConsumer, ChannelNameRouter, ProtocolTypeRouter
from gateway.cli import build_parser
from gateway.layers import InMemoryChannelLayer
from gateway.worker import Worker

WAIT = 10.0


def test_the_worker_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["worker", "jobs.a", "jobs.b", "--app", "m:app"])
    assert (args.channels, args.app, args.layer, args.needs_django) == (
        ["jobs.a", "jobs.b"],
        "m:app",
        "default",
        True,
    )


async def test_each_channel_gets_its_application_and_failures_restart_it() -> None:
    layer = InMemoryChannelLayer()
    handled: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    class Job(AsyncConsumer):
        async def job_run(self, message: dict[str, Any]) -> None:
            if message.get("fail"):
                raise RuntimeError("this job fails")
            await handled.put((self.scope["channel"], message["n"]))

    router = ChannelNameRouter({"jobs.a": Job.as_asgi(), "jobs.b": Job.as_asgi()})
    worker = Worker(ProtocolTypeRouter({"channel": router}), ["jobs.a", "jobs.b"], layer)
    serving = asyncio.create_task(worker.serve())
    try:
        await layer.send("jobs.a", {"type": "job.run", "n": 1})
        await layer.send("jobs.b", {"type": "job.run", "n": 2})
        await layer.send("jobs.a", {"type": "job.run", "fail": True})
        await layer.send("jobs.a", {"type": "job.run", "n": 3})
        got = {await asyncio.wait_for(handled.get(), WAIT) for _ in range(3)}
        assert got == {("jobs.a", 1), ("jobs.b", 2), ("jobs.a", 3)}
    finally:
        worker.stop()
        await asyncio.wait_for(serving, WAIT)
