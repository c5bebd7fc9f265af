"""A worker application for the durable-channel tests, run by `gateway worker jobs.work`.

For each `job.run` message it touches `started-<pid>-<n>` in GATEWAY_TEST_MARKERS, then,
unless another process started the same job before (the job was taken over), sleeps for a
minute, then touches `handled-<pid>-<n>`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from gateway import AsyncConsumer, ChannelNameRouter, ProtocolTypeRouter


class Job(AsyncConsumer):
    async def job_run(self, message: dict[str, Any]) -> None:
        markers = Path(os.environ["GATEWAY_TEST_MARKERS"])
        n = message["n"]
        taken_over = await asyncio.to_thread(_start, markers, n)
        if not taken_over:
            await asyncio.sleep(60)  # long enough for the test to kill this process
        await asyncio.to_thread((markers / f"handled-{os.getpid()}-{n}").touch)


def _start(markers: Path, n: int) -> bool:
    """Mark job n started here; True when another process had started it before."""
    earlier = list(markers.glob(f"started-*-{n}"))
    (markers / f"started-{os.getpid()}-{n}").touch()
    return bool(earlier)


application = ProtocolTypeRouter({"channel": ChannelNameRouter({"jobs.work": Job.as_asgi()})})
