"""Making two writers meet: a lock held from the side, and concurrent callers on own threads.

Each racer runs on a thread of its own, so it has a database connection of its own, as two
gateway processes would. A test holds a lock from a separate connection, starts the racers,
waits until PostgreSQL reports all of them blocked on that lock, then lets go: they reach the
contended statement together, every time, with no sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import pytest
from django.db import connection, connections

__all__ = ["race_behind_lock"]

T = TypeVar("T")
WAIT = 30.0  # generous: only there to turn a hang into a failure


def _connect(autocommit: bool) -> psycopg.Connection[Any]:
    settings = connection.settings_dict  # NAME is the test database's by now
    return psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=autocommit,
    )


def _blocked_sessions(monitor: psycopg.Connection[Any]) -> int:
    row = monitor.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_until_blocked(count: int, racers: Sequence[Future[Any]]) -> None:
    deadline = time.monotonic() + WAIT
    with _connect(autocommit=True) as monitor:  # each query a transaction: fresh statistics
        while _blocked_sessions(monitor) < count:
            for racer in racers:
                if racer.done():
                    racer.result()  # raises the racer's error, if any
                    pytest.fail("a racer finished without waiting for the held lock")
            if time.monotonic() > deadline:
                pytest.fail(f"{count} sessions never blocked on the held lock")
            time.sleep(0.01)


def _own_connections(func: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        try:
            return func()
        finally:
            connections.close_all()  # this thread's, as a process would on exit

    return run


def race_behind_lock(lock: str, params: Sequence[object], *racers: Callable[[], T]) -> list[T]:
    """Hold `lock` (SQL run in an open transaction), start the racers each on a thread of its
    own, one after the other as the one before is blocked on it, release it, and return their
    results in order.

    Behind a row lock (SELECT ... FOR UPDATE, or an uncommitted row) PostgreSQL then lets
    them through in that order; behind a table lock in a shared mode, all at once.
    """
    with (
        _connect(autocommit=False) as side,
        ThreadPoolExecutor(len(racers), thread_name_prefix="racer") as pool,
    ):
        side.execute(lock, params)
        futures: list[Future[T]] = []
        try:
            for racer in racers:  # one by one: they queue on the lock in the order given
                futures.append(pool.submit(_own_connections(racer)))
                _wait_until_blocked(len(futures), futures)
        finally:
            side.rollback()
        return [future.result(timeout=WAIT) for future in futures]
