"""deploy/grafana/gateway.json: valid, and every metric it queries is one a gateway exports.

The exported names come from the `/-/metrics` of a running `gateway run` (the embedded broker
and HTTP) after one MQTT message handled and one dead-lettered; the same process logs in the
JSON format, and its lines about those messages carry the protocol and topic.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.publish
import pytest

from tests.server.process import ROOT, GatewayProcess, gateway_env, spawn, wait_ready

DASHBOARD = ROOT / "deploy" / "grafana" / "gateway.json"
# PromQL's own words, the labels the dashboard groups by, and Prometheus's scrape metric.
PROMQL_WORDS = {"sum", "by", "rate", "label_values", "job", "instance", "protocol", "up"}
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", ())


def _queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", ())]
    variables = dashboard["templating"]["list"]
    return exprs + [v["query"]["query"] for v in variables if v["type"] == "query"]


def _names(query: str) -> set[str]:
    """The identifiers in a query, label values, `$variables` and `[ranges]` left out."""
    stripped = re.sub(r'"[^"]*"|\$\w+|\[[^\]]*\]', " ", query)
    return set(NAME.findall(stripped))


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    names = {v["name"] for v in dashboard["templating"]["list"]}
    used = set(re.findall(r"\$(\w+)", json.dumps(dashboard))) - {"__rate_interval", "__all"}
    assert used <= names


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    env = gateway_env(tmp_path, "tests.deploy.metrics_settings")
    command = [sys.executable, "-m", "gateway", "run", "tests.deploy.metrics_app:application"]
    process = spawn(tmp_path, "--port", "0", "--log-format", "json", env=env, command=command)
    try:
        assert wait_ready(process), process.stderr()
        yield process
    finally:
        process.kill()


def _scrape(process: GatewayProcess) -> str:
    with urllib.request.urlopen(f"{process.http_url}/-/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
    return text


def _scrape_until(process: GatewayProcess, wanted: str) -> str:
    deadline = time.monotonic() + 20
    while wanted not in (text := _scrape(process)):
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    return text


def test_the_dashboard_queries_only_metrics_a_running_gateway_exports(
    gateway: GatewayProcess,
) -> None:
    host, port = gateway.listeners["mqtt"].rsplit("//", 1)[-1].rsplit(":", 1)
    topic = "devices/d1/telemetry"
    for payload in (b"21", b"fail"):
        paho.mqtt.publish.single(topic, payload, qos=1, hostname=host, port=int(port))
    text = _scrape_until(gateway, 'gateway_events_dead_lettered_total{protocol="mqtt"} 1')
    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    exported |= {found[0] for line in text.splitlines() if (found := NAME.match(line))}
    dashboard = json.loads(DASHBOARD.read_text())
    queried = set().union(*(_names(query) for query in _queries(dashboard))) - PROMQL_WORDS
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, sorted(queried - exported)
    assert {"gateway_in_flight", "gateway_events_received_total"} <= queried

    lines = [json.loads(line) for line in gateway.stderr().splitlines() if line.startswith("{")]
    about_events = [line for line in lines if line["logger"] == "tests.deploy.app"]
    assert len(about_events) == 3  # one handled, one failed twice
    assert {(line["protocol"], line["key"]) for line in about_events} == {
        ("mqtt", "devices/d1/telemetry")
    }


def test_the_check_finds_a_metric_name_in_a_query() -> None:
    query = 'sum by (protocol) (rate(gateway_nope_total{protocol=~"$protocol"}[$__rate_interval]))'
    assert _names(query) - PROMQL_WORDS == {"gateway_nope_total"}
