"""Django's synchronous code under HTTP requests, on a bounded pool of reused threads.

Django's ASGI handler gives every request a thread of its own (asgiref's
``ThreadSensitiveContext``): a new thread started for the request's first synchronous call
and a second one started at its end to join the first. Starting a thread blocks the event
loop until the new thread runs, so under many requests the loop waits on the GIL behind
dozens of view threads and every other protocol on it waits too.

`RequestThreads` keeps the one-thread-per-request contract (every synchronous call of a
request, middleware, view and signals, runs on the same thread, one at a time) with threads
that are started once and reused, and lets at most ``GATEWAY["HTTP"]["SYNC_THREADS"]``
synchronous calls run at once, as a threaded WSGI server runs that many requests: past it,
calls wait for a turn in the order they came, at no cost to the loop. While an adapter
waits on its database thread (a ``database_sync_to_async`` call pending), the bound is
``GATEWAY["HTTP"]["SYNC_THREADS_BUSY"]`` (1): every view thread computing beside that thread
makes it wait up to the switch interval (5 ms) for the GIL each time it gave it up, so a flood
of views would multiply an intake's database work by the number of views running. A request
waiting in async code (an async view, a long poll, a stream, a slow upload) holds its thread
but no turn; a call that waited a second runs past the bound, so calls that hold every turn while
waiting for others (a sync-only middleware around a long async view) slow requests down
but never hang them. Thread-local state such as Django's database connections stays with the
thread, so ``CONN_MAX_AGE`` keeps connections across requests as under a threaded WSGI
server.

A task a request leaves running must not make thread-sensitive calls after the response:
asgiref refuses them (``RuntimeError``) where Django alone would start yet another thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import ThreadSensitiveContext

from gateway.types import ASGIApp, Receive, Scope, Send

__all__ = ["RequestThreads", "SyncThreadsMiddleware"]

logger = logging.getLogger("gateway.server")

#: Seconds a synchronous call waits for a turn before it runs past the bound.
OVERFLOW_AFTER = 1.0

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Waiting:
    __slots__ = ("call", "future", "request", "started")

    def __init__(
        self, request: RequestThread, future: Future[Any], call: Callable[[], Any]
    ) -> None:
        self.request, self.future, self.call = request, future, call
        self.started = False


class RequestThreads:
    """Reused threads for requests, `size` of them running synchronous code at once.

    A call runs only while fewer than `size` calls run (`busy_size` while `busy()` says True);
    otherwise it waits for one to finish, in the order the calls came, and after
    `overflow_after` seconds runs anyway (past the bound) rather than wait on calls that may be
    waiting for it. A request takes a thread when
    its first call gets a turn and keeps it until it ends, so its calls share the thread's
    state; a request in async code (an async view, a stream, a slow upload) holds a thread but
    no turn. Threads of ended requests are kept for the next ones, up to `keep`.
    """

    def __init__(
        self,
        size: int,
        *,
        keep: int | None = None,
        overflow_after: float = OVERFLOW_AFTER,
        name: str = "gateway-http",
        busy: Callable[[], bool] | None = None,
        busy_size: int = 1,
    ) -> None:
        if size < 1 or busy_size < 1:
            raise ValueError("RequestThreads needs at least one thread")
        self.size = size
        self.busy = busy
        """While it says True, at most `busy_size` calls run (`resume` when it stops)."""
        self.busy_size = min(busy_size, size)
        self.keep = 4 * size if keep is None else keep
        self.overflow_after = overflow_after
        self.name = name
        self.overflowed = 0
        self.created = 0
        # The turns, the queue and the idle threads change on the loop's thread (calls,
        # requests ending) and on worker threads (a finished call hands its turn over).
        self._lock = threading.Lock()
        self._idle: list[ThreadPoolExecutor] = []
        self._running = 0
        self._queue: deque[_Waiting] = deque()
        self._warned_at = -math.inf

    @property
    def running(self) -> int:
        """Synchronous calls running in a turn now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Calls waiting for a turn."""
        return len(self._queue)

    @property
    def idle(self) -> int:
        """Threads kept for the next requests."""
        return len(self._idle)

    def _limit(self) -> int:
        """Calls that may run in a turn now."""
        return self.busy_size if self.busy is not None and self.busy() else self.size

    def resume(self) -> None:
        """Starts waiting calls up to the bound: `busy` may have stopped saying True."""
        started = []
        with self._lock:
            limit = self._limit()
            while self._queue and self._running < limit:
                following = self._queue.popleft()
                following.started = True
                self._running += 1
                started.append((self._bind(following.request), following))
        for executor, following in started:
            executor.submit(self._turn, following.request, following.future, following.call)

    def thread(self) -> RequestThread:
        """A request's executor; it takes a thread from the pool when its first call runs."""
        return RequestThread(self)

    def _bind(self, request: RequestThread) -> ThreadPoolExecutor:
        """The request's thread, taken now if it has none (under the lock)."""
        if request._executor is None:
            if self._idle:
                request._executor = self._idle.pop()
            else:
                self.created += 1
                prefix = f"{self.name}-{self.created}"
                request._executor = ThreadPoolExecutor(1, thread_name_prefix=prefix)
        return request._executor

    def _unbind(self, request: RequestThread) -> None:
        """The ended request's thread back to the idle ones (under the lock)."""
        executor, request._executor = request._executor, None
        if executor is None:
            return
        # A call the request stopped waiting for (it was cancelled) may still be running:
        # the next request's calls queue behind it on the thread, one at a time.
        if len(self._idle) < self.keep:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)

    def _submit(self, request: RequestThread, future: Future[Any], call: Callable[[], Any]) -> None:
        """Runs `call` on the request's thread in a turn, now or when one is free."""
        with self._lock:
            if self._running < self._limit():
                self._running += 1
                executor = self._bind(request)
                waiting = None
            else:
                waiting = _Waiting(request, future, call)
                self._queue.append(waiting)
        if waiting is None:
            executor.submit(self._turn, request, future, call)
            return
        asyncio.get_running_loop().call_later(self.overflow_after, self._overflow, waiting)

    def _turn(
        self,
        request: RequestThread,
        future: Future[Any],
        call: Callable[[], Any],
        in_turn: bool = True,
    ) -> None:
        """Runs on the request's thread; then hands its turn (if it had one) to the next call."""
        try:
            _run(future, call)
        finally:
            following = None
            with self._lock:
                if request._closed:  # a call left behind by its request (cancelled)
                    self._unbind(request)
                if in_turn:
                    # Its turn goes to the next call unless the bound is lower now (busy).
                    handed_over = bool(self._queue) and self._running <= self._limit()
                    following = self._queue.popleft() if handed_over else None
                    if following is None:
                        self._running -= 1
                    else:
                        following.started = True
                        executor = self._bind(following.request)
            if following is not None:
                executor.submit(self._turn, following.request, following.future, following.call)

    def _overflow(self, waiting: _Waiting) -> None:
        with self._lock:
            if waiting.started:
                return
            waiting.started = True
            self._queue.remove(waiting)
            self.overflowed += 1
            executor = self._bind(waiting.request)
        executor.submit(self._turn, waiting.request, waiting.future, waiting.call, False)
        now = time.monotonic()
        if now - self._warned_at >= 10:
            self._warned_at = now
            logger.warning(
                "A synchronous call waited %.1f s for one of GATEWAY['HTTP']['SYNC_THREADS'] "
                "(%d) and ran past the bound (%d so far): every turn is held by a call that "
                "blocks, such as a sync-only middleware around a long async view or a view "
                "waiting on I/O.",
                self.overflow_after,
                self.size,
                self.overflowed,
            )

    def _close(self, request: RequestThread) -> None:
        with self._lock:
            request._closed = True
            self._unbind(request)

    def shutdown(self) -> None:
        """Let the kept threads end; threads still serving a request end after it."""
        with self._lock:
            idle, self._idle = self._idle, []
        for executor in idle:
            executor.shutdown(wait=False)


class RequestThread(Executor):
    """One request's thread, taken from the pool when the request's first call runs."""

    def __init__(self, pool: RequestThreads) -> None:
        self._pool = pool
        self._executor: ThreadPoolExecutor | None = None  # the pool's lock guards it
        self._closed = False

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        if self._closed:
            raise RuntimeError("the request has ended")
        future: Future[_T] = Future()
        self._pool._submit(self, future, lambda: fn(*args, **kwargs))
        return future

    def close(self) -> None:
        """The request ended: its thread goes back to the pool."""
        if not self._closed:
            self._pool._close(self)


def _run(future: Future[Any], call: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = call()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


class SyncThreadsMiddleware:
    """Runs each HTTP request's synchronous code on a thread of `threads`; other scopes pass."""

    def __init__(self, app: ASGIApp, threads: RequestThreads) -> None:
        self.app = app
        self.threads = threads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        thread = self.threads.thread()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.app(scope, receive, send)
        finally:
            thread.close()
