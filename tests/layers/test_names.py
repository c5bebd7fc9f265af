"""Random parts of channel names: unique, hex, and never shared with a forked child."""

from __future__ import annotations

import multiprocessing
import os

from gateway.layers.memory import InMemoryChannelLayer
from gateway.layers.names import token_hex


def test_tokens_are_hex_of_the_size_asked_and_unique() -> None:
    tokens = [token_hex(8) for _ in range(20_000)]  # several refills of the buffer
    assert all(len(token) == 16 and int(token, 16) >= 0 for token in tokens)
    assert len(set(tokens)) == len(tokens)
    assert len(token_hex(5000)) == 10_000  # more than one refill's worth


def _child_tokens(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put([token_hex(8) for _ in range(50)])


def test_a_forked_child_does_not_draw_the_parent_s_next_tokens() -> None:
    token_hex(8)  # the buffer holds bytes the parent has not used yet
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    child = context.Process(target=_child_tokens, args=(queue,))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(30)
    ours = [token_hex(8) for _ in range(50)]
    assert not set(ours) & set(theirs)
    assert child.exitcode == 0
    assert os.getpid() != child.pid


async def test_new_channel_names_are_unique() -> None:
    layer = InMemoryChannelLayer()
    names = {await layer.new_channel() for _ in range(5000)}
    assert len(names) == 5000
    assert all(name.startswith(f"specific.{layer.client_prefix}!") for name in names)
