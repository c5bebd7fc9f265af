"""``gateway worker CHANNEL...``: run the root application's ``"channel"`` branch for channels.

One application instance per channel, fed by the channel layer, as Channels' ``runworker``
does. On a durable channel of the Redis layer a message is acknowledged only once the
application asked for the next one, that is once the consumer's handler returned: a worker
killed mid-message leaves it pending, and another worker claims it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from gateway import tracing
from gateway.exceptions import ImproperlyConfiguredGateway
from gateway.layers import BaseChannelLayer, get_channel_layer
from gateway.metrics import registry
from gateway.types import ASGIApp, Message

__all__ = ["Worker", "register"]

logger = logging.getLogger("gateway.worker")

RESTART_DELAY = 0.5  # after an application instance failed, before the next one starts


class _Delivery(Protocol):
    message: dict[str, Any]

    async def ack(self) -> None: ...


class _Handed:
    """A message of a layer without acknowledgements: handed over, nothing to confirm."""

    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message

    async def ack(self) -> None:
        """Nothing to do."""


def register(commands: Any) -> None:
    """Add the ``worker`` subcommand."""
    from gateway.cli import add_common_options

    parser = commands.add_parser(
        "worker", help="run the root application's 'channel' branch for channel names"
    )
    parser.add_argument("channels", nargs="+", metavar="CHANNEL", help="channel names to serve")
    parser.add_argument(
        "--app", help="the root ASGI app, as module.path:attribute (default: ASGI_APPLICATION)"
    )
    parser.add_argument(
        "--layer", default="default", help="the CHANNEL_LAYERS alias (default: default)"
    )
    add_common_options(parser)
    parser.set_defaults(handler=_worker_command, needs_django=True)


def _worker_command(args: argparse.Namespace) -> int:
    from django.conf import settings

    from gateway.cli import UsageError, load_app
    from gateway.server import loop_factory

    app_path = args.app or getattr(settings, "ASGI_APPLICATION", None)
    if not app_path:
        raise UsageError("pass --app module.path:attribute or set ASGI_APPLICATION")
    app = load_app(app_path)
    layer = get_channel_layer(args.layer)
    if layer is None:
        raise UsageError(f"CHANNEL_LAYERS configures no layer {args.layer!r}")
    for channel in args.channels:
        layer.require_valid_channel_name(channel, receive=True)
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
        runner.run(Worker(app, args.channels, layer).serve())
    return 0


class Worker:
    """Serves channels with one application instance each, until SIGTERM or SIGINT."""

    def __init__(
        self, application: ASGIApp, channels: Sequence[str], layer: BaseChannelLayer
    ) -> None:
        if not channels:
            raise ImproperlyConfiguredGateway("a worker needs at least one channel name")
        self.application = application
        self.channels = list(channels)
        self.layer = layer
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Stop taking messages; what is not acknowledged yet is delivered again later."""
        self._stopping.set()

    async def serve(self) -> None:
        """Run until stopped; announce `gateway: ready` on stdout once listening."""
        tracing.configure()  # the application, imported by now, may have set a provider
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
        tasks = [
            asyncio.create_task(self.serve_channel(channel), name=f"worker {channel}")
            for channel in self.channels
        ]
        # These lines are an interface: scripts and tests parse them from stdout.
        sys.stdout.write(f"gateway: worker listening on {' '.join(self.channels)}\n")
        sys.stdout.write("gateway: ready\n")
        sys.stdout.flush()
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.layer.close()

    async def serve_channel(self, channel: str) -> None:
        """Keep one application instance running for a channel; restart it when it fails."""
        while True:
            try:
                await self._run_instance(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                registry.inc("channel", "failed")
                logger.exception("The application for channel %r failed", channel)
                await asyncio.sleep(RESTART_DELAY)

    async def _run_instance(self, channel: str) -> None:
        scope = {"type": "channel", "channel": channel}
        current: _Delivery | None = None

        async def receive() -> Message:
            nonlocal current
            if current is not None:
                # Asking for the next message means the handler of this one returned.
                await current.ack()
                registry.inc("channel", "handled")
                current = None
            current = await self._receive(channel)
            registry.inc("channel", "received")
            return current.message

        async def send(message: Message) -> None:
            raise RuntimeError(
                f"an application serving channel {channel!r} has no client to send"
                f" {message.get('type')!r} to; use the channel layer instead"
            )

        await self.application(scope, receive, send)
        if current is not None:  # the application stopped after handling its last message
            await current.ack()

    async def _receive(self, channel: str) -> _Delivery:
        receive_delivery = getattr(self.layer, "receive_delivery", None)
        if receive_delivery is not None:
            delivery: _Delivery = await receive_delivery(channel)
            return delivery
        return _Handed(await self.layer.receive(channel))
