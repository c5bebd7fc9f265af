"""The demo, as a person meets it: started like scripts/demo does, seen in a real browser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.browser import open_page

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo gateway on a free port, with its own SQLite file, readings every 0.2 s."""
    db = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "DEMO_DB": str(db),
        "DEMO_HTTP_PORT": "0",
        "DEMO_INTERVAL": "0.2",
    }
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--run-syncdb", "-v", "0"],
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
        url = _wait_ready(proc)
        yield url
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def _wait_ready(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        match = re.match(r"gateway: http listening on (http://\S+)", line)
        url = match.group(1) if match else url
        if line.strip() == "gateway: ready":
            assert url, "the demo printed no http listener"
            return url
    raise AssertionError("the demo exited before it was ready")


def test_page_and_health(demo: str) -> None:
    page = httpx.get(demo + "/", timeout=10)
    assert page.status_code == 200
    assert "Gateway demo" in page.text
    health = httpx.get(demo + "/-/health", timeout=10).json()
    assert health["status"] == "ok"
    assert health["adapters"]["simulator"]["status"] == "ok"


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


async def test_a_foreign_origin_is_refused(demo: str) -> None:
    ws_url = demo.replace("http://", "ws://") + "/ws/dashboard/"
    with pytest.raises(Exception, match="403"):
        async with connect(ws_url, additional_headers={"Origin": "http://evil.example"}):
            pass


async def test_dashboard_in_a_real_browser(demo: str, tmp_path: Path) -> None:
    async with open_page() as page:
        await page.goto(demo + "/")
        await page.wait_for("document.getElementById('status').textContent === 'open'")
        rows = await page.wait_for(
            "document.querySelectorAll('#devices tr').length >= 3 && "
            "document.querySelectorAll('#devices tr').length"
        )
        assert rows == 3
        await page.evaluate(
            "document.getElementById('note').value = 'hello from the browser';"
            "document.querySelector('#note-form button').click()"
        )
        note = await page.wait_for(
            "[...document.querySelectorAll('#messages li.note')].map(li => li.textContent)"
            ".find(t => t.includes('hello from the browser'))"
        )
        assert note == "note: hello from the browser"
        shot = Path(os.environ.get("GATEWAY_SCREENSHOT_DIR", tmp_path)) / "demo-dashboard.png"
        await page.screenshot(shot)
        assert shot.stat().st_size > 5000
