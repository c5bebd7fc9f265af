"""The SMTP adapter's OPTIONS: every mistake once, naming its key; the old TLS keys still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol_adapters.smtp import SMTPAdapter
from protocol_adapters.smtp_options import SMTP_OPTIONS


@pytest.fixture
def pem(tmp_path: Path) -> tuple[str, str]:
    """Two files where the TLS check wants readable PEM files (it looks no further)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    return str(cert), str(key)


def test_good_options_have_no_problem(pem: tuple[str, str]) -> None:
    tls = {"CERT_FILE": pem[0], "KEY_FILE": pem[1]}
    assert SMTPAdapter.check_options({"PORT": 0, "AUTH_USERS": {"relay": "pw"}}) == []
    assert SMTPAdapter.check_options({"TLS": tls, "REQUIRE_STARTTLS": True}) == []
    assert SMTPAdapter.check_options({"TLS": None}) == []
    assert SMTP_OPTIONS.parse({"TLS": tls})["TLS"] == tls
    assert SMTP_OPTIONS.parse({})["TLS"] is None


def test_check_options_reports_every_mistake() -> None:
    errors = SMTPAdapter.check_options(
        {
            "PORT": 70000,
            "DATA_SIZE_LIMIT": 0,
            "TLS": {"CERT_FILE": "/x.pem"},
            "AUTH_REQUIRED": True,
            "STORE": 3,
            "PROT": 1,
        }
    )
    assert errors == [
        'OPTIONS["PORT"] must be an integer 0-65535, got 70000',
        'OPTIONS["DATA_SIZE_LIMIT"] must be a positive integer, got 0',
        'OPTIONS["TLS"]["CERT_FILE"] must be the path of a readable PEM file, got \'/x.pem\'',
        'OPTIONS["TLS"]["KEY_FILE"] is missing',
        'OPTIONS["STORE"] must be None, True, False or a dotted path to a class, got 3',
        'OPTIONS["PROT"] is not a known key',
        'OPTIONS["AUTH_REQUIRED"] is True but OPTIONS["AUTH_USERS"] is empty: nobody could send',
    ]


def test_secrets_are_not_repeated_in_messages() -> None:
    [problem] = SMTPAdapter.check_options({"AUTH_USERS": {"relay": 12345}})
    assert problem == 'OPTIONS["AUTH_USERS"] must be a dict of login -> password (str), or None'


def test_a_store_that_cannot_be_imported_is_named_once() -> None:
    [problem] = SMTPAdapter.check_options({"STORE": "no.such.Store"})
    assert problem.startswith("OPTIONS[\"STORE\"] cannot import 'no.such.Store'")


def test_old_tls_keys_work_for_one_release_with_a_warning(pem: tuple[str, str]) -> None:
    cert, key = pem
    old = {"TLS_CERT": cert, "TLS_KEY": key}
    assert SMTPAdapter.check_options(old) == []
    with pytest.warns(DeprecationWarning, match="is deprecated") as caught:
        values = SMTP_OPTIONS.parse(old)
    said = {str(warning.message).split(" is deprecated")[0] for warning in caught}
    assert said == {'OPTIONS["TLS_CERT"]', 'OPTIONS["TLS_KEY"]'}
    assert values["TLS"] == {"CERT_FILE": cert, "KEY_FILE": key}
    # None was their default: both None is still STARTTLS off, and no problem.
    off = {"TLS_CERT": None, "TLS_KEY": None}
    assert SMTPAdapter.check_options(off) == []
    with pytest.warns(DeprecationWarning, match=r'OPTIONS\["TLS_(CERT|KEY)"\] is deprecated'):
        assert SMTP_OPTIONS.parse(off)["TLS"] is None


def test_old_tls_keys_are_reported_under_tls(pem: tuple[str, str]) -> None:
    cert, _ = pem
    assert SMTPAdapter.check_options({"TLS_CERT": cert}) == [
        'OPTIONS["TLS"]["KEY_FILE"] is missing'
    ]
    assert SMTPAdapter.check_options({"TLS_CERT": cert, "TLS_KEY": "/no/key.pem"}) == [
        'OPTIONS["TLS"]["KEY_FILE"] must be the path of a readable PEM file, got \'/no/key.pem\''
    ]
    both = {"TLS_CERT": cert, "TLS": {"CERT_FILE": cert, "KEY_FILE": pem[1]}}
    assert SMTPAdapter.check_options(both) == [
        'OPTIONS["TLS_CERT"] is the old name of OPTIONS["TLS"]: set one of them'
    ]
