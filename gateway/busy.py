"""Busy answers held a while before they are sent: `BusyHold`.

An intake past its cap answers "busy, retry later" (HTTP 503, SMTP 451 or 421, MQTT CONNACK
3). Sent at once, a client that asks again as soon as it is answered (a flood, a client that
ignores Retry-After) asks as fast as the event loop can refuse it, and every refusal is loop
time taken from the other intakes. Held ``BUSY_DELAY`` seconds first, it asks once per
``BUSY_DELAY``. A client retrying on its own schedule (a mail provider, an SMS provider, a
mail server's queue, a device's back-off) loses nothing; a held answer costs its connection,
so at most so many are held at once and the rest are answered at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

__all__ = ["BUSY_DELAY", "BusyHold"]

BUSY_DELAY: Final = 1.0
"""The ``BUSY_DELAY`` of every intake that has one (``INTAKE``, ``LOGINS``, SMTP's)."""


class BusyHold:
    """Holds busy answers `delay` seconds each, at most `most` at once.

    Past `most` held, a busy answer goes at once: a client that does not wait for its answer
    (many connections at a time) gets no more connections and tasks kept open by holding.
    """

    def __init__(self, delay: float, most: int) -> None:
        self.delay = delay
        self.most = most
        self.holding = 0
        """Busy answers held now."""

    def _take(self) -> bool:
        if self.delay <= 0 or self.holding >= self.most:
            return False
        self.holding += 1
        return True

    async def hold(self) -> None:
        """Wait `delay` before the caller sends its busy answer (not past `most` held)."""
        if not self._take():
            return
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.holding -= 1

    def later(self, answer: Callable[[], None]) -> None:
        """Call `answer` (a protocol's synchronous busy answer) `delay` seconds from now."""
        if not self._take():
            answer()
            return

        def release_and_answer() -> None:
            self.holding -= 1
            answer()

        asyncio.get_running_loop().call_later(self.delay, release_and_answer)
