"""Per-process settings: GATEWAY_ADAPTERS__<ADAPTER>__<OPTION> and `--set ADAPTER.OPTION=VALUE`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.exceptions import ImproperlyConfiguredGateway
from gateway.overrides import apply_overrides, env_name_for

GATEWAY = {
    "ADAPTERS": {
        "smtp": {"BACKEND": "protocol_adapters.smtp.SmtpServer", "OPTIONS": {"PORT": 2525}},
        "broker": {"BACKEND": "protocol_adapters.mqtt.ExternalBroker"},
    }
}


def test_variables_set_options_with_json_values_or_plain_strings() -> None:
    environ = {
        "GATEWAY_ADAPTERS__SMTP__PORT": "2526",
        "GATEWAY_ADAPTERS__BROKER__CLIENT_ID": "gw-2",
        "GATEWAY_ADAPTERS__BROKER__FAILOVER__EXPIRY": "3.5",
        "GATEWAY_OTHER": "ignored",
    }
    result = apply_overrides(GATEWAY, environ)
    assert result["ADAPTERS"]["smtp"]["OPTIONS"] == {"PORT": 2526}
    assert result["ADAPTERS"]["broker"]["OPTIONS"] == {
        "CLIENT_ID": "gw-2",
        "FAILOVER": {"EXPIRY": 3.5},
    }
    assert GATEWAY["ADAPTERS"]["smtp"]["OPTIONS"] == {"PORT": 2525}  # the setting is untouched


def test_an_unknown_adapter_is_an_error_naming_the_variable() -> None:
    with pytest.raises(ImproperlyConfiguredGateway, match="GATEWAY_ADAPTERS__SMPT__PORT"):
        apply_overrides(GATEWAY, {"GATEWAY_ADAPTERS__SMPT__PORT": "2526"})


def test_set_names_the_variable() -> None:
    assert env_name_for("smtp.PORT=2526") == ("GATEWAY_ADAPTERS__SMTP__PORT", "2526")
    assert env_name_for("broker.CLIENT_ID=a=b") == ("GATEWAY_ADAPTERS__BROKER__CLIENT_ID", "a=b")
    for bad in ("smtp.PORT", "PORT=1", "smtp..PORT=1"):
        with pytest.raises(ValueError, match=r"ADAPTER\.OPTION=VALUE"):
            env_name_for(bad)


def test_set_on_the_command_line_sets_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv records the variable as it was (absent), so it is restored after the test.
    monkeypatch.setenv("GATEWAY_ADAPTERS__SMTP__PORT", "before")
    build_parser().parse_args(["run", "app:application", "--set", "smtp.PORT=2526"])
    assert os.environ["GATEWAY_ADAPTERS__SMTP__PORT"] == "2526"


def test_a_malformed_set_is_a_usage_error(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "gateway", "run", "app:application", "--set", "PORT=1"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert "--set: expected ADAPTER.OPTION=VALUE" in done.stderr
