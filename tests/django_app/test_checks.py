from __future__ import annotations

from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_app.checks import check_channel_layers, check_gateway_setting


def run_check() -> str:
    out = StringIO()
    call_command("check", stdout=out, stderr=StringIO())
    return out.getvalue()


def check_errors() -> str:
    with pytest.raises(SystemCheckError) as raised:
        run_check()
    return str(raised.value)


def test_the_app_is_labelled_gateway() -> None:
    config = apps.get_app_config("gateway")
    assert config.name == "django_app"
    assert config.verbose_name == "Gateway"


def test_the_test_settings_pass() -> None:
    assert "no issues" in run_check()


@override_settings(
    GATEWAY={
        "HTTP": {"PORT": "abc", "HOST": 1},
        "SHUTDOWN_TIMEOUT": -1,
        "ADAPTERS": {"mqtt": {"BACKEND": "no.such.Adapter"}},
        "LOOPS": "auto",
    }
)
def test_every_gateway_problem_is_an_error_naming_its_setting() -> None:
    report = check_errors()
    assert (
        """(gateway.E002) GATEWAY["HTTP"]["PORT"] must be an integer 0-65535, got 'abc'""" in report
    )
    assert (
        '(gateway.E002) GATEWAY["HTTP"]["HOST"] must be a host name or IP address, got 1' in report
    )
    assert '(gateway.E002) GATEWAY["SHUTDOWN_TIMEOUT"] must be a number of seconds >= 0' in report
    assert (
        """(gateway.E003) GATEWAY["ADAPTERS"]["mqtt"]["BACKEND"] 'no.such.Adapter' cannot"""
        in report
    )
    assert '(gateway.E001) GATEWAY["LOOPS"] is not a known key' in report
    assert 'HINT: Did you mean "LOOP"?' in report
    assert "5 issues" in report


@override_settings(GATEWAY="not a dict")
def test_a_gateway_that_is_no_dict() -> None:
    [error] = check_gateway_setting()
    assert error.id == "gateway.E002"
    assert error.msg == "GATEWAY must be a dict, got 'not a dict'"


@override_settings(
    CHANNEL_LAYERS={
        "default": {"BACKEND": "no.such.Layer"},
        "other": {"CONFIG": {}},
        "third": {"BACKEND": "gateway.conf.GatewaySettings", "CONFIG": []},
        "fourth": "gateway.layers.InMemoryChannelLayer",
    }
)
def test_channel_layer_problems_name_the_alias() -> None:
    found = {(error.id, error.msg) for error in check_channel_layers()}
    assert found == {
        (
            "gateway.E007",
            """CHANNEL_LAYERS['default']["BACKEND"] 'no.such.Layer' cannot be imported:"""
            " No module named 'no'",
        ),
        ("gateway.E006", """CHANNEL_LAYERS['other']["BACKEND"] must be a dotted path, got None"""),
        ("gateway.E006", """CHANNEL_LAYERS['third']["CONFIG"] must be a dict, got []"""),
        (
            "gateway.E007",
            """CHANNEL_LAYERS['third']["BACKEND"] 'gateway.conf.GatewaySettings'"""
            " is not a channel layer",
        ),
        (
            "gateway.E006",
            "CHANNEL_LAYERS['fourth'] must be a dict with a BACKEND,"
            " got 'gateway.layers.InMemoryChannelLayer'",
        ),
    }
    assert "CHANNEL_LAYERS['default']" in check_errors()


@override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}})
def test_channels_backend_paths_are_accepted() -> None:
    assert check_channel_layers() == []


@override_settings(CHANNEL_LAYERS=["default"])
def test_channel_layers_must_be_a_dict() -> None:
    [error] = check_channel_layers()
    assert error.id == "gateway.E006"
    assert error.msg == "CHANNEL_LAYERS must be a dict of alias -> layer, got ['default']"
