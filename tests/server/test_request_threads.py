"""Django's views under the gateway run on GATEWAY["HTTP"]["SYNC_THREADS"] reused threads.

Each test runs a real gateway (uvicorn) in the test's loop with Django's own ASGI handler
behind it and real HTTP clients.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import override_settings
from django.urls import path

from gateway.conf import GatewaySettings
from gateway.db import close_old_connections_enabled, database_sync_to_async
from gateway.server import Gateway
from gateway.turns import thread_calls
from routers import ProtocolTypeRouter
from tests.server.test_gateway import http_url, start

pytestmark = pytest.mark.integration


class _Running:
    """How many views run at once, and the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.release = threading.Event()
        self.held = asyncio.Event()

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


running = _Running()


def thread_view(request: HttpRequest) -> JsonResponse:
    with running:
        threading.Event().wait(0.02)
        return JsonResponse(
            {"view": threading.get_ident(), "middleware": getattr(request, "middleware_thread", 0)}
        )


def blocking_view(request: HttpRequest) -> HttpResponse:
    with running:
        running.release.wait(10)
    return HttpResponse("released")


async def held_view(request: HttpRequest) -> HttpResponse:
    await running.held.wait()
    return HttpResponse("held")


def thread_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[..., Any]:
    def middleware(request: HttpRequest) -> Any:
        request.middleware_thread = threading.get_ident()  # type: ignore[attr-defined]
        return get_response(request)

    return middleware


urlpatterns = [
    path("thread/", thread_view),
    path("block/", blocking_view),
    path("held/", held_view),
]
MIDDLEWARE = [f"{__name__}.thread_middleware"]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[str, Any]], Any]]:
    """Starts a gateway with the given GATEWAY["HTTP"] over Django's ASGI handler."""
    global running
    running = _Running()
    started: list[tuple[Gateway, asyncio.Task[int]]] = []

    async def run(http: dict[str, Any]) -> tuple[Gateway, str]:
        app = ProtocolTypeRouter({"http": get_asgi_application()})
        settings = GatewaySettings({"HTTP": {"PORT": 0, **http}, "ADAPTERS": {}})
        gateway = Gateway(app, settings=settings)
        started.append((gateway, await start(gateway)))
        return gateway, http_url(gateway.listeners)

    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE):
        yield run
        running.release.set()
        running.held.set()
        for gateway, task in started:
            gateway.stop()
            assert await task == 0


async def get_all(url: str, count: int) -> list[dict[str, int]]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=count)) as http:
        answers = await asyncio.gather(*(http.get(url) for _ in range(count)))
    assert [answer.status_code for answer in answers] == [200] * count
    return [answer.json() for answer in answers]


async def test_at_most_sync_threads_views_run_at_once(serve: Any) -> None:
    _, url = await serve({"SYNC_THREADS": 2})
    answers = await get_all(f"{url}/thread/", 20)
    assert running.most == 2
    # Middleware and view of one request share its thread.
    assert all(answer["middleware"] == answer["view"] for answer in answers)


async def test_threads_are_reused_by_the_next_requests(serve: Any) -> None:
    gateway, url = await serve({"SYNC_THREADS": 2})
    pool = gateway._request_threads
    assert pool is not None
    threads = set()
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(5):
            threads.add((await http.get(f"{url}/thread/")).json()["view"])
            # A request ends (request_finished, its thread given back) after its answer.
            while pool.idle < pool.created:
                await asyncio.sleep(0.01)
    assert len(threads) == 1
    assert (pool.created, pool.idle) == (1, 1)


async def test_without_a_bound_each_request_gets_a_new_thread_as_under_django(serve: Any) -> None:
    _, url = await serve({"SYNC_THREADS": None})
    answers = await get_all(f"{url}/thread/", 20)
    assert len({answer["view"] for answer in answers}) == 20
    assert running.most > 2
    assert all(answer["middleware"] == answer["view"] for answer in answers)


async def test_the_default_bound_is_four(serve: Any) -> None:
    gateway, url = await serve({})
    await get_all(f"{url}/thread/", 30)
    assert running.most == 4
    assert gateway._request_threads is not None
    assert gateway._request_threads.size == 4


async def test_requests_in_async_code_leave_the_turn_to_others(serve: Any) -> None:
    with override_settings(MIDDLEWARE=[]):
        gateway, url = await serve({"SYNC_THREADS": 1})
    async with httpx.AsyncClient(timeout=30) as http:
        held = [asyncio.create_task(http.get(f"{url}/held/")) for _ in range(3)]
        await asyncio.sleep(0.3)
        # Three requests wait in an async view: each holds its thread, none holds a turn.
        assert not any(task.done() for task in held)
        answer = await http.get(f"{url}/thread/")
        assert answer.status_code == 200
        running.held.set()
        assert [(await task).text for task in held] == ["held"] * 3
    assert gateway._request_threads.overflowed == 0


async def test_a_call_waiting_on_turns_held_by_blocked_calls_runs_past_the_bound(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The sync-only middleware keeps its turn while the async view under it waits.
    gateway, url = await serve({"SYNC_THREADS": 1})
    async with httpx.AsyncClient(timeout=30) as http:
        held = [asyncio.create_task(http.get(f"{url}/held/")) for _ in range(3)]
        await asyncio.sleep(0.3)
        answer = await http.get(f"{url}/thread/")
        assert answer.status_code == 200
        running.held.set()
        assert [(await task).text for task in held] == ["held"] * 3
    assert gateway._request_threads.overflowed >= 1
    assert "ran past the bound" in caplog.text


async def test_calls_past_the_bound_wait_for_a_turn_even_when_their_client_left(
    serve: Any,
) -> None:
    gateway, url = await serve({"SYNC_THREADS": 1})
    pool = gateway._request_threads
    assert pool is not None
    async with httpx.AsyncClient(timeout=30) as http:
        blocking = asyncio.create_task(http.get(f"{url}/block/"))
        while running.now == 0:
            await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(http.get(f"{url}/thread/")) for _ in range(3)]
        while pool.waiting < 3:
            await asyncio.sleep(0.01)
        assert pool.running == 1
        waiting[0].cancel()  # its client gives up and closes the connection
        running.release.set()
        assert (await blocking).text == "released"
        assert [(await task).status_code for task in waiting[1:]] == [200, 200]
        answer = await http.get(f"{url}/thread/")
        assert answer.status_code == 200
        # Every thread comes back, the left request's too.
        while pool.running or pool.waiting or pool.idle < pool.created:
            await asyncio.sleep(0.01)
    assert running.most == 1
    assert pool.overflowed == 0


class _AdapterWaiting:
    """A `database_sync_to_async` call an adapter waits on, pending until `end()`."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.task: asyncio.Task[bool] | None = None

    async def __aenter__(self) -> _AdapterWaiting:
        # The call touches no database: the connections are not looked at around it.
        token = close_old_connections_enabled.set(False)
        try:
            self.task = asyncio.create_task(database_sync_to_async(self.release.wait)(10))
        finally:
            close_old_connections_enabled.reset(token)
        await asyncio.sleep(0)  # the task starts and counts its call
        assert thread_calls() == 1
        return self

    async def end(self) -> None:
        self.release.set()
        assert self.task is not None
        assert await self.task
        assert thread_calls() == 0

    async def __aexit__(self, *exc: object) -> None:
        if not self.release.is_set():
            await self.end()


async def test_while_an_adapter_waits_on_its_database_thread_views_run_one_at_a_time(
    serve: Any,
) -> None:
    gateway, url = await serve({"SYNC_THREADS": 4})
    async with _AdapterWaiting():
        # 12 views of 20 ms: one at a time, none waits the second that runs past the bound.
        answers = await get_all(f"{url}/thread/", 12)
        assert running.most == 1
        assert all(answer["middleware"] == answer["view"] for answer in answers)
    running.most = 0
    await get_all(f"{url}/thread/", 12)
    assert running.most == 4
    assert gateway._request_threads.overflowed == 0


async def test_views_held_back_start_when_the_adapter_call_ends(serve: Any) -> None:
    gateway, url = await serve({"SYNC_THREADS": 4, "SYNC_THREADS_BUSY": 2})
    pool = gateway._request_threads
    assert pool is not None
    async with httpx.AsyncClient(timeout=30) as http, _AdapterWaiting() as adapter:
        blocked = [asyncio.create_task(http.get(f"{url}/block/")) for _ in range(4)]
        while pool.waiting < 2 or running.now < 2:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)
        assert (running.now, pool.running, pool.waiting) == (2, 2, 2)
        await adapter.end()  # the two waiting views start now, not after a second
        while running.now < 4:
            await asyncio.sleep(0.005)
        assert pool.overflowed == 0
        running.release.set()
        assert [(await task).text for task in blocked] == ["released"] * 4
    assert running.most == 4


async def test_a_turn_freed_while_the_adapter_waits_is_not_handed_over_past_the_lower_bound(
    serve: Any,
) -> None:
    gateway, url = await serve({"SYNC_THREADS": 2})
    pool = gateway._request_threads
    assert pool is not None
    async with httpx.AsyncClient(timeout=30) as http:
        blocked = [asyncio.create_task(http.get(f"{url}/block/")) for _ in range(2)]
        while running.now < 2:
            await asyncio.sleep(0.005)
        queued = [asyncio.create_task(http.get(f"{url}/thread/")) for _ in range(4)]
        while pool.waiting < 4:
            await asyncio.sleep(0.005)
        async with _AdapterWaiting():
            running.most = 0
            running.release.set()  # both turns end; one goes on, one is kept back
            assert [(await task).text for task in blocked] == ["released"] * 2
            assert [(await task).status_code for task in queued] == [200] * 4
            assert running.most == 1
    assert pool.overflowed == 0


async def test_without_a_busy_bound_views_keep_every_thread_beside_the_adapter(
    serve: Any,
) -> None:
    _, url = await serve({"SYNC_THREADS": 4, "SYNC_THREADS_BUSY": None})
    async with _AdapterWaiting():
        await get_all(f"{url}/thread/", 12)
    assert running.most == 4
