"""Per-protocol counters, rendered in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from typing import Literal

CounterName = Literal[
    "received", "handled", "failed", "retried", "dead_lettered", "rejected", "dropped", "overloaded"
]

_HELP: dict[str, str] = {
    "received": "Events received from the outside world.",
    "handled": "Events the application handled without error.",
    "failed": "Events whose application raised.",
    "retried": "Event deliveries retried after a failure.",
    "dead_lettered": "Events given up on and handed to the dead-letter hook.",
    "rejected": "Events refused at the protocol level (bad input, overload).",
    "dropped": "Outbound messages dropped: a client's queue was full, or it could not keep up.",
    "overloaded": "Events refused at an intake's cap (HTTP 503, SMTP 421, MQTT CONNACK 3);"
    " in rejected too.",
}


class MetricsRegistry:
    """Counters keyed by (protocol, counter) plus gauges, for `/-/metrics`."""

    def __init__(self) -> None:
        self._counters: Counter[tuple[str, str]] = Counter()
        self._gauges: dict[tuple[str, str], float] = {}

    def inc(self, protocol: str, name: CounterName, amount: int = 1) -> None:
        """Add `amount` to one protocol's counter."""
        self._counters[(protocol, name)] += amount

    def set_gauge(self, protocol: str, name: str, value: float) -> None:
        """Set a gauge such as `in_flight` for one protocol."""
        self._gauges[(protocol, name)] = value

    def get(self, protocol: str, name: CounterName) -> int:
        return self._counters[(protocol, name)]

    def gauge(self, protocol: str, name: str) -> float:
        return self._gauges.get((protocol, name), 0.0)

    def protocols(self) -> list[str]:
        return sorted({p for p, _ in self._counters} | {p for p, _ in self._gauges})

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        protocols = self.protocols()
        for name, help_text in _HELP.items():
            metric = f"gateway_events_{name}_total"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{protocol="{p}"}} {self._counters[(p, name)]}' for p in protocols]
        for gauge in sorted({g for _, g in self._gauges}):
            metric = f"gateway_{gauge}"
            lines += [f"# TYPE {metric} gauge"]
            lines += [
                f'{metric}{{protocol="{p}"}} {v:g}'
                for (p, g), v in sorted(self._gauges.items())
                if g == gauge
            ]
        return "\n".join(lines) + "\n"

    def reset(self) -> None:
        self._counters.clear()
        self._gauges.clear()


registry = MetricsRegistry()
