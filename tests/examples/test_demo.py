"""The demo, as a person meets it: started like scripts/demo does, seen in a real browser."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect
from twilio.request_validator import RequestValidator
from vonage import Auth
from websockets.asyncio.client import ClientConnection, connect

from tests.integration.support import not_installed
from tests.mqtt.embedded_support import mosquitto_pub

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
TWILIO_TOKEN = "demo-test-twilio-token"
VONAGE_SECRET = "demo-test-vonage-secret"
POSTMARK_AUTH = ("postmark", "demo-test-webhook-password")
BROWSER_WAIT_MS = 15_000


def SENT_MAIL_DIR(factory: pytest.TempPathFactory) -> Path:
    return factory.getbasetemp() / "demo-sent-mail"


pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_listeners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The demo gateway on free ports, with its own SQLite file, readings every 0.2 s."""
    db = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "DEMO_DB": str(db),
        "DEMO_HTTP_PORT": "0",
        "DEMO_MQTT_PORT": str(_free_port()),
        "DEMO_INTERVAL": "0.2",
        "DEMO_SMTP_PORT": "0",
        "DEMO_SENT_MAIL": str(SENT_MAIL_DIR(tmp_path_factory)),
        "DEMO_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "DEMO_VONAGE_SIGNATURE_SECRET": VONAGE_SECRET,
        "DEMO_POSTMARK_WEBHOOK_SECRET": ":".join(POSTMARK_AUTH),
    }
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=DEMO,
        env=env,
        check=True,
    )
    subprocess.run([sys.executable, "manage.py", "ensure_demo_user"], cwd=DEMO, env=env, check=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "demo.asgi:application"],
        cwd=DEMO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield {**_wait_ready(proc), "db": str(db)}
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def demo(demo_listeners: dict[str, str]) -> str:
    """The demo's base URL."""
    return demo_listeners["http"]


@pytest.fixture
def demo_mqtt_port(demo_listeners: dict[str, str]) -> str:
    """The port of the demo's embedded MQTT broker."""
    return demo_listeners["mqtt"].rsplit(":", 1)[1]


def _wait_ready(proc: subprocess.Popen[str]) -> dict[str, str]:
    assert proc.stdout is not None
    listeners: dict[str, str] = {}
    for line in proc.stdout:
        match = re.match(r"gateway: (\S+) listening on (\S+)", line)
        if match:
            listeners[match.group(1)] = match.group(2)
        if line.strip() == "gateway: ready":
            assert "http" in listeners, "the demo printed no http listener"
            assert "mqtt" in listeners, "the demo printed no mqtt listener"
            assert "smtp" in listeners, "the demo printed no smtp listener"
            return listeners
    raise AssertionError("the demo exited before it was ready")


def test_page_and_health(demo: str) -> None:
    page = httpx.get(demo + "/", timeout=10)
    assert page.status_code == 200
    assert "Gateway demo" in page.text
    health = httpx.get(demo + "/-/health", timeout=10).json()
    assert health["status"] == "ok"
    assert health["adapters"]["devices"]["status"] == "ok"  # the embedded MQTT broker
    assert health["adapters"]["simulator"]["status"] == "ok"
    # The simulated devices logged in with their credentials: the page lists them online.
    for n in (1, 2, 3):
        assert re.search(rf'id="device-sensor-{n}">.*?class="online"', page.text, re.S)


async def test_readings_and_notes_over_websocket(demo: str) -> None:
    ws_url = demo.replace("http://", "ws://") + "/ws/dashboard/"
    headers = {"Origin": demo}
    async with (
        connect(ws_url, additional_headers=headers) as one,
        connect(ws_url, additional_headers=headers) as two,
    ):
        assert json.loads(await one.recv())["kind"] == "hello"
        assert json.loads(await two.recv())["kind"] == "hello"
        await one.send(json.dumps({"note": "valve 3 checked"}))
        seen: set[str] = set()
        while not {"valve 3 checked", "reading"} <= seen:
            event = json.loads(await two.recv())
            if event["kind"] == "reading":
                assert event["device"].startswith("sensor-")
                assert isinstance(event["temperature"], float)
            seen.add(event.get("text", event["kind"]))


async def test_a_real_device_reading_reaches_the_dashboard(demo: str, demo_mqtt_port: str) -> None:
    ws_url = demo.replace("http://", "ws://") + "/ws/dashboard/"
    reading = {"temperature": 99.25, "battery": 42, "at": 1.0}
    async with connect(ws_url, additional_headers={"Origin": demo}) as ws:
        assert json.loads(await ws.recv())["kind"] == "hello"
        code, err = await mosquitto_pub(
            int(demo_mqtt_port), "-i", "probe", "-u", "sensor-2", "-P", "demo-device-password",
            "-t", "devices/sensor-2/telemetry", "-m", json.dumps(reading), "-q", "1",
        )  # fmt: skip
        assert code == 0, err
        while True:
            event = json.loads(await ws.recv())
            if event["kind"] == "reading" and event["temperature"] == 99.25:
                break
        assert event == {"kind": "reading", "device": "sensor-2", **reading}


async def test_a_foreign_origin_is_refused(demo: str) -> None:
    ws_url = demo.replace("http://", "ws://") + "/ws/dashboard/"
    with pytest.raises(Exception, match="403"):
        async with connect(ws_url, additional_headers={"Origin": "http://evil.example"}):
            pass


@pytest.fixture
async def chromium_page() -> AsyncIterator[Page]:
    """A tab of the installed Chromium, driven by Playwright (which downloads no browser here)."""
    executable = shutil.which("chromium")
    if executable is None:
        not_installed("chromium is not installed (scripts/test installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable)
        try:
            page = await browser.new_page()
            page.set_default_timeout(BROWSER_WAIT_MS)
            yield page
        finally:
            await browser.close()


async def test_dashboard_in_a_real_browser(demo: str, chromium_page: Page, tmp_path: Path) -> None:
    page = chromium_page
    await page.goto(demo + "/")
    await expect(page.locator("#status")).to_have_text("open", timeout=BROWSER_WAIT_MS)
    rows = page.locator("#devices tr")
    # Every simulated device, each with a live reading.
    await expect(rows.locator("td:nth-child(3)")).to_have_text(
        [re.compile(r"\d")] * 3, timeout=BROWSER_WAIT_MS
    )
    assert await rows.count() == 3
    assert await page.locator("#devices td.online").count() == 3
    await page.locator("#note").fill("hello from the browser")
    await page.locator("#note-form button").click()
    note = page.locator("#messages li.note", has_text="hello from the browser").first
    assert await note.text_content() == "note: hello from the browser"
    shot = Path(os.environ.get("GATEWAY_SCREENSHOT_DIR", tmp_path)) / "demo-dashboard.png"
    await page.screenshot(path=shot)
    assert shot.stat().st_size > 5000


async def _next_of_kind(ws: ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            event: dict[str, Any] = json.loads(await ws.recv())
            if event["kind"] == kind:
                return event


async def test_support_mail_opens_a_ticket(
    demo: str, demo_listeners: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    host, port = demo_listeners["smtp"].rsplit(":", 1)
    mail = EmailMessage()
    mail["From"] = "Ada <ada@customer.example>"
    mail["To"] = "support@demo.example"
    mail["Subject"] = "Sensor 3 reads 80 °C"
    mail.set_content("It has been like that since this morning.")
    ws_url = demo.replace("http://", "ws://") + "/ws/dashboard/"
    async with connect(ws_url, additional_headers={"Origin": demo}) as ws:
        with smtplib.SMTP(host, int(port), timeout=15) as client:
            refused = client.send_message(mail, to_addrs=["support@demo.example"])
            assert refused == {}
            with pytest.raises(smtplib.SMTPRecipientsRefused) as unknown:
                client.send_message(mail, to_addrs=["sales@demo.example"])
        assert unknown.value.recipients["sales@demo.example"][0] == 550
        ticket = await _next_of_kind(ws, "ticket")
    assert ticket["from"] == "ada@customer.example"
    assert ticket["subject"] == "Sensor 3 reads 80 °C"
    assert ticket["excerpt"] == "It has been like that since this morning."
    receipts = list(SENT_MAIL_DIR(tmp_path_factory).glob("*.log"))
    assert len(receipts) == 1
    assert "We opened a ticket for your mail: Sensor 3 reads 80" in receipts[0].read_text()


async def test_a_text_message_is_routed_by_country_and_answered(demo: str) -> None:
    url = demo + "/sms/twilio/"
    form = {"MessageSid": "SMdemo1", "From": "+447700900123", "To": "+15005550006",
            "Body": "STATUS sensor-1", "NumMedia": "0"}  # fmt: skip
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
    ws_url = demo.replace("http://", "ws://") + "/ws/dashboard/"
    async with connect(ws_url, additional_headers={"Origin": demo}) as ws:
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, data=form, headers={"X-Twilio-Signature": signature})
            forged = await client.post(url, data=form, headers={"X-Twilio-Signature": "forged"})
        text = await _next_of_kind(ws, "sms")
    assert answer.status_code == 200
    assert "<Message>sensor-1: online" in answer.text
    assert forged.status_code == 403
    assert text["region"] == "UK"
    assert text["body"] == "STATUS sensor-1"


async def test_a_vonage_text_message_is_routed_by_country(
    demo: str, demo_listeners: dict[str, str]
) -> None:
    url = demo + "/sms/vonage/"
    fields = {"msisdn": "447700900123", "to": "447700900001", "messageId": "V-demo-1",
              "text": "STATUS sensor-1", "timestamp": str(int(time.time()))}  # fmt: skip
    auth = Auth(
        api_key="demo-vonage-key", signature_secret=VONAGE_SECRET, signature_method="sha256"
    )
    signed = {**fields, "sig": auth.sign_params(dict(fields))}
    ws_url = demo.replace("http://", "ws://") + "/ws/dashboard/"
    async with connect(ws_url, additional_headers={"Origin": demo}) as ws:
        async with httpx.AsyncClient() as client:
            answer = await client.get(url, params=signed)
            forged = await client.get(url, params={**signed, "text": "REBOOT sensor-1"})
        text = await _next_of_kind(ws, "sms")
    assert (answer.status_code, forged.status_code) == (204, 403)
    assert text["region"] == "UK"
    assert text["body"] == "STATUS sensor-1"
    assert text["reply"].startswith("sensor-1: online")
    # The reply cannot go out (no API secret in the demo): logged, not a dead letter.
    await asyncio.sleep(1.0)
    assert _dead_letters(demo_listeners["db"], "447700900123") == 0


def _dead_letters(db: str, key: str) -> int:
    with closing(sqlite3.connect(db)) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM gateway_deadletter WHERE key LIKE ?", (f"%{key}",)
        ).fetchone()
    return int(count)


async def test_a_postmark_webhook_opens_a_ticket(demo: str) -> None:
    url = demo + "/email/postmark/"
    inbound = {  # the fields of Postmark's inbound JSON the README's curl sends
        "FromFull": {"Email": "grace@customer.example", "Name": "Grace"},
        "ToFull": [{"Email": "support@demo.example"}],
        "OriginalRecipient": "support@demo.example",
        "Subject": "Sensor 2 is silent",
        "TextBody": "No readings since noon.",
        "MessageID": "demo-postmark-1",
    }
    ws_url = demo.replace("http://", "ws://") + "/ws/dashboard/"
    async with connect(ws_url, additional_headers={"Origin": demo}) as ws:
        async with httpx.AsyncClient() as client:
            answer = await client.post(url, json=inbound, auth=POSTMARK_AUTH)
            forged = await client.post(url, json=inbound, auth=("postmark", "guess"))
            anonymous = await client.post(url, json=inbound)
        ticket = await _next_of_kind(ws, "ticket")
    assert answer.status_code == 200
    assert (forged.status_code, anonymous.status_code) == (403, 401)
    assert ticket["from"] == "grace@customer.example"
    assert ticket["subject"] == "Sensor 2 is silent"
