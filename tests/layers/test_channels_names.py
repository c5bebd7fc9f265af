"""Channels' layer names that user code imports: the default alias, name checks."""

from __future__ import annotations

import gateway
from gateway.layers import DEFAULT_CHANNEL_LAYER


def test_default_alias_is_exported_from_gateway_as_channels_does() -> None:
    assert gateway.DEFAULT_CHANNEL_LAYER == DEFAULT_CHANNEL_LAYER == "default"
