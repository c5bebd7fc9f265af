"""MQTT adapters: the embedded broker and the client of an external broker (gmqtt).

The adapters load on first use, so importing this package does not import gmqtt. The
embedded broker needs no extra: it is the gateway's own MQTT 3.1.1 implementation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["EmbeddedBroker", "EmqxAuth", "ExternalBroker", "MosquittoDynsec"]

_EXPORTS: dict[str, str] = {
    "EmbeddedBroker": "protocol_adapters.mqtt.embedded",
    "ExternalBroker": "protocol_adapters.mqtt.external",
    "MosquittoDynsec": "protocol_adapters.mqtt.dynsec",
    "EmqxAuth": "protocol_adapters.mqtt.emqx_auth",
}

if TYPE_CHECKING:
    from protocol_adapters.mqtt.dynsec import MosquittoDynsec
    from protocol_adapters.mqtt.embedded import EmbeddedBroker
    from protocol_adapters.mqtt.emqx_auth import EmqxAuth
    from protocol_adapters.mqtt.external import ExternalBroker


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'protocol_adapters.mqtt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
