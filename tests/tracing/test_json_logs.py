"""The JSON log format: one object a line, with the event's protocol, key and trace id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from django.test import override_settings

from gateway.cli import (
    _apply_log_format_setting,
    build_parser,
    chosen_log_format,
    configure_logging,
)
from gateway.conf import GatewaySettings
from gateway.logcontext import JsonFormatter
from gateway.pipeline import KeyedDispatcher

app_logger = logging.getLogger("tests.tracing.app")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    app_logger.addHandler(handler)
    app_logger.setLevel(logging.INFO)
    yield stream
    app_logger.removeHandler(handler)


async def _handle_one(protocol: str, key: str) -> None:
    async def handler() -> None:
        app_logger.info("handling %s", key)

    scope = {"type": protocol, "topic": key}
    outcome = await KeyedDispatcher(protocol).run(key, handler, scope=scope, payload=b"")
    assert outcome.handled


async def test_a_line_logged_while_handling_an_event_names_it(json_lines: io.StringIO) -> None:
    await _handle_one("mqtt", "devices/d1/telemetry")
    app_logger.info("after")
    during, after = (json.loads(line) for line in json_lines.getvalue().splitlines())
    assert during["message"] == "handling devices/d1/telemetry"
    assert during["level"] == "INFO"
    assert during["logger"] == "tests.tracing.app"
    assert (during["protocol"], during["key"]) == ("mqtt", "devices/d1/telemetry")
    assert "protocol" not in after
    assert "trace_id" not in after


async def test_the_trace_id_is_the_events_span(json_lines: io.StringIO, spans: object) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    assert isinstance(spans, InMemorySpanExporter)
    await _handle_one("sms", "+441234")
    line = json.loads(json_lines.getvalue())
    (span,) = spans.get_finished_spans()
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    assert line["key"] == "+441234"


def test_an_exception_is_one_line_too(json_lines: io.StringIO) -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        app_logger.exception("failed")
    (line,) = json_lines.getvalue().splitlines()
    assert "ValueError: bad" in json.loads(line)["exception"]


def test_the_flag_comes_first_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_LOG_FORMAT", raising=False)
    assert chosen_log_format(build_parser().parse_args(["run", "a:b"])) is None
    json_flag = build_parser().parse_args(["run", "a:b", "--log-format", "json"])
    assert chosen_log_format(json_flag) == "json"
    monkeypatch.setenv("GATEWAY_LOG_FORMAT", "json")
    assert chosen_log_format(build_parser().parse_args(["run", "a:b"])) == "json"
    text_flag = build_parser().parse_args(["run", "a:b", "--log-format", "text"])
    assert chosen_log_format(text_flag) == "text"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "a:b", "--log-format", "xml"])


@pytest.mark.parametrize(
    ("environment", "setting", "json_lines"),
    [(None, "json", True), (None, "text", False), ("text", "json", False)],
)
def test_the_setting_applies_when_neither_chose(
    monkeypatch: pytest.MonkeyPatch, environment: str | None, setting: str, json_lines: bool
) -> None:
    if environment is None:
        monkeypatch.delenv("GATEWAY_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("GATEWAY_LOG_FORMAT", environment)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info", "text")
        with override_settings(GATEWAY={"LOG_FORMAT": setting}):
            _apply_log_format_setting(build_parser().parse_args(["run", "a:b"]))
        formats = {isinstance(handler.formatter, JsonFormatter) for handler in root.handlers}
        assert formats == {json_lines}
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_the_system_check_names_a_bad_log_format() -> None:
    (problem,) = GatewaySettings({"LOG_FORMAT": "xml"}).problems()
    assert "LOG_FORMAT" in str(problem)
    assert '"text", "json"' in str(problem)


def test_configure_logging_json_formats_the_root_handlers() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info", "json")
        assert all(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
