"""What the gateway sends Mosquitto's dynamic security for one device (no broker needed)."""

from __future__ import annotations

from typing import Any

from django_app.checks import check_gateway_setting
from gateway.broker_access import DeviceAccess, password_fingerprint
from protocol_adapters.mqtt.dynsec import MosquittoDynsec
from protocol_adapters.mqtt.dynsec_plan import BrokerClient, acls, marker, plan

PREFIX = "gateway-device-"
DEFAULT = ("devices/{device_id}/#",)
PRINT = password_fingerprint("pbkdf2_sha256$1$salt$hash")
ROLE = acls(DEFAULT, "pump-1")


def in_step(**changes: object) -> BrokerClient:
    values: dict[str, object] = {
        "username": "pump-1",
        "roles": ("gateway-device-pump-1",),
        "description": marker(PRINT),
    }
    return BrokerClient(**{**values, **changes})  # type: ignore[arg-type]


def test_a_device_in_step_needs_nothing() -> None:
    device = DeviceAccess("pump-1", enabled=True, fingerprint=PRINT)
    assert plan(device, DEFAULT, PREFIX, in_step(), ROLE).commands == []


def test_the_default_acl_names_the_device() -> None:
    assert acls(DEFAULT, "pump-1") == [
        ("publishClientSend", "devices/pump-1/#", 0, True),
        ("subscribePattern", "devices/pump-1/#", 0, True),
    ]


def test_a_leading_wildcard_keeps_dollar_topics_out() -> None:
    entries = acls(("+/alarm",), "pump-1") or []
    assert ("subscribePattern", "$SYS/#", 1, False) in entries
    assert ("subscribePattern", "$CONTROL/#", 1, False) in entries


def test_an_id_that_cannot_be_in_a_topic_is_refused() -> None:
    device = DeviceAccess("a/b", enabled=True, fingerprint=PRINT)
    assert plan(device, DEFAULT, PREFIX, None, None).outcome == "invalid"


def test_a_new_device_with_its_password_is_created_enabled() -> None:
    device = DeviceAccess("pump-1", enabled=True, fingerprint=PRINT, password="s3cret")
    result = plan(device, DEFAULT, PREFIX, None, None)
    assert [c["command"] for c in result.commands] == ["createRole", "createClient"]
    assert result.commands[1]["password"] == "s3cret"
    assert result.commands[1]["textdescription"] == marker(PRINT)


def test_a_new_device_without_its_password_is_created_disabled() -> None:
    device = DeviceAccess("pump-1", enabled=True, fingerprint=PRINT)
    result = plan(device, DEFAULT, PREFIX, None, None)
    assert [c["command"] for c in result.commands] == [
        "createRole", "createClient", "disableClient"
    ]  # fmt: skip
    assert "password" not in result.commands[1]
    assert result.without_password


def test_a_stale_password_disables_the_client() -> None:
    device = DeviceAccess("pump-1", enabled=True, fingerprint=password_fingerprint("other"))
    result = plan(device, DEFAULT, PREFIX, in_step(), ROLE)
    assert result.commands == [{"command": "disableClient", "username": "pump-1"}]
    assert result.outcome == "disabled"
    assert result.without_password


def test_a_client_the_gateway_did_not_make_is_left_alone() -> None:
    device = DeviceAccess("admin", enabled=True, fingerprint=PRINT)
    result = plan(device, DEFAULT, PREFIX, BrokerClient("admin", ("admin",)), None)
    assert (result.commands, result.outcome) == ([], "conflict")


def test_a_deleted_device_loses_client_and_role() -> None:
    result = plan(DeviceAccess("pump-1", exists=False), DEFAULT, PREFIX, in_step(), ROLE)
    assert result.commands == [
        {"command": "deleteClient", "username": "pump-1"},
        {"command": "deleteRole", "rolename": "gateway-device-pump-1"},
    ]


def test_bad_options_are_named() -> None:
    problems = MosquittoDynsec.check_options(
        {"URL": "http://broker", "ACL": ["a/#/b"], "TIMEOUT": 0, "SYNC": True}
    )
    assert problems == [
        "OPTIONS[\"URL\"] must be mqtt://[user:password@]host[:port], got 'http://broker'",
        "OPTIONS[\"ACL\"] must be a list of topic filters (MQTT topic filter 'a/#/b': '#' must be "
        "a whole level and the last one), got ['a/#/b']",
        'OPTIONS["TIMEOUT"] must be a positive number, got 0',
        'OPTIONS["SYNC"] is not a known key',
    ]


def test_the_system_check_reports_them_under_the_adapters_setting(settings: Any) -> None:
    settings.GATEWAY = {
        "ADAPTERS": {
            "dynsec": {"BACKEND": "protocol_adapters.mqtt.MosquittoDynsec",
                       "OPTIONS": {"ROLE_PREFIX": ""}},
            "emqx": {"BACKEND": "protocol_adapters.mqtt.EmqxAuth", "OPTIONS": {}},
        }
    }  # fmt: skip
    errors = check_gateway_setting()
    assert [(e.id, e.msg) for e in errors] == [
        ("gateway.E005", 'GATEWAY["ADAPTERS"]["dynsec"]["OPTIONS"]["ROLE_PREFIX"] must be a '
                         "non-empty str, got ''"),
        ("gateway.E005", 'GATEWAY["ADAPTERS"]["emqx"]["OPTIONS"]["SECRET"] is required '
                         "(use the environment)"),
    ]  # fmt: skip
