"""The COMMANDS and PRESENCE options and their topic patterns."""

from __future__ import annotations

from protocol_adapters.mqtt.device_options import CommandsOptions, PresenceOptions, TopicPattern
from protocol_adapters.mqtt.external_options import ExternalOptions, check_external_options


def test_a_pattern_fills_in_filters_and_reads_back() -> None:
    pattern = TopicPattern("devices/{device_id}/responses/{request_id}")
    assert pattern.fill(device_id="d-1", request_id="abc") == "devices/d-1/responses/abc"
    assert pattern.filter() == "devices/+/responses/+"
    assert pattern.match("devices/d-1/responses/abc") == {"device_id": "d-1", "request_id": "abc"}
    assert pattern.match("devices/d-1/responses") is None
    assert pattern.match("devices//responses/abc") is None
    assert pattern.match("other/d-1/responses/abc") is None
    status = TopicPattern("devices/{device_id}/status")
    assert status.match_prefix("devices/d-1/telemetry/x", "device_id") == "d-1"
    assert status.match_prefix("devices", "device_id") is None
    assert status.match_prefix("sites/d-1/telemetry", "device_id") is None


def test_the_options_default_to_off_and_true_means_the_defaults() -> None:
    off = ExternalOptions.from_options({})
    assert (off.commands, off.presence) == (None, None)
    on = ExternalOptions.from_options({"COMMANDS": True, "PRESENCE": True})
    assert on.commands == CommandsOptions()
    assert on.presence == PresenceOptions()
    custom = ExternalOptions.from_options(
        {"PRESENCE": {"TOPIC": "fleet/{device_id}/avail", "ONLINE": "up", "TIMEOUT": 30}}
    )
    assert custom.presence == PresenceOptions(
        TopicPattern("fleet/{device_id}/avail"), b"up", b"offline", 30.0
    )


def test_bad_options_are_reported_one_sentence_each() -> None:
    errors = check_external_options(
        {
            "COMMANDS": {"TOPIC": "devices/{command}/x/{device_id}", "NOPE": 1},
            "PRESENCE": {"TOPIC": "devices/+/status", "TIMEOUT": -1, "ONLINE": 1},
        }
    )
    assert errors == [
        'OPTIONS["COMMANDS"]["NOPE"] is not a known key',
        'OPTIONS["COMMANDS"]["TOPIC"] must be a topic pattern whose {command} is the last level,'
        " got 'devices/{command}/x/{device_id}'",
        'OPTIONS["PRESENCE"]["TOPIC"] must be a topic pattern without wildcards,'
        " got 'devices/+/status'",
        'OPTIONS["PRESENCE"]["ONLINE"] must be a str, got 1',
        'OPTIONS["PRESENCE"]["TIMEOUT"] must be None or a positive number of seconds, got -1',
    ]
    assert check_external_options({"COMMANDS": "yes"}) == [
        'OPTIONS["COMMANDS"] must be None, True or a dict with TOPIC, RESPONSE_TOPIC, STORE,'
        " got 'yes'"
    ]
    assert check_external_options({"PRESENCE": {"TOPIC": "devices/x{device_id}/s"}}) == [
        'OPTIONS["PRESENCE"]["TOPIC"] must be a topic pattern whose placeholders are whole'
        " levels, got 'devices/x{device_id}/s'"
    ]
