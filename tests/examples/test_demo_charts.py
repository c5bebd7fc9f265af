"""The demo's live charts and the admin's last readings, seen in a real browser.

Started the way tests/examples/test_demo.py starts the demo (its fixtures, a demo of this
module's own); readings come from a real MQTT client, mosquitto_pub, as a device would send them.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.examples import test_demo as harness
from tests.mqtt.embedded_support import mosquitto_pub

pytestmark = pytest.mark.e2e

demo_listeners = harness.demo_listeners
demo = harness.demo
demo_mqtt_port = harness.demo_mqtt_port
chromium_page = harness.chromium_page
WAIT_MS = harness.BROWSER_WAIT_MS


async def _log_in_to_the_admin(page: Page, base: str) -> None:
    await page.goto(base + "/admin/login/")
    await page.locator("#id_username").fill("admin")
    await page.locator("#id_password").fill("admin")
    await page.locator("input[type=submit]").click()
    await expect(page.locator("#site-name")).to_be_visible()


async def _add_device(page: Page, base: str, device_id: str, password: str) -> None:
    """Create a device and its MQTT credential through the admin's forms, as an operator would."""
    await page.goto(base + "/admin/gateway/device/add/")
    await page.locator("#id_device_id").fill(device_id)
    await page.get_by_text("Add another Device credential").click()
    await page.locator("#id_credential-0-new_password").fill(password)
    await page.locator("input[name=_save]").click()
    await expect(page.locator(".messagelist .success")).to_contain_text(device_id)


async def _publish(port: str, device_id: str, password: str, reading: dict[str, float]) -> None:
    code, err = await mosquitto_pub(
        int(port), "-i", device_id, "-u", device_id, "-P", password,
        "-t", f"devices/{device_id}/telemetry", "-m", json.dumps(reading), "-q", "1",
    )  # fmt: skip
    assert code == 0, err


def _ys(points: str | None) -> list[float]:
    """The y coordinates of an SVG polyline's points (0 at the top)."""
    assert points is not None
    return [float(pair.split(",")[1]) for pair in points.split()]


async def test_a_device_chart_grows_with_each_reading_and_the_admin_lists_them(
    demo: str, demo_mqtt_port: str, chromium_page: Page, tmp_path: Path
) -> None:
    page = chromium_page
    await _log_in_to_the_admin(page, demo)
    await _add_device(page, demo, "chart-1", "chart-pw")
    await page.goto(demo + "/")
    await expect(page.locator("#status")).to_have_text("open", timeout=WAIT_MS)
    chart = page.locator("#chart-chart-1")
    dots = chart.locator("circle")
    assert await dots.count() == 0  # no reading yet, no chart

    await _publish(demo_mqtt_port, "chart-1", "chart-pw", {"temperature": 21.5, "at": time.time()})
    await expect(dots).to_have_count(1)
    await _publish(demo_mqtt_port, "chart-1", "chart-pw", {"temperature": 23.75})
    await expect(dots).to_have_count(2)
    assert re.match(r"21\.50 °C at ", await dots.first.locator("title").text_content() or "")
    assert await dots.last.locator("title").text_content() == "23.75 °C"
    await expect(chart.locator(".latest")).to_have_text("23.75 °C")
    first, second = _ys(await chart.locator("polyline").get_attribute("points"))
    assert second < first  # the warmer reading is drawn higher
    # A reading with only some of the simulator's fields shows those, timed by the page.
    cells = page.locator("#device-chart-1 td")
    await expect(cells).to_have_text(["chart-1", "online", "23.75", "", re.compile(r"\d:\d\d"), ""])
    logged = page.locator("#messages li", has_text="chart-1: ").first  # the newest
    await expect(logged).to_have_text("chart-1: 23.75 °C")
    shot = Path(os.environ.get("GATEWAY_SCREENSHOT_DIR", tmp_path)) / "demo-charts.png"
    await page.locator("#charts").screenshot(path=shot)

    await page.reload()  # the server kept them: the new page draws the same chart
    await expect(dots).to_have_count(2)
    await expect(chart.locator(".latest")).to_have_text("23.75 °C")

    await page.goto(demo + "/admin/gateway/device/?q=chart-1")
    await page.get_by_role("link", name="chart-1", exact=True).click()
    rows = page.locator("table.last-readings tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text('{"temperature": 23.75}')  # newest first
    await expect(rows.last).to_contain_text('"temperature": 21.5}')
    await page.screenshot(path=shot.with_name("demo-admin-readings.png"), full_page=True)


async def test_the_simulated_devices_charts_move_live(demo: str, chromium_page: Page) -> None:
    page = chromium_page
    await page.goto(demo + "/")
    await expect(page.locator("#status")).to_have_text("open", timeout=WAIT_MS)
    for n in (1, 2, 3):
        latest = page.locator(f"#chart-sensor-{n} circle").last.locator("title")
        await expect(latest).to_have_text(re.compile(r"^\d+\.\d\d °C at "), timeout=WAIT_MS)
        before = await latest.text_content()
        await expect(latest).not_to_have_text(before or "", timeout=WAIT_MS)
