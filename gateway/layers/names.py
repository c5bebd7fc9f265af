"""Random parts of channel names, drawn from a buffer of `os.urandom`.

`secrets.token_hex` makes a system call per name, and the call gives up the GIL: under a
thread that wants it (a database writer), the event loop then waits up to the interpreter's
switch interval to get it back, for each reply channel of each request. The buffer is
refilled 4 KiB at a time and emptied in a forked child, so that no two processes share it.
"""

from __future__ import annotations

import os
import threading

__all__ = ["token_hex"]

_REFILL = 4096
_pool = bytearray()
_lock = threading.Lock()


def token_hex(nbytes: int) -> str:
    """`nbytes` random bytes as hex, as `secrets.token_hex` gives them."""
    global _pool
    with _lock:
        if len(_pool) < nbytes:
            _pool = bytearray(os.urandom(max(_REFILL, nbytes)))
        chunk = _pool[-nbytes:]
        del _pool[-nbytes:]
    return chunk.hex()


def _forget() -> None:
    global _pool
    _pool = bytearray()


os.register_at_fork(after_in_child=_forget)
