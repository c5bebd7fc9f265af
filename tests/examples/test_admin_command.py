"""The admin's "Send a command", seen in a real browser: a device's answer, another's timeout.

A gateway in this process serves the admin over HTTP and holds the connection to a Mosquitto
started by the test (MQTT 5, ``COMMANDS`` on); the devices are real paho MQTT 5 clients. An
operator logs in with Chromium (the harness of tests/examples/test_demo.py), ticks devices,
fills in the command and reads each device's outcome on the page.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.asgi import get_asgi_application
from playwright.async_api import Page, expect

from django_app.models.commands import DeviceCommand
from django_app.models.devices import Device
from gateway import MqttTopicRouter, ProtocolTypeRouter
from tests.examples import test_demo as harness
from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.mqtt.external_support import running_gateway, settings_for
from tests.mqtt.paho_support import AnsweringDevice

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.django_app.device_admin_urls"),
]

chromium_page = harness.chromium_page


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


@pytest.fixture
async def admin_url(broker: Mosquitto) -> AsyncIterator[str]:
    """The base URL of a gateway serving the admin and commands over `broker`; an operator."""
    await sync_to_async(User.objects.create_superuser)("operator", "o@example.com", "op-pw")
    for device_id in ("pump-1", "mute-1"):
        await sync_to_async(Device.objects.create)(device_id=device_id)
    app = ProtocolTypeRouter({"http": get_asgi_application(), "mqtt": MqttTopicRouter([])})
    async with running_gateway(app, settings_for(broker, COMMANDS=True)) as gateway:
        (http,) = [item.address for item in gateway.listeners if item.protocol == "http"]
        yield http if http.startswith("http") else f"http://{http}"


async def _log_in(page: Page, base: str) -> None:
    await page.goto(base + "/admin/login/")
    await page.locator("#id_username").fill("operator")
    await page.locator("#id_password").fill("op-pw")
    await page.locator("input[type=submit]").click()
    await expect(page.locator("#site-name")).to_be_visible()


async def _send_command(page: Page, base: str, device_id: str, payload: str) -> None:
    """Tick the device in the device list, choose the action, fill in the form, send."""
    await page.goto(base + "/admin/gateway/device/")
    row = page.locator("#result_list tr", has_text=device_id)
    await row.locator("input.action-select").check()
    await page.locator("select[name=action]").select_option("send_command")
    await page.locator("button[name=index]").click()
    await expect(page.locator("h1")).to_have_text("Send a command")
    await page.locator("#id_payload").fill(payload)
    await page.locator("#id_wait").check()
    await page.locator("#id_command").fill("led")
    await page.locator("#id_timeout").fill("1.5")
    await page.locator("input[name=apply]").click()


async def test_the_operator_sees_the_device_answer(
    broker: Mosquitto, admin_url: str, chromium_page: Page, tmp_path: Path
) -> None:
    page = chromium_page
    device = await asyncio.to_thread(AnsweringDevice, broker, "pump-1")
    try:
        await _log_in(page, admin_url)
        await _send_command(page, admin_url, "pump-1", '{"led": "on"}')
        answer = page.locator("table.command-answers tbody tr")
        await expect(answer).to_have_count(1)
        await expect(answer).to_have_class("outcome-answered")
        # The device echoes what it got: the form's JSON, as the gateway serialised it.
        said = json.dumps({"device": "pump-1", "command": "led", "got": '{"led":"on"}'})
        await expect(answer.locator("td")).to_have_text(["pump-1", "answered", said])
        got = device.commands.get(timeout=5)
        assert got.topic == "devices/pump-1/commands/led"
        shot = Path(os.environ.get("GATEWAY_SCREENSHOT_DIR", tmp_path)) / "admin-command.png"
        await page.screenshot(path=shot, full_page=True)
    finally:
        await asyncio.to_thread(device.close)

    # The history link leads to the command, answered (written within HISTORY_DELAY).
    await page.get_by_role("link", name="command history").click()
    await expect(page.locator("#result_list tbody tr")).to_have_count(1)
    await expect(page.locator("#result_list tbody tr")).to_contain_text("answered")


async def test_the_operator_sees_the_timeout_of_a_silent_device(
    admin_url: str, chromium_page: Page
) -> None:
    page = chromium_page
    await _log_in(page, admin_url)
    await _send_command(page, admin_url, "mute-1", '{"led": "off"}')
    outcome = page.locator("table.command-answers tbody tr")
    await expect(outcome).to_have_class("outcome-timed-out")
    await expect(outcome.locator("td")).to_have_text(
        ["mute-1", "timed out", "no answer within 1.5s"]
    )
    await page.get_by_role("link", name="command history").click()
    await expect(page.locator("#result_list tbody tr")).to_contain_text("timed out")
    statuses = await sync_to_async(
        lambda: list(DeviceCommand.objects.values_list("device__device_id", "status"))
    )()
    assert statuses == [("mute-1", "timed_out")]
