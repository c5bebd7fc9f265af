"""A lean Redis connection for the hot path: one socket shared by every coroutine of a loop.

Commands are written as soon as they are issued and replies are matched to them in order
(Redis answers in order), so concurrent sends are pipelined for free and a command costs one
write and one future: a fraction of a pooled redis-py call. Replies are parsed by hiredis when
it is installed, else by a small RESP2 parser. Everything else (streams, SCAN) uses redis-py.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any, cast

from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.layers.redis.config import HostSpec

__all__ = ["ReplyHandler", "WireConnection", "open_connection", "pack", "pack_args"]

_HiredisReader: Any
try:  # pragma: no cover - which one depends on the installation
    from hiredis import Reader as _HiredisReader
except ImportError:  # pragma: no cover
    _HiredisReader = None


class ReplyError(Exception):
    """An error reply, as the parser hands it over (turned into ResponseError for callers)."""


def pack(args: tuple[Any, ...] | list[Any]) -> bytes:
    """Encode one command in RESP."""
    return b"*%d\r\n%b" % (len(args), pack_args(args))


def pack_args(args: tuple[Any, ...] | list[Any]) -> bytes:
    """Encode arguments in RESP without the count that heads a command (for cached heads)."""
    parts: list[bytes] = []
    append = parts.append
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            data = arg
        elif kind is str:
            data = arg.encode()
        elif kind is int or kind is float:
            data = repr(arg).encode()
        elif isinstance(arg, bytes | bytearray | memoryview):
            data = bytes(arg)
        elif isinstance(arg, str):
            data = str.encode(arg)
        else:
            raise TypeError(f"cannot send {kind.__name__} to Redis")
        append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class _Reader:
    """A RESP2 parser with hiredis' interface: feed(bytes), gets() -> reply or False."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def gets(self) -> Any:
        try:
            reply, position = self._parse(self._position)
        except IndexError:
            return False
        self._position = position
        if position > 65536:
            del self._buffer[:position]
            self._position = 0
        return reply

    def _line(self, position: int) -> tuple[bytes, int]:
        end = self._buffer.find(b"\r\n", position)
        if end < 0:
            raise IndexError
        return bytes(self._buffer[position:end]), end + 2

    def _parse(self, position: int) -> tuple[Any, int]:
        line, position = self._line(position)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest, position
        if kind == b"-":
            return ReplyError(rest.decode(errors="replace")), position
        if kind == b":":
            return int(rest), position
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None, position
            if len(self._buffer) < position + length + 2:
                raise IndexError
            return bytes(self._buffer[position : position + length]), position + length + 2
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None, position
            items = []
            for _ in range(count):
                item, position = self._parse(position)
                items.append(item)
            return items, position
        raise RedisConnectionError(f"unexpected reply from Redis: {line!r}")


class ReplyHandler:
    """Takes the replies of commands in place of futures, as they arrive (no task hop)."""

    def reply(self, value: Any) -> None:
        raise NotImplementedError

    def fail(self, error: Exception) -> None:
        """An error reply, or the connection was lost with the command unanswered."""
        raise NotImplementedError


def _reader() -> Any:
    if _HiredisReader is not None:
        return _HiredisReader(replyError=ReplyError)
    return _Reader()


class WireConnection(asyncio.Protocol):
    """One Redis connection multiplexing the commands of many coroutines."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self._reader = _reader()
        self._waiting: deque[asyncio.Future[Any] | ReplyHandler] = deque()
        # When Redis last answered (or was first asked): a connection waiting on replies with
        # no answer for `timeout` is dead. Blocking pops queue up behind each other, so
        # the time since the last answer is what counts, not each command's age.
        self._progress = time.monotonic()
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False
        self._loop = asyncio.get_running_loop()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        self._progress = time.monotonic()
        while (reply := reader.gets()) is not False:
            future = waiting.popleft()
            if isinstance(future, ReplyHandler):
                if isinstance(reply, ReplyError):
                    future.fail(ResponseError(str(reply)))
                else:
                    future.reply(reply)
            elif future.done():
                continue
            elif isinstance(reply, ReplyError):
                future.set_exception(ResponseError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        error = RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        while self._waiting:
            future = self._waiting.popleft()
            if isinstance(future, ReplyHandler):
                future.fail(error)
            elif not future.done():
                future.set_exception(error)

    # Commands

    def execute(self, *args: Any) -> asyncio.Future[Any]:
        """Write one command now; the future gets its reply."""
        return self.write(pack(args), 1)[0]

    def execute_many(self, *commands: tuple[Any, ...]) -> list[asyncio.Future[Any]]:
        """Write several commands in one write (a pipeline); a future per reply."""
        return self.write(b"".join(pack(command) for command in commands), len(commands))

    def request(self, data: bytes) -> asyncio.Future[Any]:
        """Write one encoded command; the future gets its reply (the hot path's `execute`)."""
        if self.closed or self.transport is None:
            raise RedisConnectionError("connection to Redis is closed")
        self.transport.write(data)
        waiting = self._waiting
        if not waiting:
            self._progress = time.monotonic()
        future = self._loop.create_future()
        waiting.append(future)
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self.timeout, self._check)
        return future

    def write_to(self, data: bytes, replies: int, handler: ReplyHandler) -> None:
        """Write commands whose `replies` replies go to `handler` as they arrive."""
        if self.closed or self.transport is None:
            raise RedisConnectionError("connection to Redis is closed")
        self.transport.write(data)
        if not self._waiting:
            self._progress = time.monotonic()
        self._waiting.extend([handler] * replies)
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self.timeout, self._check)

    def write(self, data: bytes, replies: int) -> list[asyncio.Future[Any]]:
        if self.closed or self.transport is None:
            raise RedisConnectionError("connection to Redis is closed")
        self.transport.write(data)
        if not self._waiting:
            self._progress = time.monotonic()
        create = self._loop.create_future
        futures = [create() for _ in range(replies)]
        self._waiting.extend(futures)
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self.timeout, self._check)
        return futures

    def _check(self) -> None:
        """Close a connection whose oldest command waits longer than the timeout."""
        self._watchdog = None
        if not self._waiting:
            return
        if time.monotonic() - self._progress > self.timeout:
            self.abort(RedisTimeoutError(f"Redis did not answer within {self.timeout:g}s"))
            return
        self._watchdog = self._loop.call_later(self.timeout, self._check)

    def abort(self, error: Exception | None = None) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(error)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


async def open_connection(
    spec: HostSpec, timeout: float, connect_timeout: float = 2.0
) -> WireConnection:
    """Connect to a host (TCP, TLS for rediss://, or a unix socket), then AUTH and SELECT."""
    options: dict[str, Any] = dict(parse_url(spec.url)) if spec.url is not None else {}
    options.update(spec.kwargs)
    if spec.sentinels:
        options["host"], options["port"] = await _master_address(spec, connect_timeout)
    loop = asyncio.get_running_loop()
    connection = WireConnection(timeout)
    use_ssl = options.get("ssl") or options.get("connection_class") is SSLConnection
    try:
        async with asyncio.timeout(options.get("socket_connect_timeout") or connect_timeout):
            if options.get("path") or options.get("unix_socket_path"):
                path = options.get("path") or options["unix_socket_path"]
                await loop.create_unix_connection(lambda: connection, path)
            else:
                context = _ssl_context(options) if use_ssl else None
                host = options.get("host", "localhost")
                await loop.create_connection(
                    lambda: connection, host, int(options.get("port", 6379)), ssl=context
                )
            await _handshake(connection, options)
    except TimeoutError as exc:
        connection.abort()
        raise RedisTimeoutError(f"connecting to Redis {spec.label} timed out") from exc
    except ResponseError:
        connection.abort()
        raise
    return connection


async def _master_address(spec: HostSpec, connect_timeout: float) -> tuple[str, int]:
    """Ask the Sentinels, in turn, where the master is now."""
    errors = []
    for host, port in spec.sentinels:
        sentinel = HostSpec(kwargs={"host": host, "port": port, **spec.sentinel_kwargs})
        try:
            connection = await open_connection(sentinel, connect_timeout, connect_timeout)
        except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
            errors.append(f"{host}:{port}: {exc}")
            continue
        try:
            reply = await asyncio.wait_for(
                connection.execute("SENTINEL", "get-master-addr-by-name", spec.master_name),
                connect_timeout,
            )
        except (TimeoutError, RedisConnectionError, ResponseError) as exc:
            errors.append(f"{host}:{port}: {exc}")
            continue
        finally:
            connection.close()
        if reply:
            return reply[0].decode(), int(reply[1])
        errors.append(f"{host}:{port} knows no master {spec.master_name!r}")
    raise RedisConnectionError(f"no Sentinel gave the master's address: {'; '.join(errors)}")


async def _handshake(connection: WireConnection, options: dict[str, Any]) -> None:
    password = options.get("password")
    if password:
        username = options.get("username")
        auth = ("AUTH", username, password) if username else ("AUTH", password)
        await connection.execute(*auth)
    db = int(options.get("db") or 0)
    if db:
        await connection.execute("SELECT", db)


def _ssl_context(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    requirement = options.get("ssl_cert_reqs", "required")
    if requirement in ("none", None, ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
