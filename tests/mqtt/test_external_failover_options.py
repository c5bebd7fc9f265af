"""The FAILOVER option of the external-broker adapter: checked at start-up, parsed once."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.exceptions import ImproperlyConfiguredGateway
from protocol_adapters.mqtt._compat_gmqtt import Client
from protocol_adapters.mqtt.external_failover import SessionFailover
from protocol_adapters.mqtt.external_options import (
    ExternalOptions,
    FailoverOptions,
    check_external_options,
)

PERSISTENT = {"CLIENT_ID": "gw-1", "CLEAN_START": False, "SESSION_EXPIRY": 3600}


def test_failover_is_off_by_default_and_parsed_when_given() -> None:
    assert ExternalOptions.from_options(PERSISTENT).failover is None
    options = ExternalOptions.from_options(PERSISTENT | {"FAILOVER": {"EXPIRY": 3}})
    assert options.failover == FailoverOptions(heartbeat=1.0, expiry=3.0, quiet=0.5)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"FAILOVER": {}, "CLEAN_START": True}, "needs persistent sessions"),
        ({"FAILOVER": {}, "SESSION_EXPIRY": 0}, "needs persistent sessions"),
        ({"FAILOVER": {"EXPIRY": 0}}, '["EXPIRY"] must be a positive number'),
        ({"FAILOVER": {"HEARTBEAT": 5, "EXPIRY": 2}}, "shorter than"),
        ({"FAILOVER": {"TTL": 5}}, '["TTL"] is not an option'),
        ({"FAILOVER": 5}, "must be None or a dict"),
    ],
)
def test_failover_problems_name_the_option(options: dict[str, Any], problem: str) -> None:
    errors = check_external_options(PERSISTENT | options)
    assert any("FAILOVER" in error and problem in error for error in errors), errors


def test_failover_without_a_redis_layer_fails_at_start_naming_the_option() -> None:
    async def connect(client_id: str, clean: bool) -> Client:
        raise AssertionError("never called")

    # tests.settings: CHANNEL_LAYERS["default"] is the in-memory layer, which no other
    # process can read a heartbeat from.
    with pytest.raises(ImproperlyConfiguredGateway, match=r'\["FAILOVER"\] needs a Redis'):
        SessionFailover("broker", "gw-1", FailoverOptions(), connect, list)
