"""The MQTT adapters' shared core: options, scopes, the intake, subscriptions."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from gateway.adapters import AdapterContext
from gateway.metrics import MetricsRegistry
from gateway.mqtt import InvalidPayload, MqttPublishError
from gateway.pipeline import DeadLetter, Outcome, RetryPolicy
from gateway.types import MqttPublishEvent, Receive, Scope, Send
from protocol_adapters.mqtt.common import (
    InboundMessage,
    MqttIntake,
    MqttOptions,
    build_mqtt_scope,
    check_common_options,
    match_subscription,
    run_mqtt_app,
    subscriptions_for,
)
from routers import ProtocolTypeRouter

FAST = RetryPolicy(attempts=3, initial_backoff=0.001, max_backoff=0.002, jitter=0.0)
WAIT = 10.0  # only turns a hang into a failure


class Harness:
    """An intake around an app, recording what it published and dead-lettered."""

    def __init__(self, app: Any, **options: Any) -> None:
        self.published: list[MqttPublishEvent] = []
        self.letters: list[DeadLetter] = []
        self.metrics = MetricsRegistry()
        context = AdapterContext(app, "mqtt-test", {}, self.metrics, self.dead_letter)
        parsed = MqttOptions.from_options(options)
        if "RETRY" not in options:
            parsed.retry = FAST  # tiny backoffs keep the tests fast
        self.intake = MqttIntake(context, broker="embedded", options=parsed, publish=self.publish)

    async def publish(self, event: MqttPublishEvent) -> None:
        self.published.append(event)

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


def message(
    topic: str = "devices/d1/telemetry", payload: bytes = b"{}", **kw: Any
) -> InboundMessage:
    return InboundMessage(topic=topic, payload=payload, **kw)


# --- options ---------------------------------------------------------------------------------


def test_options_defaults() -> None:
    options = MqttOptions.from_options({})
    assert options.max_in_flight == 100
    assert (options.retry.attempts, options.retry.initial_backoff) == (3, 0.5)
    assert options.retry.max_backoff == 30.0
    assert options.max_payload == 262144
    assert options.subscriptions is None
    assert (options.qos, options.layer_alias, options.serve_publish_channel) == (1, "default", True)


def test_options_parse_given_values_and_partial_retry() -> None:
    options = MqttOptions.from_options(
        {"MAX_IN_FLIGHT": 5, "RETRY": {"ATTEMPTS": 1}, "SUBSCRIPTIONS": ["a/#"], "QOS": 0}
    )
    assert options.max_in_flight == 5
    assert (options.retry.attempts, options.retry.max_backoff) == (1, 30.0)
    assert options.subscriptions == ["a/#"]
    assert options.qos == 0


def test_check_common_options_names_each_bad_key() -> None:
    errors = check_common_options(
        {
            "MAX_IN_FLIGHT": 0,
            "MAX_PAYLOAD": "big",
            "QOS": 3,
            "LAYER_ALIAS": "",
            "SERVE_PUBLISH_CHANNEL": "yes",
            "RETRY": {"ATTEMPTS": 0, "MAX_BACKOFF": -1, "TRIES": 2},
            "SUBSCRIPTIONS": ["a/#/b"],
            "HOST": "ignored: adapter-specific",
        }
    )
    assert 'OPTIONS["MAX_IN_FLIGHT"] must be a positive integer, got 0' in errors
    joined = "\n".join(errors)
    for key in ("MAX_PAYLOAD", "QOS", "LAYER_ALIAS", "SERVE_PUBLISH_CHANNEL", "ATTEMPTS"):
        assert f'["{key}"]' in joined, key
    assert '["MAX_BACKOFF"]' in joined
    assert '["TRIES"] is not a known key' in joined
    assert "'a/#/b'" in joined
    assert "HOST" not in joined
    assert len(errors) == 9


def test_from_options_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="MAX_IN_FLIGHT"):
        MqttOptions.from_options({"MAX_IN_FLIGHT": -1})


# --- scopes and subscriptions ----------------------------------------------------------------


def test_build_mqtt_scope_follows_the_spec() -> None:
    msg = message(qos=1, message_id=7, client_id="c1", device_id="d1", subscription="devices/#")
    scope = build_mqtt_scope(msg, adapter="mqtt", broker="external", state={"k": 1})
    assert scope == {
        "type": "mqtt",
        "asgi": {"version": "3.0", "spec_version": "1.0"},
        "topic": "devices/d1/telemetry",
        "qos": 1,
        "retain": False,
        "dup": False,
        "message_id": 7,
        "client_id": "c1",
        "device_id": "d1",
        "broker": "external",
        "adapter": "mqtt",
        "subscription": "devices/#",
        "properties": {},
        "state": {"k": 1},
    }
    assert build_mqtt_scope(msg, adapter="a", broker="embedded", dup=True)["dup"] is True


def test_match_subscription_strips_shared_prefix() -> None:
    filters = ["alerts/+", "$share/g/devices/#"]
    assert match_subscription(filters, "devices/a/b") == "devices/#"
    assert match_subscription(filters, "alerts/x") == "alerts/+"
    assert match_subscription(filters, "other") is None


class _Lister:
    def __init__(self, filters: list[str]) -> None:
        self.filters = filters

    def mqtt_subscriptions(self) -> list[str]:
        return self.filters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pass


class _Middleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.inner(scope, receive, send)


async def _plain_app(scope: Scope, receive: Receive, send: Send) -> None:
    pass


def test_subscriptions_for_walks_protocol_router_and_middleware() -> None:
    root = _Middleware(ProtocolTypeRouter({"mqtt": _Middleware(_Lister(["a/#", "b/+"]))}))
    assert subscriptions_for(root) == ["a/#", "b/+"]


def test_subscriptions_for_options_override_routes() -> None:
    root = ProtocolTypeRouter({"mqtt": _Lister(["a/#"])})
    options = MqttOptions.from_options({"SUBSCRIPTIONS": ["x/y"]})
    assert subscriptions_for(root, options) == ["x/y"]


def test_subscriptions_for_without_mqtt_or_without_router() -> None:
    assert subscriptions_for(ProtocolTypeRouter({"http": _plain_app})) == []
    assert subscriptions_for(ProtocolTypeRouter({"mqtt": _plain_app})) == ["#"]


# --- running the app -------------------------------------------------------------------------


async def test_run_mqtt_app_delivers_the_message_and_validates_sends() -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        await send({"type": "mqtt.publish", "topic": "out", "payload": b"x", "qos": 1})

    published: list[MqttPublishEvent] = []

    async def publish(event: MqttPublishEvent) -> None:
        published.append(event)

    await run_mqtt_app(app, {"type": "mqtt"}, b"hello", publish)
    assert seen == [{"type": "mqtt.message", "payload": b"hello"}]
    assert published == [
        {"type": "mqtt.publish", "topic": "out", "payload": b"x", "qos": 1, "retain": False}
    ]


async def test_run_mqtt_app_refuses_other_events_and_bad_topics() -> None:
    async def publish(event: MqttPublishEvent) -> None:
        raise AssertionError("must not publish")

    async def wrong_type(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.send", "text": "x"})

    async def wildcard(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "mqtt.publish", "topic": "a/#", "payload": b""})

    with pytest.raises(ValueError, match=r"websocket\.send"):
        await run_mqtt_app(wrong_type, {}, b"", publish)
    with pytest.raises(MqttPublishError, match="wildcard"):
        await run_mqtt_app(wildcard, {}, b"", publish)


async def test_second_receive_returns_disconnect_when_stopped() -> None:
    stopped = asyncio.Event()
    events: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        events.append(await receive())
        events.append(await receive())

    async def publish(event: MqttPublishEvent) -> None:
        pass

    task = asyncio.create_task(run_mqtt_app(app, {}, b"p", publish, stopped=stopped))
    await asyncio.sleep(0)
    assert not task.done()
    stopped.set()
    await asyncio.wait_for(task, WAIT)
    assert events[1] == {"type": "mqtt.disconnect"}


# --- the intake ------------------------------------------------------------------------------


async def test_intake_runs_app_and_calls_on_done_after_it_returned() -> None:
    order: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        event = await receive()
        order.append(f"app {scope['topic']} {event['payload']!r} {scope['adapter']}")
        await send({"type": "mqtt.publish", "topic": "reply", "payload": b"ok"})
        order.append("app returned")

    harness = Harness(app)
    done = asyncio.Event()
    outcomes: list[Outcome] = []

    def on_done(outcome: Outcome) -> None:
        order.append("on_done")
        outcomes.append(outcome)
        done.set()

    await harness.intake.submit(message(payload=b"42"), on_done)
    await asyncio.wait_for(done.wait(), WAIT)
    assert order == ["app devices/d1/telemetry b'42' mqtt-test", "app returned", "on_done"]
    assert outcomes[0].handled
    assert [e["topic"] for e in harness.published] == ["reply"]
    assert harness.metrics.get("mqtt", "handled") == 1
    assert await harness.intake.aclose(WAIT) == 0


async def test_intake_keeps_order_per_topic_and_runs_topics_concurrently() -> None:
    seen: dict[str, list[bytes]] = defaultdict(list)
    gate = asyncio.Event()
    started: set[str] = set()
    both_started = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        payload = (await receive())["payload"]
        if payload == b"0":
            started.add(scope["topic"])
            if len(started) == 2:
                both_started.set()
            await gate.wait()
        seen[scope["topic"]].append(payload)

    harness = Harness(app)
    for n in range(20):
        for name in ("a", "b"):
            await harness.intake.submit(message(topic=name, payload=str(n).encode()))
    # Both topics' first messages run at once: different topics do not wait for each other.
    await asyncio.wait_for(both_started.wait(), WAIT)
    gate.set()
    assert await harness.intake.aclose(WAIT) == 0
    expected = [str(n).encode() for n in range(20)]
    assert seen == {"a": expected, "b": expected}


async def test_intake_backpressure_bounds_in_flight() -> None:
    gate = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await gate.wait()

    harness = Harness(app, MAX_IN_FLIGHT=3)
    for n in range(3):
        await harness.intake.submit(message(topic=f"t/{n}"))
    blocked = asyncio.create_task(harness.intake.submit(message(topic="t/3")))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert harness.intake.in_flight == 3
    assert not harness.intake.try_submit(message(topic="t/4"))
    gate.set()
    await asyncio.wait_for(blocked, WAIT)
    assert await harness.intake.aclose(WAIT) == 0
    assert harness.metrics.get("mqtt", "handled") == 4


async def test_intake_retries_with_dup_then_succeeds() -> None:
    dups: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        dups.append(scope["dup"])
        if len(dups) < 3:
            raise RuntimeError("database blip")

    harness = Harness(app)
    outcome = await asyncio.wait_for(harness.intake.run(message()), WAIT)
    assert (outcome.status, outcome.attempts) == ("handled", 3)
    assert dups == [False, True, True]
    assert harness.letters == []
    assert harness.metrics.get("mqtt", "retried") == 2


async def test_intake_dead_letters_with_scope_and_payload() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise RuntimeError("always broken")

    harness = Harness(app)
    done: list[Outcome] = []
    await harness.intake.submit(message(payload=b"\x00raw", qos=1, message_id=3), done.append)
    assert await harness.intake.aclose(WAIT) == 0
    assert [o.status for o in done] == ["dead_lettered"]
    (letter,) = harness.letters
    assert (letter.protocol, letter.key, letter.attempts) == ("mqtt", "devices/d1/telemetry", 3)
    assert letter.payload == b"\x00raw"
    assert letter.scope["topic"] == "devices/d1/telemetry"
    assert letter.scope["message_id"] == 3
    assert "always broken" in letter.error
    assert harness.metrics.get("mqtt", "dead_lettered") == 1


async def test_intake_does_not_retry_invalid_payload() -> None:
    calls = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal calls
        calls += 1
        raise InvalidPayload("not JSON")

    harness = Harness(app)
    outcome = await asyncio.wait_for(harness.intake.run(message(payload=b"{")), WAIT)
    assert (outcome.status, outcome.attempts, calls) == ("dead_lettered", 1, 1)
    assert [letter.payload for letter in harness.letters] == [b"{"]


async def test_intake_passes_a_copy_of_lifespan_state() -> None:
    states: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"]["added"] = True
        states.append(scope["state"])

    state = {"shared": 1}
    metrics = MetricsRegistry()

    async def nowhere(letter: DeadLetter) -> None:
        pass

    async def publish(event: MqttPublishEvent) -> None:
        pass

    context = AdapterContext(app, "m", {}, metrics, nowhere)
    intake = MqttIntake(
        context, broker="external", options=MqttOptions(), publish=publish, state=state
    )
    await intake.run(message())
    assert states == [{"shared": 1, "added": True}]
    assert state == {"shared": 1}
    await intake.aclose(WAIT)


@pytest.mark.parametrize(
    "modules",
    [
        "protocol_adapters.mqtt, protocol_adapters.mqtt.common",
        "protocol_adapters.mqtt.embedded",  # the broker is our own: no MQTT library at all
    ],
)
def test_importing_the_package_common_or_the_embedded_broker_imports_no_mqtt_library(
    modules: str,
) -> None:
    import subprocess
    import sys

    code = (
        f"import sys, {modules}; print([m for m in ('amqtt', 'gmqtt', 'paho') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_adapters_load_lazily_from_the_package() -> None:
    import protocol_adapters.mqtt as package
    from protocol_adapters.mqtt.embedded import EmbeddedBroker
    from protocol_adapters.mqtt.external import ExternalBroker

    assert package.EmbeddedBroker is EmbeddedBroker
    assert package.ExternalBroker is ExternalBroker
    with pytest.raises(AttributeError, match="Nothing"):
        package.Nothing  # noqa: B018
