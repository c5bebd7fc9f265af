"""A provider's REST sender over httpx, for the APIs that are plain HTTP (Vonage, Plivo)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from gateway.sms import SmsStore
from gateway.sms_rest import RestSmsSender, TransientSendError

__all__ = ["HttpxSmsSender"]


class HttpxSmsSender(RestSmsSender):
    """A `RestSmsSender` whose `post` calls `request`: one httpx client, made on first use."""

    def __init__(self, values: Mapping[str, Any], store: SmsStore) -> None:
        super().__init__(values, store)
        self._client: httpx.AsyncClient | None = None

    def auth(self) -> tuple[str, str] | None:
        """HTTP basic credentials for every request; None when they go in the body."""
        return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None

    async def request(self, url: str, **content: Any) -> httpx.Response:
        """POST `content` (``data=`` or ``json=``); raises TransientSendError for the network,
        a 5xx or a 429, and gives back any other answer."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, auth=self.auth())
        try:
            response = await self._client.post(url, **content)
        except httpx.HTTPError as exc:
            raise TransientSendError(repr(exc)) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientSendError(f"HTTP {response.status_code}", response.status_code)
        return response
