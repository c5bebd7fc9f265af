"""A short-lived admin connection to Mosquitto's ``$CONTROL/dynamic-security/v1`` topic.

`control(options)` connects (gmqtt, MQTT 3.1.1) as the admin client, subscribes to the
plugin's response topic, and `DynsecConnection.run` sends batches of JSON commands, each with
its own ``correlationData``, and returns the plugin's answer to each. The plugin publishes
every answer to every subscriber of the response topic, so answers are matched by that id.
Commands may carry passwords: they go to the broker only (Mosquitto handles ``$CONTROL/``
publishes itself and never forwards them to subscribers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from gmqtt import MQTTConnectError
from gmqtt.mqtt.constants import MQTTv311

from protocol_adapters.mqtt._compat_gmqtt import Client

__all__ = ["BATCH", "DynsecConnection", "DynsecError", "Target", "control"]

logger = logging.getLogger("gateway.mqtt")

COMMAND_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = "$CONTROL/dynamic-security/v1/response"
BATCH: Final = 20
"""Commands per message. The plugin rewrites its whole JSON file after each change, so a batch
of changes to a large fleet takes a while; small batches keep each wait within the timeout."""


class DynsecError(ConnectionError):
    """The admin connection failed, was refused, or the plugin did not answer in time."""


@dataclass(frozen=True)
class Target:
    """Where and as whom the admin client connects."""

    host: str
    port: int
    username: str | None
    password: str | None
    timeout: float
    ssl: Any = False


class DynsecConnection:
    """One connected admin client; `run` sends commands and waits for their answers."""

    def __init__(self, client: Client, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        try:
            answers = json.loads(payload)["responses"]
        except (ValueError, KeyError, TypeError):
            logger.warning("dynsec: an answer that is not the plugin's JSON: %r", payload[:200])
            return 0
        for answer in answers if isinstance(answers, list) else []:
            waiter = self._waiting.pop(str(answer.get("correlationData")), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(answer)
        return 0

    async def run(self, commands: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The plugin's answer to each command, in order (``error`` set when it failed)."""
        answers: list[dict[str, Any]] = []
        for start in range(0, len(commands), BATCH):
            answers += await self._batch(commands[start : start + BATCH])
        return answers

    async def _batch(self, commands: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        ids = [uuid.uuid4().hex for _ in commands]
        futures = [loop.create_future() for _ in commands]
        self._waiting.update(zip(ids, futures, strict=True))
        tagged = [{**c, "correlationData": i} for c, i in zip(commands, ids, strict=True)]
        # QoS 0: the answer is the acknowledgement. (At QoS 1 Mosquitto's PUBACK and its
        # answer are two small writes; Nagle holds the answer for our delayed ACK, ~40 ms.)
        self.client.publish(COMMAND_TOPIC, json.dumps({"commands": tagged}).encode(), qos=0)
        try:
            async with asyncio.timeout(self.timeout):
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            raise DynsecError(
                "Mosquitto's dynamic-security plugin did not answer: is it loaded, and may the "
                "admin client publish to $CONTROL/dynamic-security/#?"
            ) from None
        finally:
            for key in ids:
                self._waiting.pop(key, None)


@asynccontextmanager
async def control(target: Target) -> AsyncIterator[DynsecConnection]:
    """An admin connection for the block; DynsecError when it cannot be made."""
    client = Client(f"gateway-dynsec-{uuid.uuid4().hex[:12]}", clean_session=True)
    if target.username is not None:
        client.set_auth_credentials(target.username, target.password)
    connection = DynsecConnection(client, target.timeout)
    client.on_message = connection.on_message
    client.on_subscribe = _on_subscribe
    try:
        async with asyncio.timeout(target.timeout):
            await client.connect(target.host, target.port, ssl=target.ssl, version=MQTTv311)
            await _subscribe(client)
    except (OSError, TimeoutError, MQTTConnectError) as exc:
        await client.close()
        raise DynsecError(
            f"cannot reach Mosquitto's dynamic security at {target.host}:{target.port}: "
            f"{exc or type(exc).__name__}"
        ) from None
    try:
        yield connection
    finally:
        await client.close()


async def _subscribe(client: Client) -> None:
    waiter: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
    client.subacks[client.subscribe(RESPONSE_TOPIC, qos=0)] = waiter
    codes = await waiter
    if not codes or codes[0] >= 0x80:
        raise DynsecError(f"the broker refused the subscription to {RESPONSE_TOPIC}")


def _on_subscribe(client: Client, mid: int, codes: tuple[int, ...], properties: Any) -> None:
    waiter = client.subacks.pop(mid, None)
    if waiter is not None and not waiter.done():
        waiter.set_result(tuple(codes))
