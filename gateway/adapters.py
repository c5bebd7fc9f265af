"""The interface every protocol adapter implements, and what the gateway hands it.

An adapter turns one external protocol (MQTT, SMTP, IMAP, an SMS webhook, ...) into ASGI
scopes and events for the root application. The gateway process builds one adapter per
enabled entry of ``GATEWAY["ADAPTERS"]``, awaits ``start()`` before it reports ready, asks
``health()`` for ``/-/health``, mounts the paths of ``http_routes()`` on its HTTP server
(for webhooks), and awaits ``stop(timeout)`` on SIGTERM / SIGINT.
"""

from __future__ import annotations

import abc
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

if TYPE_CHECKING:
    from gateway.metrics import MetricsRegistry
    from gateway.pipeline import DeadLetterHook
    from gateway.types import ASGIApp

__all__ = [
    "AdapterContext",
    "AdapterHealth",
    "AdapterStatus",
    "DeployRisk",
    "Listener",
    "ProtocolAdapter",
    "is_public_host",
]

AdapterStatus = Literal["starting", "ok", "degraded", "down", "stopped"]


@dataclass(frozen=True)
class Listener:
    """One thing an adapter listens on or connects to, e.g. ("mqtt", "127.0.0.1:1883")."""

    protocol: str
    address: str


@dataclass(frozen=True)
class AdapterHealth:
    """An adapter's health as `/-/health` reports it; `detail` says why when not ok."""

    status: AdapterStatus
    detail: str = ""


def is_public_host(host: str) -> bool:
    """Whether a listening address is reachable from other machines (a name counts as one)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


class DeployRisk(NamedTuple):
    """A risky production setting: a ``gateway.W1xx`` id, what is wrong, what to do."""

    id: str
    message: str
    hint: str


@dataclass
class AdapterContext:
    """What the gateway gives an adapter: the app to call and the services around it."""

    app: ASGIApp
    """The root ASGI application; call it once per scope."""
    name: str
    """The adapter's key in GATEWAY["ADAPTERS"]; use it in log lines and error messages."""
    options: Mapping[str, Any]
    """GATEWAY["ADAPTERS"][name]["OPTIONS"], already accepted by `check_options`."""
    metrics: MetricsRegistry
    """The process-wide counters; count received / handled / failed under your protocol."""
    dead_letter: DeadLetterHook
    """Where events go that the application failed on for good (GATEWAY["DEAD_LETTER_HANDLER"])."""
    state: dict[str, Any] = field(default_factory=dict)
    """The lifespan state; give each scope a shallow copy as `scope["state"]`, as uvicorn does."""


class ProtocolAdapter(abc.ABC):
    """Base class of protocol adapters: start accepting, report health, stop and drain."""

    protocol: ClassVar[str]
    """The ASGI scope type this adapter produces, e.g. "mqtt"; also its metrics label."""

    def __init__(self, context: AdapterContext) -> None:
        """Keep the context; do no I/O here, `start()` does that."""
        self.context = context

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Return every problem with `options` as a sentence; the system check reports them."""
        return []

    @classmethod
    def deploy_risks(cls, options: Mapping[str, Any]) -> list[DeployRisk]:
        """Settings that work but are risky in production; ``check --deploy`` warns of them."""
        return []

    @abc.abstractmethod
    async def start(self) -> list[Listener]:
        """Start accepting events; return what it listens on once it really does."""

    @abc.abstractmethod
    async def stop(self, timeout: float) -> None:
        """Stop accepting, then let in-flight events finish for up to `timeout` seconds."""

    def health(self) -> AdapterHealth:
        """Report the adapter's current health; called often, so keep it cheap."""
        return AdapterHealth("ok")

    def http_routes(self) -> Mapping[str, ASGIApp]:
        """HTTP paths this adapter answers itself (webhooks), each with the ASGI app serving it.

        Asked once, after `start()` returned. The gateway's HTTP server then sends requests
        for exactly these paths (under ROOT_PATH) to these apps, before the root application
        sees them; the default is none.
        """
        return {}
