"""Who may read `/-/metrics`: ``GATEWAY["METRICS_ACCESS"]`` (docs/gateway-process.md).

``None`` (the default) leaves the endpoint open. A dict may name any of:

* ``ALLOW``: addresses or networks (``"10.0.0.0/8"``) the client's address must be in;
* ``BEARER_TOKEN``: a token sent as ``Authorization: Bearer <token>``;
* ``BASIC_USERS``: ``{login: password}`` sent as ``Authorization: Basic ...``.

Every part given must pass: an address outside ``ALLOW`` gets ``403``; when a token or users
are set, a request with neither right gets ``401`` with a ``WWW-Authenticate`` challenge.
Secrets are compared in constant time and never repeated in messages.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from gateway.types import Scope

__all__ = ["KEYS", "MetricsAccess", "metrics_access_problems"]

KEYS: Final = ("ALLOW", "BEARER_TOKEN", "BASIC_USERS")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Refusal = Literal[401, 403]


def metrics_access_problems(value: Any) -> list[tuple[str, ...]]:
    """Every mistake in a METRICS_ACCESS value: (key..., phrase), with no secret in them."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [("must be None or a dict of ALLOW, BEARER_TOKEN and BASIC_USERS",)]
    problems: list[tuple[str, ...]] = [
        (str(key), f"is not a known key ({', '.join(KEYS)})") for key in value if key not in KEYS
    ]
    if "ALLOW" in value and _networks(value["ALLOW"]) is None:
        problems.append(("ALLOW", "must be a list of IP addresses or networks"))
    token = value.get("BEARER_TOKEN")
    if token is not None and not (isinstance(token, str) and token):
        problems.append(("BEARER_TOKEN", "must be a non-empty str or None"))
    if not _is_users(value.get("BASIC_USERS")):
        problems.append(("BASIC_USERS", "must be a dict of login -> password (str), or None"))
    return problems


def _networks(value: Any) -> list[Network] | None:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        return None
    try:
        return [ipaddress.ip_network(item, strict=False) for item in value]
    except (TypeError, ValueError):
        return None


def _is_users(value: Any) -> bool:
    return value is None or (
        isinstance(value, Mapping)
        and all(
            isinstance(k, str) and ":" not in k and isinstance(v, str) for k, v in value.items()
        )
    )


@dataclass(frozen=True)
class MetricsAccess:
    """A checked METRICS_ACCESS value; `refusal` says whether a request may read metrics."""

    allow: list[Network] | None = None
    token: bytes | None = None
    users: dict[bytes, bytes] = field(default_factory=dict)

    @classmethod
    def from_setting(cls, value: Mapping[str, Any] | None) -> MetricsAccess | None:
        """None for an open endpoint; the setting must have passed the system check."""
        if value is None:
            return None
        token = value.get("BEARER_TOKEN")
        users = value.get("BASIC_USERS") or {}
        return cls(
            allow=_networks(value["ALLOW"]) if "ALLOW" in value else None,
            token=token.encode() if token else None,
            users={login.encode(): password.encode() for login, password in users.items()},
        )

    @property
    def challenge(self) -> bytes:
        """The ``WWW-Authenticate`` value a 401 carries."""
        return b'Basic realm="metrics"' if self.users else b'Bearer realm="metrics"'

    def refusal(self, scope: Scope) -> Refusal | None:
        """403 for an address outside ALLOW, 401 without the right credentials, else None."""
        if self.allow is not None and not self._allowed(scope.get("client")):
            return 403
        if self.token is None and not self.users:
            return None
        return None if self._authorized(_authorization(scope)) else 401

    def _allowed(self, client: Any) -> bool:
        try:
            address = ipaddress.ip_address(client[0])
        except (TypeError, ValueError, IndexError):
            return False  # no address (a Unix socket, a test client): not on the list
        assert self.allow is not None
        return any(address in network for network in self.allow)

    def _authorized(self, header: bytes) -> bool:
        scheme, _, credentials = header.partition(b" ")
        scheme = scheme.lower()
        if scheme == b"bearer" and self.token is not None:
            return hmac.compare_digest(credentials.strip(), self.token)
        if scheme == b"basic" and self.users:
            return self._basic(credentials.strip())
        return False

    def _basic(self, credentials: bytes) -> bool:
        try:
            login, _, password = base64.b64decode(credentials, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        expected = self.users.get(login, b"")
        return hmac.compare_digest(expected, password) and login in self.users


def _authorization(scope: Scope) -> bytes:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            return bytes(value)
    return b""
