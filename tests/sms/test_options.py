from __future__ import annotations

import pytest

from gateway.sms import MemorySmsStore
from protocol_adapters.twilio_sms import TwilioSmsAdapter, twiml


def test_good_options_pass() -> None:
    options = {"AUTH_TOKEN": "t", "PUBLIC_URL": "https://sms.example.com", "DEADLINE": 5}
    assert TwilioSmsAdapter.check_options(options) == []


def test_every_problem_is_named() -> None:
    problems = TwilioSmsAdapter.check_options(
        {"WEBHOOK_PATH": "sms", "DEADLINE": 15, "PUBLIC_URL": "sms.example.com", "TOKEN": "x"}
    )
    text = "\n".join(problems)
    assert 'OPTIONS["TOKEN"] is not a known key' in text
    assert "AUTH_TOKEN" not in text  # unset, webhooks are refused (403); check --deploy says so
    assert 'OPTIONS["WEBHOOK_PATH"] must be a path' in text
    assert 'OPTIONS["DEADLINE"] must be seconds between 0 and 15' in text
    assert 'OPTIONS["PUBLIC_URL"] must be an http(s) URL' in text
    assert len(problems) == 4


def test_old_retry_keys_work_for_one_release_with_a_warning() -> None:
    from protocol_adapters.twilio_rest import TwilioSender

    old = {"AUTH_TOKEN": "t", "ATTEMPTS": 2, "SEND_ATTEMPTS": 5, "SEND_BACKOFF": 0.25}
    assert TwilioSmsAdapter.check_options(old) == []
    with pytest.warns(DeprecationWarning, match="is deprecated") as caught:
        sender = TwilioSender(old, MemorySmsStore())
    said = {str(warning.message).split(" is deprecated")[0] for warning in caught}
    assert said == {'OPTIONS["ATTEMPTS"]', 'OPTIONS["SEND_ATTEMPTS"]', 'OPTIONS["SEND_BACKOFF"]'}
    assert (sender.retry.attempts, sender.retry.initial_backoff) == (5, 0.25)
    assert sender.retry.max_backoff == 5.0  # the default of the new key's other fields
    problems = TwilioSmsAdapter.check_options({"AUTH_TOKEN": "t", "SEND_ATTEMPTS": 0})
    assert problems == ['OPTIONS["SEND_RETRY"]["ATTEMPTS"] must be an integer >= 1, got 0']
    both = TwilioSmsAdapter.check_options({"AUTH_TOKEN": "t", "ATTEMPTS": 1, "RETRY": {}})
    assert both == ['OPTIONS["ATTEMPTS"] is the old name of OPTIONS["RETRY"]: set one of them']


def test_twiml_escapes_text() -> None:
    assert twiml([]).endswith(b"<Response />")
    body = twiml(["a < b & c", "two"])
    assert b"<Message>a &lt; b &amp; c</Message><Message>two</Message>" in body
