"""STARTTLS, AUTH and SMTPUTF8 with smtplib and swaks against a running gateway."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.email.support import TIMEOUT, Inbox, asend, make_app, message, smtp_gateway, wire

pytestmark = pytest.mark.django_db(transaction=True)

USERS = {"relay": "s3cret-pass"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def client_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))  # verifies the certificate and IP


def tls(cert: Path, key: Path) -> dict[str, str]:
    return {"CERT_FILE": str(cert), "KEY_FILE": str(key)}


async def test_starttls_then_auth_then_delivery(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    inbox = Inbox()
    options = {"TLS": tls(cert, key), "AUTH_USERS": USERS}
    raw = wire(message())

    def session(port: int) -> tuple[bool, bool, dict[str, tuple[int, bytes]]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            client.ehlo()
            auth_before_tls = client.has_extn("auth")
            client.starttls(context=client_context(cert))
            client.ehlo()
            auth_after_tls = client.has_extn("auth")
            client.login("relay", "s3cret-pass")
            return (
                auth_before_tls,
                auth_after_tls,
                client.sendmail("a@b.test", ["support@example.com"], raw),
            )

    async with smtp_gateway(make_app(inbox), **options) as port:
        before, after, refused = await asyncio.to_thread(session, port)
    assert (before, after, refused) == (False, True, {})
    [seen] = inbox.seen
    assert seen["scope"]["auth_user"] == "relay"


async def test_require_starttls_refuses_plain_mail(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    options = {"TLS": tls(cert, key), "REQUIRE_STARTTLS": True}
    inbox = Inbox()
    async with smtp_gateway(make_app(inbox), **options) as port:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            await asend(port, wire(message()), ["support@example.com"])
    assert refused.value.smtp_code == 530
    assert inbox.seen == []


async def test_old_tls_keys_still_offer_starttls_with_a_warning(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    inbox = Inbox()

    def session(port: int) -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            client.starttls(context=client_context(cert))
            return client.sendmail("a@b.test", ["support@example.com"], wire(message()))

    old = {"TLS_CERT": str(cert), "TLS_KEY": str(key), "REQUIRE_STARTTLS": True}
    with pytest.warns(DeprecationWarning, match="is deprecated") as caught:
        async with smtp_gateway(make_app(inbox), **old) as port:
            refused = await asyncio.to_thread(session, port)
    said = {str(warning.message).split(" is deprecated")[0] for warning in caught}
    assert said == {'OPTIONS["TLS_CERT"]', 'OPTIONS["TLS_KEY"]'}
    assert refused == {}
    assert len(inbox.seen) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_required_refuses_anonymous_and_wrong_password() -> None:
    inbox = Inbox()
    options = {"AUTH_USERS": USERS, "AUTH_REQUIRED": True, "AUTH_REQUIRE_TLS": False}

    def wrong_password(port: int) -> int:
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            try:
                client.login("relay", "guess")
            except smtplib.SMTPAuthenticationError as exc:
                return exc.smtp_code
        raise AssertionError("a wrong password was accepted")

    async with smtp_gateway(make_app(inbox), **options) as port:
        with pytest.raises(smtplib.SMTPSenderRefused) as anonymous:
            await asend(port, wire(message()), ["support@example.com"])
        assert anonymous.value.smtp_code == 530
        assert await asyncio.to_thread(wrong_password, port) == 535
    assert inbox.seen == []


async def swaks(*args: str) -> tuple[int, str]:
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed")
    process = await asyncio.create_subprocess_exec(
        "swaks", "--server", "127.0.0.1", "--timeout", "30", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    return process.returncode or 0, output.decode("utf-8", "replace")


async def test_swaks_with_auth_login_and_a_refused_recipient() -> None:
    inbox = Inbox()
    options = {"AUTH_USERS": USERS, "AUTH_REQUIRE_TLS": False}
    async with smtp_gateway(make_app(inbox), **options) as port:
        code, output = await swaks(
            "--port", str(port), "--from", "bob@customer.test",
            "--to", "support@example.com,nobody@example.com",
            "--auth", "LOGIN", "--auth-user", "relay", "--auth-password", "s3cret-pass",
            "--header", "Subject: via swaks", "--body", "hello from swaks",
        )  # fmt: skip
    assert "<** 550 5.1.1" in output, output
    assert "235 2.7.0" in output, output
    assert code == 0, output  # delivered to the recipient that was accepted
    [seen] = inbox.seen
    assert seen["subject"] == "via swaks"
    assert (seen["text"] or "").strip() == "hello from swaks"
    assert seen["scope"]["auth_user"] == "relay"


async def test_utf8_addresses_with_smtputf8() -> None:
    inbox = Inbox()
    mail = message(to="jürgen@bücher.example", sender="zoë@kunde.example", subject="Grüße ✓")
    raw = mail.as_bytes(policy=mail.policy.clone(utf8=True, linesep="\r\n"))
    async with smtp_gateway(make_app(inbox)) as port:
        refused = await asend(
            port, raw, ["jürgen@bücher.example"], sender="zoë@kunde.example",
            mail_options=["SMTPUTF8"],
        )  # fmt: skip
    assert refused == {}
    [seen] = inbox.seen
    assert seen["recipient"] == "jürgen@bücher.example"
    assert seen["sender"] == "zoë@kunde.example"
    assert seen["kwargs"] == {"user": "jürgen"}
    assert seen["subject"] == "Grüße ✓"


async def test_swaks_utf8_recipient() -> None:
    inbox = Inbox()
    async with smtp_gateway(make_app(inbox)) as port:
        code, output = await swaks(
            "--port", str(port), "--from", "a@customer.test", "--to", "ünï@bücher.example",
            "--header", "Subject: utf8", "--body", "hi",
        )  # fmt: skip
    assert code == 0, output
    assert [seen["kwargs"] for seen in inbox.seen] == [{"user": "ünï"}]
