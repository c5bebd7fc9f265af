"""A gateway serving mail providers' inbound webhooks, and the providers' APIs it fetches from.

`running_webhooks` runs the gateway on 127.0.0.1 with one `EmailWebhookAdapter` per entry;
`ProviderApi` stands in on 127.0.0.1 for the APIs that Brevo, Resend and Mailtrap make the
receiver fetch content from. The signed requests are in `tests.email.webhook_signers`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from gateway.conf import GatewaySettings
from gateway.pipeline import DeadLetter
from gateway.server import Gateway
from gateway.types import ASGIApp
from tests.email.webhook_signers import (
    API_KEY,
    BACKEND,
    BASIC,
    FETCHING,
    MANDRILL_URL,
    POSTAL_PUBLIC_KEY,
    SIGNING_KEY,
    SNS_CERT_PATH,
    SVIX_SECRET,
    Post,
    sns_certificate,
)

START_TIMEOUT = 30.0


def provider_options(provider: str, api_url: str = "", **extra: Any) -> dict[str, Any]:
    """OPTIONS for `provider`, with the secrets `tests.email.webhook_signers` signs with."""
    options: dict[str, Any] = {"PROVIDER": provider, "STORE": True}
    if provider in ("amazon_ses", "brevo", "mailjet", "postmark", "sendgrid", "sparkpost"):
        options["WEBHOOK_SECRET"] = BASIC
    if provider in ("mailersend", "mailgun", "mailtrap", "mandrill"):
        options["SIGNING_KEY"] = SIGNING_KEY
    if provider == "postal":
        options["SIGNING_KEY"] = POSTAL_PUBLIC_KEY
    if provider == "resend":
        options["SIGNING_KEY"] = SVIX_SECRET
    if provider == "mandrill":
        options["WEBHOOK_URL"] = MANDRILL_URL
    if provider == "amazon_ses":
        options["ANYMAIL"] = {"AUTO_CONFIRM_SNS_SUBSCRIPTIONS": False}
        options["SNS_CERT_URL"] = re.escape(api_url + SNS_CERT_PATH)
    if provider in FETCHING:
        options["API_KEY"] = API_KEY
        suffix = {"brevo": "/v3/", "resend": "/", "mailtrap": "/api/"}[provider]
        options["API_URL"] = api_url + suffix
    return {**options, **extra}


# --- the provider's API, for the providers whose webhook carries only ids ---------------------


@dataclass
class ProviderApi:
    """Brevo's attachment downloads, Resend's and Mailtrap's received-email APIs, on 127.0.0.1."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    emails: dict[str, bytes] = field(default_factory=dict)
    fail_next: int = 0
    certificate_fetches: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    def add_file(self, content: bytes, content_type: str) -> str:
        token = uuid.uuid4().hex
        self.files[token] = (content, content_type)
        return token

    def add_email(self, raw: bytes) -> str:
        email_id = uuid.uuid4().hex
        self.emails[email_id] = raw
        return email_id

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v3/inbound/attachments/{token}", self.attachment)
        app.router.add_get("/emails/receiving/{id}", self.resend_email)
        app.router.add_get("/api/inbound/inboxes/{inbox}/messages/{id}", self.mailtrap_email)
        app.router.add_get("/raw/{id}", self.raw)
        app.router.add_get(SNS_CERT_PATH, self.sns_certificate)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _failing(self) -> bool:
        if self.fail_next:
            self.fail_next -= 1
            return True
        return False

    async def attachment(self, request: web.Request) -> web.Response:
        if request.headers.get("api-key") != API_KEY or self._failing():
            return web.Response(status=503)
        content, content_type = self.files[request.match_info["token"]]
        return web.Response(body=content, content_type=content_type)

    async def resend_email(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}" or self._failing():
            return web.Response(status=503)
        email_id = request.match_info["id"]
        return web.json_response(
            {"id": email_id, "raw": {"download_url": f"{self.url}/raw/{email_id}"}}
        )

    async def mailtrap_email(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}" or self._failing():
            return web.Response(status=503)
        email_id = request.match_info["id"]
        return web.json_response({"id": email_id, "raw_message_url": f"{self.url}/raw/{email_id}"})

    async def sns_certificate(self, request: web.Request) -> web.Response:
        self.certificate_fetches += 1
        if self._failing():
            return web.Response(status=503)
        return web.Response(body=sns_certificate(), content_type="application/x-pem-file")

    async def raw(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.emails[request.match_info["id"]], content_type="message/rfc822"
        )


@asynccontextmanager
async def provider_api() -> AsyncIterator[ProviderApi]:
    api = ProviderApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


# --- the gateway -------------------------------------------------------------------------------


@dataclass
class Webhooks:
    url: str
    client: httpx.AsyncClient
    dead_letters: list[DeadLetter]
    gateway: Gateway

    async def post(self, request: Post, **overrides: Any) -> httpx.Response:
        """POST `request` (``auth=None`` to drop its password, ``path=`` elsewhere)."""
        auth = overrides.get("auth", request.auth)
        return await self.client.request(
            overrides.get("method", "POST"),
            self.url + overrides.get("path", request.path),
            content=request.content,
            data=request.data,
            files=request.files,
            headers={**request.headers, **overrides.get("headers", {})},
            auth=auth,  # type: ignore[arg-type]
        )


@asynccontextmanager
async def running_webhooks(
    app: ASGIApp, adapters: Mapping[str, Mapping[str, Any]]
) -> AsyncIterator[Webhooks]:
    """`Gateway(app).serve()` on 127.0.0.1, port 0, with one webhook adapter per entry."""
    dead_letters: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        dead_letters.append(letter)

    settings = GatewaySettings(
        {
            "ADAPTERS": {
                name: {"BACKEND": BACKEND, "OPTIONS": dict(options)}
                for name, options in adapters.items()
            },
            "DEAD_LETTER_HANDLER": dead_letter,
            "SHUTDOWN_TIMEOUT": 5,
            "LOOP": "asyncio",
        }
    )
    gateway = Gateway(app, settings=settings, host="127.0.0.1", port=0)
    ready = asyncio.Event()
    serving = asyncio.create_task(gateway.serve(ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([serving, waiter], timeout=START_TIMEOUT, return_when="FIRST_COMPLETED")
    waiter.cancel()
    assert ready.is_set(), f"the gateway did not start: {serving}"
    url = next(item.address for item in gateway.listeners if item.protocol == "http")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            yield Webhooks(url, client, dead_letters, gateway)
    finally:
        gateway.stop()
        assert await asyncio.wait_for(serving, START_TIMEOUT) == 0
