"""Password hashing off the database thread: a small pool of its own, counted.

Django's default hasher spends about half a second of CPU per check. Run on the one thread
that serves every adapter's database work (`gateway.db`), a burst of logins would hold up SMS
webhooks, telemetry and every other login behind it; here each check runs on a pool of
`HASH_THREADS` threads of its own (CPython's PBKDF2 releases the GIL, so they run in
parallel). `hashing` counts what runs now, the most at once and every check done, for tests
and operators. How many checks an adapter starts at once is its `gateway.logins` gate.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from django.contrib.auth import hashers

__all__ = ["HASH_THREADS", "PasswordHashing", "check_password", "hashing"]

HASH_THREADS: Final = 8
"""Threads of the process's hashing pool: the most checks that can run at once, all adapters."""


class PasswordHashing:
    """A pool of hashing threads and its counters: `running`, `peak`, `done`."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.running = 0
        """Checks hashing right now."""
        self.peak = 0
        """The most checks that hashed at once."""
        self.done = 0
        """Checks finished, refused or not."""
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    async def check(self, password: str, encoded: str | None) -> bool:
        """Whether `password` matches Django's `encoded` hash; None spends a hash and says no."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="gateway-hash")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._check, password, encoded)

    def reset_peak(self) -> None:
        """Start counting `peak` again from the checks running now."""
        with self._lock:
            self.peak = self.running

    def _check(self, password: str, encoded: str | None) -> bool:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            if encoded is None:
                # An unknown login takes as long to refuse as a wrong password.
                hashers.make_password(password)
                return False
            return hashers.check_password(password, encoded)
        finally:
            with self._lock:
                self.running -= 1
                self.done += 1


hashing: Final = PasswordHashing(HASH_THREADS)
"""The process's hashing pool."""


async def check_password(password: str, encoded: str | None) -> bool:
    """Django's ``check_password`` on the hashing pool; `encoded` None for no such login."""
    return await hashing.check(password, encoded)
