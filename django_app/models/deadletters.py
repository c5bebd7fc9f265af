"""`DeadLetter`: an event the application failed on every attempt, kept for replay."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from django.db import models

__all__ = ["DeadLetter", "decode_scope", "encode_scope"]

_BYTES = "__bytes__"
_TUPLE = "__tuple__"
_REPR = "__repr__"
_STR = "__str__"


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {_BYTES: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(item) for item in value]}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _encode(item) for key, item in value.items()}
    if isinstance(value, str) and "\x00" in value:
        # PostgreSQL's jsonb cannot hold NUL: keep such a string (an SMTP HELO, say) as UTF-8.
        return {_STR: base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    # Not restorable (a lifespan object, say): keep a description rather than fail the store.
    return {_REPR: repr(value)}


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if isinstance(value, dict):
        if set(value) == {_BYTES}:
            return base64.b64decode(value[_BYTES])
        if set(value) == {_TUPLE}:
            return tuple(_decode(item) for item in value[_TUPLE])
        if set(value) == {_STR}:
            return base64.b64decode(value[_STR]).decode("utf-8", "surrogatepass")
        return {key: _decode(item) for key, item in value.items()}
    return value


def encode_scope(scope: Mapping[str, Any]) -> dict[str, Any]:
    """A scope as JSON: bytes as ``{"__bytes__": base64}``, tuples as ``{"__tuple__": [...]}``,
    strings holding NUL (which PostgreSQL's jsonb refuses) as ``{"__str__": base64}``.

    The lifespan ``state`` is left out: it belongs to the process, not to the event.
    """
    return {str(k): _encode(v) for k, v in scope.items() if k != "state"}


def decode_scope(data: Mapping[str, Any]) -> dict[str, Any]:
    """The scope `encode_scope` stored, with its bytes and tuples restored."""
    return {key: _decode(value) for key, value in data.items()}


class DeadLetter(models.Model):
    """An event (scope and payload) the application failed on, with the error; replayable."""

    protocol = models.CharField(max_length=32, db_index=True)
    adapter = models.CharField(max_length=100, blank=True, db_index=True)
    key = models.TextField(help_text="The ordering key: the MQTT topic, the mailbox, the sender.")
    scope = models.JSONField(default=dict, help_text="The event's scope; bytes base64-encoded.")
    payload = models.BinaryField(default=b"")
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=1)
    failed_at = models.DateTimeField(db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_count = models.PositiveIntegerField(default=0)

    class Meta:
        app_label = "gateway"
        ordering = ["-failed_at", "-id"]
        verbose_name = "dead letter"

    def __str__(self) -> str:
        return f"{self.protocol} {self.key} ({self.failed_at:%Y-%m-%d %H:%M:%S})"

    def get_scope(self) -> dict[str, Any]:
        """The stored scope, decoded."""
        return decode_scope(self.scope)

    def get_payload(self) -> bytes:
        """The payload as bytes (some databases hand back a memoryview)."""
        return bytes(self.payload)
