"""EMQX's HTTP authentication and authorization, answered from Django's devices: `EmqxAuth`.

EMQX 5 posts each login (``username``, ``password``, ``clientid``, ...) to an HTTP
authenticator and each publish or subscribe (``username``, ``clientid``, ``topic``,
``action``) to an HTTP authorizer, and reads ``{"result": "allow" | "deny" | "ignore"}``
(plus ``"is_superuser"`` for a login) from a 200 answer. This adapter serves both paths on the
gateway's HTTP server: a device's login is checked by the device store, its topics by the
embedded broker's ACL rule (`embedded_acl`), so EMQX and the embedded broker allow the same.
A username that is no device gets ``ignore`` (EMQX asks its next authenticator), a request
without the shared secret ``401``, a body that is not EMQX's ``400``. Answers are cached for
``CACHE_TTL`` seconds: a repeated login costs no password hash. Password checks go through a
`LoginGate` (``LOGINS``), keyed by the device's address when EMQX's body carries
``peerhost``, else by the username: an address or username past ``MAX_FAILURES`` is denied
unchecked, and a login past the gate's queue bounds gets ``503`` (EMQX then treats the
authenticator as ignoring it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from functools import partial
from typing import Any, Final
from urllib.parse import parse_qsl

from gateway.adapters import Listener, ProtocolAdapter
from gateway.devices import DeviceStore, load_device_store
from gateway.logins import LoginGate, LoginRefused
from gateway.mqtt import split_shared_subscription
from gateway.options import (
    Option,
    OptionSet,
    is_number,
    logins_option,
    optional_text,
    positive_int,
    url_path,
)
from gateway.types import ASGIApp, Receive, Scope, Send
from protocol_adapters.mqtt.embedded_acl import (
    DEFAULT_ACL,
    acl_for,
    may_publish,
    may_subscribe,
    topic_filter_list,
)

__all__ = ["EMQX_OPTIONS", "EmqxAuth"]

logger = logging.getLogger("gateway.mqtt")
MAX_BODY: Final = 65536


def _secret(value: object) -> str | None:
    ok = isinstance(value, str) and len(value) >= 16
    return None if ok else "a str of at least 16 characters"


def _ttl(value: object) -> str | None:
    ok = is_number(value) and 0 <= value <= 3600  # type: ignore[operator]
    return None if ok else "a number of seconds from 0 to 3600"


EMQX_OPTIONS: Final = OptionSet(
    Option("SECRET", None, _secret, required="(use the environment)"),
    Option("AUTHN_PATH", "/mqtt/emqx/authn/", url_path),
    Option("AUTHZ_PATH", "/mqtt/emqx/authz/", url_path),
    Option("ACL", list(DEFAULT_ACL), topic_filter_list),
    Option("DEVICE_STORE", None, optional_text),
    Option("CACHE_TTL", 30.0, _ttl),
    Option("CACHE_SIZE", 100000, positive_int),
    logins_option(),
)
"""Every OPTIONS key of `EmqxAuth` (docs/mqtt.md)."""


class TtlCache:
    """At most `size` answers, each for `ttl` seconds, the least recently used dropped first."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl, self.size = ttl, size
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any:
        found = self._items.get(key)
        if found is None or found[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, key: str, value: Any) -> None:
        if self.ttl <= 0:
            return
        self._items[key] = (time.monotonic() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class EmqxAuth(ProtocolAdapter):
    """EMQX's HTTP authenticator and authorizer, on the gateway's HTTP server."""

    protocol = "http"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        return EMQX_OPTIONS.check(options)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        values = EMQX_OPTIONS.parse(self.context.options)
        self.secret: bytes = f"Bearer {values['SECRET']}".encode()
        self.paths: tuple[str, str] = (values["AUTHN_PATH"], values["AUTHZ_PATH"])
        self.acl: tuple[str, ...] = tuple(values["ACL"])
        self.devices: DeviceStore = load_device_store(values["DEVICE_STORE"])
        self.logins = TtlCache(float(values["CACHE_TTL"]), values["CACHE_SIZE"])
        self.topics = TtlCache(float(values["CACHE_TTL"]), values["CACHE_SIZE"])
        self.gate = LoginGate(values["LOGINS"])

    async def start(self) -> list[Listener]:
        return [Listener("emqx-authn", f"POST {self.paths[0]}"),
                Listener("emqx-authz", f"POST {self.paths[1]}")]  # fmt: skip

    async def stop(self, timeout: float) -> None:
        return None

    def http_routes(self) -> Mapping[str, ASGIApp]:
        return {self.paths[0]: self.authn, self.paths[1]: self.authz}

    # --- the two endpoints ----------------------------------------------------------------------

    async def authn(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A login: allow with the device's password, deny otherwise, ignore a non-device."""
        fields = await self._request(scope, receive, send, ("username", "password"))
        if fields is None:
            return
        address = fields.get("peerhost") or f"username {fields['username']!r}"
        try:
            result = await self.login(fields["username"], fields["password"], address)
        except LoginRefused as refused:
            if refused.reason == "busy":
                self.context.metrics.inc(self.protocol, "rejected")
                self.context.metrics.inc(self.protocol, "overloaded")
                await self.gate.busy_hold.hold()  # LOGINS["BUSY_DELAY"]
                await _refuse(send, scope, 503, f"login not checked: {refused}")
                return
            logger.warning("emqx login of %r denied unchecked: %s", fields["username"], refused)
            result = "deny"
        await _answer(send, 200, {"result": result, "is_superuser": False})

    async def authz(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A publish or subscribe: allow within the device's topics, ignore a non-device."""
        fields = await self._request(scope, receive, send, ("username", "topic", "action"))
        if fields is None:
            return
        if fields["action"] not in ("publish", "subscribe"):
            await _refuse(send, scope, 400, f"unknown action {fields['action']!r}")
            return
        result = await self.allowed(fields["username"], fields["action"], fields["topic"])
        await _answer(send, 200, {"result": result})

    # --- decisions --------------------------------------------------------------------------------

    async def login(self, username: str, password: str, address: str) -> str:
        """allow, deny or ignore; raises `LoginRefused` when the gate refuses a check."""
        key = hashlib.sha256(f"{username}\x00{password}".encode()).hexdigest()
        cached = self.logins.get(key)
        if cached is None:
            check = partial(self.devices.authenticate, username, password)
            if await self.gate.check(address, check) is not None:
                cached = "allow"
            else:
                cached = "deny" if username and await self.devices.exists(username) else "ignore"
            self.logins.put(key, cached)
        return str(cached)

    async def allowed(self, username: str, action: str, topic: str) -> str:
        filters = self.topics.get(username)
        if filters is None:
            filters = await self._filters(username)
            self.topics.put(username, filters)
        if filters == ():
            return "ignore"
        if action == "publish":
            return "allow" if may_publish(filters, topic) else "deny"
        _, inner = split_shared_subscription(topic)
        return "allow" if may_subscribe(filters, inner) else "deny"

    async def _filters(self, username: str) -> tuple[str, ...]:
        """The device's allowed filters; () for a username that is no device."""
        if not username or not await self.devices.exists(username):
            return ()
        found = acl_for(await self.devices.topics_for(username) or self.acl, username)
        return found or ("",)  # an id that cannot name topics is allowed nothing

    # --- the wire -----------------------------------------------------------------------------

    async def _request(
        self, scope: Scope, receive: Receive, send: Send, needed: tuple[str, ...]
    ) -> dict[str, str] | None:
        """The request's fields, or None once it was answered 401, 400 or 405."""
        headers = dict(scope.get("headers", []))
        if not hmac.compare_digest(headers.get(b"authorization", b""), self.secret):
            await _refuse(send, scope, 401, "no or wrong shared secret")
            return None
        if scope["method"] not in ("POST", "GET"):
            await _refuse(send, scope, 405, f"method {scope['method']}")
            return None
        body = await _body(receive)
        fields = _fields(scope, headers, body)
        missing = [key for key in needed if not isinstance((fields or {}).get(key), str)]
        if fields is None or missing:
            await _refuse(send, scope, 400, f"not EMQX's request (missing {missing or 'all'})")
            return None
        return fields


def _fields(
    scope: Scope, headers: Mapping[bytes, bytes], body: bytes | None
) -> dict[str, str] | None:
    """EMQX's fields from a JSON or form body, or from the query string of a GET."""
    if body is None:
        return None
    if scope["method"] == "GET":
        return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    if headers.get(b"content-type", b"").startswith(b"application/x-www-form-urlencoded"):
        return dict(parse_qsl(body.decode("utf-8", "replace")))
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


async def _body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            return b"".join(chunks)


async def _refuse(send: Send, scope: Scope, status: int, reason: str) -> None:
    client = scope.get("client") or ("?", 0)
    logger.warning("emqx auth %s from %s refused %d: %s", scope["path"], client[0], status, reason)
    await _answer(send, status, {"error": reason})


async def _answer(send: Send, status: int, body: Mapping[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
