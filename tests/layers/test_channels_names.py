"""Channels' layer names that user code imports: the default alias, name checks."""

from __future__ import annotations

from typing import Any

import pytest

import gateway
from gateway.layers import DEFAULT_CHANNEL_LAYER, BaseChannelLayer
from tests.layers.reference import IMPLEMENTATIONS, import_reference


def test_default_alias_is_exported_from_gateway_as_channels_does() -> None:
    assert gateway.DEFAULT_CHANNEL_LAYER == DEFAULT_CHANNEL_LAYER == "default"


def base_layer(name: str) -> Any:
    """A BaseChannelLayer of ours, or of Channels when the reference is installed."""
    if name == "channels":
        return import_reference("channels.layers").BaseChannelLayer()
    return BaseChannelLayer()


TOO_LONG = "a" * 101


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_name_errors_match_the_layers_invalid_name_error(name: str) -> None:
    layer = base_layer(name)
    with pytest.raises(TypeError, match=layer.invalid_name_error.format("Group")):
        layer.require_valid_group_name(TOO_LONG)
    with pytest.raises(TypeError, match=layer.invalid_name_error.format("Channel")):
        layer.require_valid_channel_name(TOO_LONG)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_name_error_text_is_the_one_channels_users_match(name: str) -> None:
    layer = base_layer(name)
    wording = "Group name must be a valid unicode string with length < 100"
    with pytest.raises(TypeError, match=wording):
        layer.require_valid_group_name("¯\\_(ツ)_/¯")


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_deprecated_name_checks_warn_and_still_check(name: str) -> None:
    layer = base_layer(name)
    with pytest.warns(DeprecationWarning, match="valid_channel_name is deprecated"):
        assert layer.valid_channel_name("valid-channel")
    with pytest.warns(DeprecationWarning, match="valid_group_name is deprecated"):
        assert layer.valid_group_name("valid-group")
    with pytest.warns(DeprecationWarning, match="deprecated"), pytest.raises(TypeError):
        layer.valid_group_name("no spaces")


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_valid_channel_names_checks_each_name(name: str) -> None:
    layer = base_layer(name)
    assert layer.valid_channel_names(["a", "b.c!"], receive=True)
    with pytest.raises(TypeError):
        layer.valid_channel_names(["a", "not valid"])
