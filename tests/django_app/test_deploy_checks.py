"""``manage.py check --deploy``: the gateway's warnings for risky production settings."""

from __future__ import annotations

from io import StringIO
from typing import Any

from django.core import checks
from django.core.management import call_command
from django.test import override_settings

MQTT = "protocol_adapters.mqtt.EmbeddedBroker"
SMTP = "protocol_adapters.smtp.SMTPAdapter"
SMS = "protocol_adapters.twilio_sms.TwilioSmsAdapter"


def gateway_warnings(**gateway: Any) -> dict[str, str]:
    """id -> message of the gateway's deploy warnings for a GATEWAY setting."""
    with override_settings(GATEWAY=gateway):
        found = checks.run_checks(include_deployment_checks=True, tags=["gateway"])
    return {message.id or "": message.msg for message in found}


SCRAPER_ONLY = {"ALLOW": ["10.0.0.9"]}  # metrics for the Prometheus server only (W107)


def risky(**adapters: Any) -> dict[str, Any]:
    return {"HTTP": {"HOST": "0.0.0.0"}, "METRICS_ACCESS": SCRAPER_ONLY, "ADAPTERS": adapters}


def test_safe_production_settings_raise_no_gateway_warning() -> None:
    safe = {
        "HTTP": {"HOST": "0.0.0.0", "PROXY_HEADERS": True, "FORWARDED_ALLOW_IPS": "10.0.0.2"},
        "METRICS_ACCESS": SCRAPER_ONLY,
        "ADAPTERS": {
            "mqtt": {"BACKEND": MQTT, "OPTIONS": {"HOST": "0.0.0.0"}},
            "smtp": {"BACKEND": SMTP, "OPTIONS": {"HOST": "0.0.0.0"}},
            "sms": {"BACKEND": SMS, "OPTIONS": {"AUTH_TOKEN": "t"}},
        },
    }
    with override_settings(DEBUG=False):
        assert gateway_warnings(**safe) == {}


def test_debug_with_public_listeners() -> None:
    gateway = risky(mqtt={"BACKEND": MQTT, "OPTIONS": {"HOST": "0.0.0.0"}})
    with override_settings(DEBUG=True):
        message = gateway_warnings(**gateway)["gateway.W101"]
        assert 'GATEWAY["HTTP"]["HOST"] \'0.0.0.0\'' in message
        assert 'GATEWAY["ADAPTERS"]["mqtt"]["OPTIONS"]["HOST"] \'0.0.0.0\'' in message
        local = {"HTTP": {"HOST": "127.0.0.1"}, "ADAPTERS": {}}
        assert "gateway.W101" not in gateway_warnings(**local)


def test_proxy_headers_without_the_proxies_addresses() -> None:
    unset = gateway_warnings(HTTP={"PROXY_HEADERS": True})
    assert "FORWARDED_ALLOW_IPS is not set" in unset["gateway.W102"]
    anyone = gateway_warnings(HTTP={"PROXY_HEADERS": True, "FORWARDED_ALLOW_IPS": "*"})
    assert "any client can set its own address" in anyone["gateway.W102"]


def test_a_public_smtp_port_with_big_messages_or_passwords_in_clear() -> None:
    options = {"HOST": "0.0.0.0", "DATA_SIZE_LIMIT": 200 * 1024 * 1024}
    options |= {"AUTH_USERS": {"app": "secret"}, "AUTH_REQUIRE_TLS": False}
    found = gateway_warnings(**risky(smtp={"BACKEND": SMTP, "OPTIONS": options}))
    assert found["gateway.W103"].startswith('GATEWAY["ADAPTERS"]["smtp"]: OPTIONS["DATA_SIZE')
    assert "in clear" in found["gateway.W106"]
    loopback = {**options, "HOST": "127.0.0.1"}
    assert gateway_warnings(**risky(smtp={"BACKEND": SMTP, "OPTIONS": loopback})) == {}


def test_metrics_open_on_a_public_address() -> None:
    found = gateway_warnings(HTTP={"HOST": "0.0.0.0"})
    assert found["gateway.W107"] == (
        "GATEWAY[\"METRICS_PATH\"] '/-/metrics' answers anyone on the public address '0.0.0.0':"
        " event counts and load are readable from outside."
    )
    for guarded in ({"BEARER_TOKEN": "t"}, {"BASIC_USERS": {"prom": "pw"}}, SCRAPER_ONLY):
        assert gateway_warnings(HTTP={"HOST": "0.0.0.0"}, METRICS_ACCESS=guarded) == {}
    assert gateway_warnings(HTTP={"HOST": "0.0.0.0"}, METRICS_PATH=None) == {}
    assert gateway_warnings(HTTP={"HOST": "127.0.0.1"}) == {}


def test_twilio_without_auth_token() -> None:
    found = gateway_warnings(**risky(sms={"BACKEND": SMS, "OPTIONS": {}}))
    assert "refuses every request" in found["gateway.W104"]


def test_an_anonymous_broker_on_a_public_address() -> None:
    options = {"HOST": "::", "AUTH": "anonymous"}
    found = gateway_warnings(**risky(mqtt={"BACKEND": MQTT, "OPTIONS": options}))
    assert '"anonymous" on the public address' in found["gateway.W105"]
    local = {"HOST": "::1", "AUTH": "anonymous"}
    assert gateway_warnings(**risky(mqtt={"BACKEND": MQTT, "OPTIONS": local})) == {}


def test_disabled_adapters_and_plain_check_raise_nothing() -> None:
    options = {"HOST": "0.0.0.0", "AUTH": "anonymous"}
    off = risky(mqtt={"BACKEND": MQTT, "ENABLED": False, "OPTIONS": options})
    assert gateway_warnings(**off) == {}
    with override_settings(GATEWAY=risky(mqtt={"BACKEND": MQTT, "OPTIONS": options})):
        found = checks.run_checks(tags=["gateway"])
    assert found == []


def test_manage_py_check_deploy_prints_them() -> None:
    out = StringIO()
    gateway = risky(mqtt={"BACKEND": MQTT, "OPTIONS": {"HOST": "0.0.0.0", "AUTH": "anonymous"}})
    with override_settings(GATEWAY=gateway):
        call_command("check", "--deploy", "--tag", "gateway", stdout=out, stderr=out)
    assert "gateway.W105" in out.getvalue()
    assert "HINT: Use AUTH" in out.getvalue()
