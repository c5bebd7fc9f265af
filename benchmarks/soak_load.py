"""The soak's steady load on the demo, and the latencies it sees (`benchmarks/soak.py`).

- **mqtt**: readings from ``gateway simulate`` (another process) reach the dashboards; the
  latency is from the reading's ``at`` (the device's clock at publish, ms) to a dashboard
  WebSocket client receiving it: broker, consumer, database write, ``group_send``, WebSocket.
- **websocket**: one dashboard client sends a note and waits for it to come back through the
  group (``receive_json`` -> ``group_send`` -> every dashboard).
- **smtp**: one smtplib session per mail to support@demo.example (connect to QUIT).
- **twilio** / **vonage**: a signed inbound-SMS webhook, request to response.

Every failure (a refused mail, a status other than the expected one, a closed WebSocket) is
counted, never raised: the soak reports them with the samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import smtplib
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import ClientConnection, connect

PROTOCOLS = ("mqtt", "websocket", "smtp", "twilio", "vonage")


@dataclass
class Ports:
    """Where the gateway under soak listens, and the demo's webhook secrets."""

    http: int
    smtp: int
    mqtt: int
    twilio_token: str
    vonage_key: str
    vonage_secret: str


@dataclass
class Rates:
    """Operations per second of each kind (the MQTT rate is `gateway simulate`'s)."""

    smtp: float = 1.0
    sms: float = 4.0
    notes: float = 2.0
    dashboards: int = 20


@dataclass
class Tally:
    """Latencies (seconds) per protocol since the last sample, and counts since the start."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: int = 0
    delivered: int = 0

    def take(self) -> dict[str, list[float]]:
        """The latencies gathered since the last call."""
        taken, self.latencies = self.latencies, defaultdict(list)
        return taken


class Load:
    """Runs every kind of load until `stop()`; `tally` holds what it measured."""

    def __init__(self, ports: Ports, rates: Rates) -> None:
        self.ports = ports
        self.rates = rates
        self.tally = Tally()
        self._notes: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports.http}", timeout=30)

    async def start(self) -> None:
        """Open the dashboards, then start the periodic senders."""
        sockets = [await self._open_dashboard() for _ in range(self.rates.dashboards)]
        self._tasks = [
            asyncio.create_task(self._listen(ws, n == 0)) for n, ws in enumerate(sockets)
        ]
        self._tasks += [
            asyncio.create_task(self._every(self.rates.notes, lambda: self._note(sockets[0]))),
            asyncio.create_task(self._every(self.rates.smtp, self._mail)),
            asyncio.create_task(self._every(self.rates.sms / 2, self._twilio)),
            asyncio.create_task(self._every(self.rates.sms / 2, self._vonage)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._http.aclose()

    async def _open_dashboard(self) -> ClientConnection:
        origin = f"http://127.0.0.1:{self.ports.http}"
        ws = await connect(f"ws://127.0.0.1:{self.ports.http}/ws/dashboard/", origin=origin)  # type: ignore[arg-type]
        hello = json.loads(await ws.recv())
        assert hello["kind"] == "hello", hello
        return ws

    async def _every(self, rate: float, operation: Any) -> None:
        """Start `operation()` `rate` times a second on schedule (open loop), each a task."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        running: set[asyncio.Task[None]] = set()
        while True:
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            task = asyncio.create_task(operation())
            running.add(task)
            task.add_done_callback(running.discard)

    async def _listen(self, ws: ClientConnection, measures_mqtt: bool) -> None:
        """Read one dashboard; the first one measures readings and notes."""
        try:
            async for frame in ws:
                self.tally.delivered += 1
                if measures_mqtt:
                    self._measure(json.loads(frame))
        except Exception:
            self.tally.errors += 1
            raise

    def _measure(self, event: dict[str, Any]) -> None:
        now = time.time()
        if event.get("kind") == "reading" and isinstance(event.get("at"), float | int):
            self.tally.latencies["mqtt"].append(max(0.0, now - float(event["at"])))
        elif event.get("kind") == "note" and event.get("text") in self._notes:
            sent = self._notes.pop(event["text"])
            self.tally.latencies["websocket"].append(time.perf_counter() - sent)

    async def _note(self, ws: ClientConnection) -> None:
        text = f"soak {uuid.uuid4().hex}"
        self._notes[text] = time.perf_counter()
        await ws.send(json.dumps({"note": text}))

    async def _timed(self, protocol: str, operation: Any) -> None:
        started = time.perf_counter()
        try:
            ok = await operation()
        except Exception:
            ok = False
        if ok:
            self.tally.latencies[protocol].append(time.perf_counter() - started)
        else:
            self.tally.errors += 1

    async def _mail(self) -> None:
        await self._timed("smtp", lambda: asyncio.to_thread(send_mail, self.ports.smtp))

    async def _twilio(self) -> None:
        await self._timed("twilio", self._post_twilio)

    async def _vonage(self) -> None:
        await self._timed("vonage", self._post_vonage)

    async def _post_twilio(self) -> bool:
        form = twilio_form()
        url = f"http://127.0.0.1:{self.ports.http}/sms/twilio/"
        signature = _twilio_validator(self.ports.twilio_token).compute_signature(url, form)
        response = await self._http.post(
            "/sms/twilio/", content=urlencode(form), headers=_form_headers(signature)
        )
        return response.status_code == 200

    async def _post_vonage(self) -> bool:
        fields = vonage_fields(self.ports.vonage_key)
        fields["sig"] = _vonage_auth(self.ports.vonage_key, self.ports.vonage_secret).sign_params(
            dict(fields)
        )
        response = await self._http.post(
            "/sms/vonage/", content=urlencode(fields), headers=_form_headers(None)
        )
        return response.status_code == 204


def send_mail(port: int) -> bool:
    """One support mail over SMTP, in a session of its own; True when it was accepted."""
    message = EmailMessage()
    message["From"] = "customer@example.net"
    message["To"] = "support@demo.example"
    message["Subject"] = f"soak {uuid.uuid4().hex[:12]}"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.net>"
    message.set_content("The soak's mail: the device stopped reporting.\n" * 20)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        refused = client.send_message(message)
    return not refused


def twilio_form() -> dict[str, str]:
    number = uuid.uuid4().int % 1000
    return {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": f"+4477009{number:05d}",
        "To": "+15005550006",
        "FromCountry": "GB",
        "Body": "status",
        "NumMedia": "0",
    }


def vonage_fields(api_key: str) -> dict[str, str]:
    number = uuid.uuid4().int % 1000
    return {
        "msisdn": f"1415555{number:04d}",
        "to": "447700900001",
        "messageId": uuid.uuid4().hex[:16].upper(),
        "text": "status",
        "type": "text",
        "api-key": api_key,
        "message-timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "timestamp": str(int(time.time())),
        "nonce": uuid.uuid4().hex,
    }


def _form_headers(twilio_signature: str | None) -> dict[str, str]:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if twilio_signature is not None:
        headers["x-twilio-signature"] = twilio_signature
    return headers


def _twilio_validator(token: str) -> Any:
    from twilio.request_validator import RequestValidator

    return RequestValidator(token)


def _vonage_auth(key: str, secret: str) -> Any:
    from vonage import Auth

    return Auth(api_key=key, signature_secret=secret, signature_method="sha256")
