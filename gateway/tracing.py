"""OpenTelemetry spans for events, consumer calls and channel-layer sends (the ``otel`` extra).

Without ``opentelemetry-api`` installed, or until `configure` finds a tracer provider, `tracer`
is None and every caller skips its hook on that one check. Then each intake event gets one
span (`event_span`), each consumer call one (`consumer_span`), each channel-layer send made in
a span one (`send_span`), and the trace context travels:

- in channel-layer messages, under the reserved key ``"_trace"`` (`TRACE_KEY`): a dict of W3C
  trace-context headers (``traceparent``, ``tracestate``) that `inject_message` adds on send
  and consumers take off (`split_message`) before a handler sees the message;
- in MQTT 5 user properties (``traceparent``) on publish, read back from an inbound scope's
  ``properties.user_properties``;
- in HTTP and WebSocket scopes, from the ``traceparent`` request header.

Spans go wherever the application's tracer provider sends them (docs/gateway-process.md).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the "otel" extra is not installed: every hook is skipped on `tracer`
    INSTALLED = False
else:
    INSTALLED = True

tracer: trace.Tracer | None = None
"""The gateway's tracer once `configure` found a tracer provider; None: nothing is traced."""

logger = logging.getLogger("gateway.tracing")

__all__ = [
    "INSTALLED",
    "TRACE_KEY",
    "carry_to_publish",
    "configure",
    "consumer_span",
    "end_event",
    "event_span",
    "inject_message",
    "inject_user_properties",
    "send_span",
    "split_message",
    "trace_id",
    "trace_layer",
    "tracer",
]

TRACE_KEY = "_trace"
"""The reserved channel-layer message key that carries the trace context."""


def configure(provider: trace.TracerProvider | None = None) -> bool:
    """Trace from now on if a tracer provider is set (the SDK's, by the application).

    The gateway and the worker call it as they start, after the application was imported (its
    module or settings set the provider). Without a provider, the API's no-op spans would record
    nothing yet cost about half the MQTT intake's throughput (benchmarks/README.md), so
    nothing is traced. `provider` (a test's own) is used instead of the global one.
    """
    global tracer
    if not INSTALLED:
        return False
    provider = provider or trace.get_tracer_provider()
    # The API's default until a provider is set: a proxy, and a no-op behind it.
    unset = isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    tracer = None if unset else provider.get_tracer("gateway")
    logger.info("Tracing: %s", "off (no tracer provider)" if unset else type(provider).__name__)
    return tracer is not None


_KEY_ATTRIBUTE = {"mqtt": "topic", "email": "recipient", "sms": "from"}


def split_message(message: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """The message without `TRACE_KEY` (a copy: other receivers may share it), and its value."""
    rest = {key: value for key, value in message.items() if key != TRACE_KEY}
    return rest, message.get(TRACE_KEY)


def _carrier() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def inject_message(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """`message` with the current trace context under `TRACE_KEY` (unchanged if none)."""
    if tracer is None or TRACE_KEY in message:
        return message
    carrier = _carrier()
    return {**message, TRACE_KEY: carrier} if carrier else message


def inject_user_properties(properties: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """MQTT publish `properties` with a ``traceparent`` user property (unchanged if none)."""
    if tracer is None:
        return properties
    return _with_traceparent(properties, _carrier().get("traceparent"))


def carry_to_publish(event: Mapping[str, Any], message: Mapping[str, Any]) -> dict[str, Any]:
    """An ``mqtt.publish`` event that came through the channel layer as `message`, with the
    sender's ``traceparent`` (from `TRACE_KEY`) as a user property, if it had one."""
    carrier = message.get(TRACE_KEY)
    traceparent = carrier.get("traceparent") if isinstance(carrier, dict) else None
    properties = _with_traceparent(event.get("properties"), traceparent)
    return {**event, "properties": properties} if properties else dict(event)


def _with_traceparent(
    properties: Mapping[str, Any] | None, traceparent: object
) -> Mapping[str, Any] | None:
    if not isinstance(traceparent, str):
        return properties
    pairs = [tuple(pair) for pair in (properties or {}).get("user_properties", ())]
    if any(name == "traceparent" for name, _ in pairs):
        return properties
    return {**(properties or {}), "user_properties": [*pairs, ("traceparent", traceparent)]}


def _scope_carrier(scope: Mapping[str, Any]) -> dict[str, str]:
    """The trace-context headers a scope arrived with: MQTT user properties or HTTP headers."""
    if scope.get("type") == "mqtt":
        pairs = scope.get("properties", {}).get("user_properties", ())
        return {str(name): str(value) for name, value in pairs}
    carrier: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name in (b"traceparent", b"tracestate"):
            carrier[name.decode("latin-1")] = value.decode("latin-1")
    return carrier


def _parent(scope: Mapping[str, Any], carrier: object) -> otel_context.Context | None:
    """The remote parent: a message's carrier, else the scope's; None keeps the current span."""
    if isinstance(carrier, dict):
        return propagate.extract(carrier)
    if trace.get_current_span().get_span_context().is_valid:
        return None
    found = _scope_carrier(scope)
    return propagate.extract(found) if found else None


@contextmanager
def event_span(protocol: str, key: str, scope: Mapping[str, Any]) -> Iterator[trace.Span]:
    """One intake event's span, current while the application handles it."""
    assert tracer is not None
    attributes = {
        "gateway.protocol": protocol,
        "gateway.key": key,
        "gateway.adapter": str(scope.get("adapter", scope.get("provider", scope.get("source")))),
    }
    name = _KEY_ATTRIBUTE.get(protocol)
    if name is not None and name in scope:
        attributes[f"gateway.{protocol}.{name}"] = str(scope[name])
    with tracer.start_as_current_span(
        f"{protocol} {key}",
        context=_parent(scope, None),
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span


def end_event(span: trace.Span, attempts: int, outcome: str) -> None:
    """Record how an event finished on its span."""
    span.set_attribute("gateway.attempt", attempts)
    span.set_attribute("gateway.outcome", outcome)
    if outcome != "handled":
        span.set_status(trace.StatusCode.ERROR)


@contextmanager
def consumer_span(
    consumer: object, handler: str, scope: Mapping[str, Any], carrier: object
) -> Iterator[trace.Span]:
    """A consumer call's span: child of the message's carrier, the current span or the scope."""
    assert tracer is not None
    with tracer.start_as_current_span(
        f"{type(consumer).__qualname__}.{handler}",
        context=_parent(scope, carrier),
        attributes={"gateway.handler": handler, "gateway.scope": str(scope.get("type"))},
    ) as span:
        yield span


@contextmanager
def send_span(operation: str, target: str) -> Iterator[None]:
    """A producer span around a channel-layer send, so the receiver's span hangs under it."""
    assert tracer is not None
    with tracer.start_as_current_span(
        f"{operation} {target}",
        kind=trace.SpanKind.PRODUCER,
        attributes={"gateway.layer.operation": operation, "gateway.layer.target": target},
    ):
        yield


def trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None outside a span (or without otel)."""
    if tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def trace_layer(cls: type) -> None:
    """Wrap the ``send`` and ``group_send`` a layer class defines to carry the trace context."""
    for operation in ("send", "group_send"):
        method = cls.__dict__.get(operation)
        if method is not None:
            setattr(cls, operation, _traced_send(method, operation))


def _traced_send(method: Callable[..., Awaitable[None]], operation: str) -> Any:
    @functools.wraps(method)
    async def send(self: object, target: str, message: Mapping[str, Any]) -> None:
        # Nothing to continue outside a span; an outer override already carried it; the
        # layer itself refuses a message that is not a dict.
        if (
            tracer is None
            or not trace.get_current_span().get_span_context().is_valid
            or not isinstance(message, dict)
            or TRACE_KEY in message
        ):
            await method(self, target, message)
            return
        with send_span(operation, target):
            await method(self, target, inject_message(message))

    return send
