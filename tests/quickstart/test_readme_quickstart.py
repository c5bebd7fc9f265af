"""README.md's Quickstart, followed to the letter in a fresh project, then tried as a user would.

The project, its files and its commands come from the README's own text (see conftest.py):
a README that stops working fails here.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from twilio.request_validator import RequestValidator
from websockets.typing import Origin

from tests.quickstart.project import (
    README,
    TWILIO_AUTH_TOKEN,
    Quickstart,
    pip_install,
    with_ports,
)
from tests.server.process import ROOT, GatewayProcess, spawn, wait_ready

pytestmark = pytest.mark.e2e

WAIT = 30.0


def start(quickstart: Quickstart, command: str, tmp_path: Path) -> GatewayProcess:
    """`command` as the user types it, in the project's directory (exec: signals reach it)."""
    argv = ["bash", "-c", f"exec {command}"]
    process = spawn(tmp_path, env=quickstart.env, command=argv, cwd=quickstart.directory)
    assert wait_ready(process), process.stderr()
    return process


@pytest.fixture
def gateway(quickstart: Quickstart, tmp_path: Path) -> Iterator[GatewayProcess]:
    """The README's `gateway run myproject.asgi:application`, ready."""
    process = start(quickstart, quickstart.run_command, tmp_path)
    try:
        yield process
    finally:
        process.kill()


def try_command(quickstart: Quickstart, program: str, ports: dict[str, int]) -> None:
    """Run the Quickstart's "try it" command of `program`, on the ports the gateway printed."""
    [command] = [c for c in quickstart.try_commands if shlex.split(c)[0] == program]
    result = subprocess.run(
        with_ports(command, ports),
        env=quickstart.env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


async def test_a_device_reading_reaches_the_dashboard(
    quickstart: Quickstart, gateway: GatewayProcess
) -> None:
    url = gateway.ws_url + "/ws/dashboard/"
    origin = Origin(gateway.http_url)  # a page of the project, as ALLOWED_HOSTS allows
    async with websockets.connect(url, origin=origin, open_timeout=WAIT) as dashboard:
        mqtt_port = port_of(gateway.listeners["mqtt"])
        await asyncio.to_thread(try_command, quickstart, "mosquitto_pub", {"-p": mqtt_port})
        reading = json.loads(await asyncio.wait_for(dashboard.recv(), WAIT))
    assert reading == {"device": "sensor-1", "temperature": 21.5}, gateway.stderr()


def test_a_support_mail_is_answered(quickstart: Quickstart, gateway: GatewayProcess) -> None:
    try_command(quickstart, "swaks", {"--port": port_of(gateway.listeners["smtp"])})
    # The README's EMAIL_BACKEND prints each mail on the gateway's stdout.
    reply = gateway.read_until("a human will answer soon.", WAIT)
    assert "Subject: Re: Printer on fire" in reply
    assert "From: support@example.com" in reply
    assert "To: you@example.org" in reply


def test_a_signed_text_gets_its_reply(gateway: GatewayProcess) -> None:
    url = gateway.http_url + "/sms/twilio/"
    form = {"MessageSid": "SM1", "From": "+447700900123", "To": "+15005550006", "Body": "hello"}
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, form)
    response = httpx.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=WAIT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Message>Thanks! We got: hello</Message>" in response.text


def gateway_routes(quickstart: Quickstart, *options: str) -> str:
    """`gateway routes myproject.asgi:application OPTIONS`, as the Quickstart names it."""
    command = quickstart.run_command.replace("gateway run", "gateway routes", 1)
    result = subprocess.run(
        ["bash", "-c", shlex.join([*shlex.split(command), *options])],
        cwd=quickstart.directory,
        env=quickstart.env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_gateway_routes_lists_every_protocol(quickstart: Quickstart) -> None:
    rows = [line.split() for line in gateway_routes(quickstart).splitlines()]
    assert rows == [
        ["http", "*", "->", "django.core.handlers.asgi.ASGIHandler"],
        ["websocket", "ws/dashboard/", "->", "myapp.consumers.DashboardConsumer"],
        ["mqtt", "devices/{device_id}/telemetry", "->", "myapp.consumers.TelemetryConsumer"],
        ["email", r"support@example\.com", "->", "myapp.consumers.SupportTicketHandler"],
        ["sms", "+44", "->", "myapp.consumers.UKTextHandler"],
        ["sms", "+1", "->", "myapp.consumers.USTextHandler"],
    ]


def test_manage_py_rungateway_serves_the_same(quickstart: Quickstart, tmp_path: Path) -> None:
    assert quickstart.rungateway_command == "python manage.py rungateway"
    process = start(quickstart, quickstart.rungateway_command, tmp_path)
    try:
        assert set(process.listeners) == {"http", "mqtt", "smtp", "sms"}
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(WAIT) == 0, process.stderr()
    finally:
        process.kill()


def test_gateway_routes_tells_which_route_takes_an_address(quickstart: Quickstart) -> None:
    output = gateway_routes(quickstart, "--email", "Support@Example.com")
    assert output.startswith("Support@Example.com: support@example\\.com -> myapp.consumers.")


def test_the_extras_it_installs_exist() -> None:
    install = pip_install(README, "Quickstart")
    requirement = shlex.split(install, comments=True)[2]
    named = re.findall(r"\[([\w,-]+)\]", requirement)[0].split(",")
    named += [extra.strip() for extra in install.partition("pick extras:")[2].split(",")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(named) <= set(project["optional-dependencies"]), named
