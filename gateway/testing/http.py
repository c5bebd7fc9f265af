"""`HttpCommunicator`: send one HTTP request to an application and read its response."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.testing.application import ApplicationCommunicator
from gateway.types import ASGIApp, Scope

Headers = list[tuple[bytes, bytes]]


def request_scope(scope_type: str, path: str, headers: Headers | None) -> Scope:
    """The scope keys HTTP and WebSocket share, with the query string split off the path."""
    if not isinstance(path, str):
        raise TypeError(f"Expected the path as str, got {type(path).__name__}.")
    parsed = urlsplit(path)
    return {
        "type": scope_type,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "path": unquote(parsed.path),
        "raw_path": parsed.path.encode("ascii", "backslashreplace"),
        "root_path": "",
        "query_string": parsed.query.encode("utf-8"),
        "headers": list(headers or []),
    }


class HttpCommunicator(ApplicationCommunicator):
    """Runs an application for one HTTP request; `get_response` returns what it answered."""

    def __init__(
        self,
        application: ASGIApp,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Headers | None = None,
    ) -> None:
        if not isinstance(body, bytes):
            raise TypeError(f"The request body must be bytes, not {type(body).__name__}.")
        scope = request_scope("http", path, headers)
        scope.update({"method": method.upper(), "scheme": "http"})
        self.body = body
        self.sent_request = False
        super().__init__(application, scope)

    async def get_response(self, timeout: float = 1) -> dict[str, Any]:
        """Send the request (once) and return the response's status, headers and body."""
        if not self.sent_request:
            self.sent_request = True
            await self.send_input({"type": "http.request", "body": self.body})
        start = await self.receive_output(timeout)
        assert start["type"] == "http.response.start", f"Expected a response start, got {start}"
        body = b""
        while True:
            chunk = await self.receive_output(timeout)
            assert chunk["type"] == "http.response.body", f"Expected a body chunk, got {chunk}"
            assert isinstance(chunk["body"], bytes), "The response body is not bytes"
            body += chunk["body"]
            if not chunk.get("more_body", False):
                break
        response = {key: value for key, value in start.items() if key != "type"}
        response.setdefault("headers", [])
        response["body"] = body
        return response
