"""Message types a consumer refuses, with the texts Channels users' tests match.

Each test dispatches to our consumer and to Channels' (when installed) the same way.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.consumers import AsyncConsumer
from gateway.types import Message
from tests.layers.reference import IMPLEMENTATIONS, import_reference


def consumer_with_private_method(name: str) -> Any:
    """A consumer of ours or Channels' with a private ``_secret`` method that must not run."""
    base: type[Any] = AsyncConsumer
    if name == "channels":
        base = import_reference("channels.consumer").AsyncConsumer

    class Private(base):
        called = False

        async def _secret(self, message: Message) -> None:
            type(self).called = True

        async def my_secret(self, message: Message) -> None:
            type(self).called = True

    return Private()


@pytest.mark.parametrize("message_type", ["_secret", ".my_secret", "._secret"])
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_a_type_naming_a_private_method_is_refused(name: str, message_type: str) -> None:
    consumer = consumer_with_private_method(name)
    with pytest.raises(ValueError, match=r"Malformed type in message \(leading underscore\)"):
        await consumer.dispatch({"type": message_type})
    assert not consumer.called


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_an_unhandled_type_is_named_as_channels_names_it(name: str) -> None:
    consumer = consumer_with_private_method(name)
    with pytest.raises(ValueError, match=r"No handler for message type chat\.message"):
        await consumer.dispatch({"type": "chat.message"})
