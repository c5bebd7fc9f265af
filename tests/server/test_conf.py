from __future__ import annotations

from typing import Any

from django.test import override_settings

from django_app.deadletters import store_dead_letter
from gateway.conf import DEFAULTS, GatewaySettings, Problem, gateway_settings
from gateway.conf_checks import validate

LINE_ADAPTER = "tests.server.line_adapter.LineAdapter"


def messages(problems: list[Problem]) -> list[str]:
    return [problem.message for problem in problems]


def test_defaults() -> None:
    settings = GatewaySettings({})
    http = settings.http
    assert (http.enabled, http.host, http.port, http.root_path) == (True, "127.0.0.1", 8000, "")
    assert (http.proxy_headers, http.forwarded_allow_ips) == (False, "127.0.0.1")
    assert (http.ws_max_size, http.ws_ping_interval, http.ws_ping_timeout) == (1048576, 20.0, 20.0)
    assert (http.backlog, http.limit_concurrency) == (2048, None)
    assert (settings.health_path, settings.metrics_path) == ("/-/health", "/-/metrics")
    assert settings.shutdown_timeout == 10.0
    assert settings.loop == "auto"
    assert settings.adapters == []
    assert settings.dead_letter_handler() is store_dead_letter
    assert validate({}) == []


def test_http_is_merged_key_by_key_and_defaults_stay_untouched() -> None:
    settings = GatewaySettings({"HTTP": {"PORT": 9000}, "HEALTH_PATH": None})
    assert settings.http.port == 9000
    assert settings.http.host == "127.0.0.1"
    assert settings.health_path is None
    assert DEFAULTS["HTTP"]["PORT"] == 8000


def test_adapters_get_their_defaults() -> None:
    settings = GatewaySettings({"ADAPTERS": {"lines": {"BACKEND": LINE_ADAPTER}}})
    [adapter] = settings.adapters
    assert (adapter.name, adapter.backend, adapter.enabled) == ("lines", LINE_ADAPTER, True)
    assert dict(adapter.options) == {}


def test_every_bad_key_is_reported_at_once_with_its_name() -> None:
    bad: dict[str, Any] = {
        "HTTP": {
            "PORT": "abc",
            "HOST": "",
            "ENABLED": "yes",
            "WS_MAX_SIZE": 0,
            "WS_PING_INTERVAL": -1,
            "ROOT_PATH": "api",
            "BACKLOG": True,
            "LIMIT_CONCURRENCY": 0,
            "SYNC_THREADS": 0,
            "SYNC_THREADS_BUSY": 2.5,
            "FORWARDED_ALLOW_IPS": 5,
            "PROT": 1,
        },
        "HEALTH_PATH": "health",
        "SHUTDOWN_TIMEOUT": "ten",
        "LOOP": "trio",
        "SWITCH_INTERVAL": 0,
        "LOOP_SHARE": 1.5,
        "DEAD_LETTER_HANDLER": "no.such.module.handler",
        "shutdown_timeout": 3,
    }
    found = messages(validate(bad))
    expected = [
        """GATEWAY["HTTP"]["PORT"] must be an integer 0-65535, got 'abc'""",
        """GATEWAY["HTTP"]["HOST"] must be a host name or IP address, got ''""",
        """GATEWAY["HTTP"]["ENABLED"] must be True or False, got 'yes'""",
        """GATEWAY["HTTP"]["WS_MAX_SIZE"] must be a positive integer, got 0""",
        'GATEWAY["HTTP"]["WS_PING_INTERVAL"] must be a positive number of seconds or None, got -1',
        """GATEWAY["HTTP"]["ROOT_PATH"] must be "" or a path starting with "/", got 'api'""",
        """GATEWAY["HTTP"]["BACKLOG"] must be a positive integer, got True""",
        """GATEWAY["HTTP"]["LIMIT_CONCURRENCY"] must be a positive integer or None, got 0""",
        """GATEWAY["HTTP"]["SYNC_THREADS"] must be a positive integer or None, got 0""",
        """GATEWAY["HTTP"]["SYNC_THREADS_BUSY"] must be a positive integer or None, got 2.5""",
        'GATEWAY["HTTP"]["FORWARDED_ALLOW_IPS"] must be a comma-separated string or a list of'
        " addresses, got 5",
        """GATEWAY["HTTP"]["PROT"] is not a known key""",
        """GATEWAY["HEALTH_PATH"] must be a path starting with "/" or None, got 'health'""",
        """GATEWAY["SHUTDOWN_TIMEOUT"] must be a number of seconds >= 0, got 'ten'""",
        """GATEWAY["LOOP"] must be one of "auto", "asyncio", "uvloop", got 'trio'""",
        'GATEWAY["SWITCH_INTERVAL"] must be a number of seconds above 0 and at most 1, or None,'
        " got 0",
        'GATEWAY["LOOP_SHARE"] must be a number above 0 and at most 1 (1: heavy steps back to'
        " back), got 1.5",
        """GATEWAY["shutdown_timeout"] is not a known key""",
    ]
    for message in expected:
        assert message in found
    assert any(
        m.startswith("""GATEWAY["DEAD_LETTER_HANDLER"] 'no.such.module.handler' cannot""")
        for m in found
    )
    assert len(found) == len(expected) + 1


def test_unknown_keys_get_a_hint() -> None:
    [lowercase, typo] = validate({"HTTP": {"PROT": 1}, "http": {}})
    assert typo.id == "gateway.E001"
    assert typo.setting == 'GATEWAY["HTTP"]["PROT"]'
    assert str(typo.hint).startswith('Did you mean "PORT"? Known keys: ENABLED, HOST, PORT,')
    assert str(lowercase.hint).startswith('Did you mean "HTTP"?')


def test_gateway_and_its_dicts_must_be_dicts() -> None:
    assert messages(validate(["HTTP"])) == ["GATEWAY must be a dict, got ['HTTP']"]
    assert messages(validate({"HTTP": 8000, "ADAPTERS": []})) == [
        'GATEWAY["HTTP"] must be a dict, got 8000',
        'GATEWAY["ADAPTERS"] must be a dict of name -> adapter, got []',
    ]


def test_health_and_metrics_paths_must_differ() -> None:
    found = messages(validate({"METRICS_PATH": "/-/health"}))
    assert found == [
        """GATEWAY["METRICS_PATH"] must differ from GATEWAY["HEALTH_PATH"] ('/-/health')"""
    ]


def test_adapter_problems_name_the_adapter() -> None:
    adapters = {
        "missing": {"OPTIONS": {}},
        "unimportable": {"BACKEND": "no.such.Adapter"},
        "not_adapter": {"BACKEND": "gateway.conf.GatewaySettings"},
        "bad_options": {"BACKEND": LINE_ADAPTER, "OPTIONS": {"PORT": "x", "COLOUR": 1}},
        "bad_entry": {"BACKEND": LINE_ADAPTER, "ENABLED": "no", "EXTRA": 1},
        "not_a_dict": "tests.server.line_adapter.LineAdapter",
    }
    problems = validate({"ADAPTERS": adapters})
    by_setting = {(p.setting, p.id) for p in problems}
    assert by_setting == {
        ('GATEWAY["ADAPTERS"]["missing"]', "gateway.E002"),
        ('GATEWAY["ADAPTERS"]["unimportable"]["BACKEND"]', "gateway.E003"),
        ('GATEWAY["ADAPTERS"]["not_adapter"]["BACKEND"]', "gateway.E004"),
        ('GATEWAY["ADAPTERS"]["bad_options"]["OPTIONS"]', "gateway.E005"),
        ('GATEWAY["ADAPTERS"]["bad_entry"]["ENABLED"]', "gateway.E002"),
        ('GATEWAY["ADAPTERS"]["bad_entry"]["EXTRA"]', "gateway.E001"),
        ('GATEWAY["ADAPTERS"]["not_a_dict"]', "gateway.E002"),
    }
    options = [p.message for p in problems if p.id == "gateway.E005"]
    assert options == [
        """GATEWAY["ADAPTERS"]["bad_options"]["OPTIONS"] unknown option 'COLOUR'""",
        'GATEWAY["ADAPTERS"]["bad_options"]["OPTIONS"] PORT must be an integer 0-65535, got \'x\'',
    ]
    assert all(p.message.startswith(p.setting) for p in problems)


def test_adapter_keys_are_named_once() -> None:
    # An adapter says OPTIONS["QOS"]; the check used to print that after the adapter's path.
    mqtt = {"BACKEND": "protocol_adapters.mqtt.EmbeddedBroker", "OPTIONS": {"QOS": 3}}
    [problem] = validate({"ADAPTERS": {"mqtt": mqtt}})
    assert (
        problem.message == 'GATEWAY["ADAPTERS"]["mqtt"]["OPTIONS"]["QOS"] must be 0, 1 or 2, got 3'
    )


def test_disabled_adapters_are_not_imported() -> None:
    assert validate({"ADAPTERS": {"off": {"BACKEND": "no.such.Adapter", "ENABLED": False}}}) == []


def test_gateway_settings_are_read_lazily_and_again_after_an_override() -> None:
    assert gateway_settings.http.port == 8000
    with override_settings(GATEWAY={"HTTP": {"PORT": 9123}, "SHUTDOWN_TIMEOUT": 1}):
        assert gateway_settings.http.port == 9123
        assert gateway_settings.shutdown_timeout == 1.0
    assert gateway_settings.http.port == 8000
