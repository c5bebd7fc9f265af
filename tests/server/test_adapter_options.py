"""gateway.options: one way to declare, check and parse an adapter's OPTIONS."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.options import (
    Option,
    OptionSet,
    ReconnectPolicy,
    positive_int,
    reconnect_option,
    retry_option,
    tls_option,
)
from gateway.pipeline import RetryPolicy

OPTIONS = OptionSet(
    Option("SIZE", 10, positive_int, renamed_from=("MAX_SIZE",)),
    retry_option(),
    reconnect_option(1.0, 60.0),
    tls_option("CERT_FILE", "KEY_FILE", required=("CERT_FILE",)),
)


def test_defaults_are_parsed_into_what_the_adapter_uses() -> None:
    values = OPTIONS.parse({})
    assert values["SIZE"] == 10
    assert values["RETRY"] == RetryPolicy(3, 0.5, 30.0)
    assert values["RECONNECT"] == ReconnectPolicy(1.0, 60.0)
    assert values["TLS"] is None
    assert OPTIONS.parse({"RETRY": {"ATTEMPTS": 1}})["RETRY"] == RetryPolicy(1, 0.5, 30.0)


def test_every_problem_once_naming_its_key(tmp_path: Path) -> None:
    problems = OPTIONS.check(
        {
            "SIZE": 0,
            "RETRY": {"ATTEMPTS": 0, "TRIES": 1},
            "RECONNECT": [],
            "TLS": {"KEY_FILE": str(tmp_path / "missing.pem")},
            "COLOUR": "red",
        }
    )
    assert problems == [
        'OPTIONS["SIZE"] must be a positive integer, got 0',
        'OPTIONS["RETRY"]["TRIES"] is not a known key',
        'OPTIONS["RETRY"]["ATTEMPTS"] must be an integer >= 1, got 0',
        'OPTIONS["RECONNECT"] must be a dict with INITIAL, MAX, got []',
        'OPTIONS["TLS"]["CERT_FILE"] is missing',
        f'OPTIONS["TLS"]["KEY_FILE"] must be the path of a readable PEM file, '
        f"got {str(tmp_path / 'missing.pem')!r}",
        'OPTIONS["TLS"]["KEY_FILE"] needs ["CERT_FILE"]',
        'OPTIONS["COLOUR"] is not a known key',
    ]


def test_a_renamed_key_works_with_a_warning() -> None:
    assert OPTIONS.check({"MAX_SIZE": 5}) == []
    with pytest.warns(DeprecationWarning, match=r'OPTIONS\["MAX_SIZE"\] is deprecated'):
        assert OPTIONS.parse({"MAX_SIZE": 5})["SIZE"] == 5
    assert OPTIONS.check({"MAX_SIZE": 5, "SIZE": 5}) == [
        'OPTIONS["MAX_SIZE"] is the old name of OPTIONS["SIZE"]: set one of them'
    ]
