"""The system checks see the settings a process runs with: per-process overrides applied.

``manage.py check`` and the checks ``gateway run`` runs first read GATEWAY_ADAPTERS__...
variables (and ``--set``) like the server does: a bad override is an error naming its
variable, a good one fixes what it overrides, an override of no adapter is gateway.E008.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.checks import CheckMessage
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_app.checks import check_gateway_deploy, check_gateway_setting
from tests.server.process import spawn, wait_ready

WAIT = 60.0
SMTP = "protocol_adapters.smtp.SMTPAdapter"


def gateway(port: object, host: str = "127.0.0.1") -> dict[str, object]:
    return {"ADAPTERS": {"smtp": {"BACKEND": SMTP, "OPTIONS": {"PORT": port, "HOST": host}}}}


def messages(errors: list[CheckMessage]) -> list[tuple[str, str, str]]:
    return [(str(e.id), e.msg, e.hint or "") for e in errors]


@override_settings(GATEWAY=gateway(2525))
def test_a_bad_override_is_an_error_naming_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_gateway_setting() == []
    monkeypatch.setenv("GATEWAY_ADAPTERS__SMTP__PORT", "70000")
    [(code, message, hint)] = messages(check_gateway_setting())
    assert code == "gateway.E005"
    assert 'GATEWAY["ADAPTERS"]["smtp"]["OPTIONS"]["PORT"]' in message
    assert "70000" in message
    assert "GATEWAY_ADAPTERS__SMTP__PORT=70000" in hint


@override_settings(GATEWAY=gateway("not a port"))
def test_a_good_override_is_not_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [code for code, _, _ in messages(check_gateway_setting())] == ["gateway.E005"]
    monkeypatch.setenv("GATEWAY_ADAPTERS__SMTP__PORT", "2526")
    assert check_gateway_setting() == []


@override_settings(GATEWAY=gateway(2525))
def test_an_override_of_no_adapter_is_e008(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADAPTERS__SMPT__PORT", "2526")
    [(code, message, _)] = messages(check_gateway_setting())
    assert code == "gateway.E008"
    assert "GATEWAY_ADAPTERS__SMPT__PORT" in message
    assert check_gateway_deploy() == []  # the error comes first


@override_settings(GATEWAY=gateway(2525), DEBUG=False)
def test_deploy_checks_see_an_overridden_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADAPTERS__SMTP__DATA_SIZE_LIMIT", str(100 * 1024 * 1024))
    assert check_gateway_deploy() == []  # a big limit on a loopback address is no risk
    monkeypatch.setenv("GATEWAY_ADAPTERS__SMTP__HOST", "0.0.0.0")
    assert [w.id for w in check_gateway_deploy()] == ["gateway.W103"]


@override_settings(GATEWAY=gateway(2525))
def test_manage_py_check_fails_on_a_bad_override(monkeypatch: pytest.MonkeyPatch) -> None:
    call_command("check", stdout=io.StringIO())
    monkeypatch.setenv("GATEWAY_ADAPTERS__SMTP__PORT", "70000")
    with pytest.raises(SystemCheckError, match="GATEWAY_ADAPTERS__SMTP__PORT=70000"):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


def test_gateway_run_checks_its_set_options_before_listening(tmp_path: Path) -> None:
    process = spawn(tmp_path, "--set", "lines.PORT=70000")
    try:
        assert not wait_ready(process)
        assert process.proc.wait(WAIT) == 1
    finally:
        process.kill()
    stderr = process.stderr()
    assert 'GATEWAY["ADAPTERS"]["lines"]["OPTIONS"]' in stderr
    assert "PORT must be an integer 0-65535, got 70000" in stderr
    assert "GATEWAY_ADAPTERS__LINES__PORT=70000" in stderr
