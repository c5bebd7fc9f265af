from __future__ import annotations

from protocol_adapters.twilio_sms import TwilioSmsAdapter, twiml


def test_good_options_pass() -> None:
    options = {"AUTH_TOKEN": "t", "PUBLIC_URL": "https://sms.example.com", "DEADLINE": 5}
    assert TwilioSmsAdapter.check_options(options) == []


def test_every_problem_is_named() -> None:
    problems = TwilioSmsAdapter.check_options(
        {"WEBHOOK_PATH": "sms", "DEADLINE": 15, "PUBLIC_URL": "sms.example.com", "TOKEN": "x"}
    )
    text = "\n".join(problems)
    assert "unknown option 'TOKEN'" in text
    assert "AUTH_TOKEN is required" in text
    assert "WEBHOOK_PATH must be a path" in text
    assert "DEADLINE must be seconds between 0 and 15" in text
    assert "PUBLIC_URL must be an http(s) URL" in text
    assert len(problems) == 5


def test_twiml_escapes_text() -> None:
    assert twiml([]).endswith(b"<Response />")
    body = twiml(["a < b & c", "two"])
    assert b"<Message>a &lt; b &amp; c</Message><Message>two</Message>" in body
