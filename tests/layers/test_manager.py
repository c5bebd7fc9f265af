"""get_channel_layer and CHANNEL_LAYERS, in Channels' format."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from gateway.exceptions import ImproperlyConfiguredGateway, InvalidChannelLayerError
from gateway.layers import (
    DEFAULT_CHANNEL_LAYER,
    BaseChannelLayer,
    InMemoryChannelLayer,
    channel_layers,
    get_channel_layer,
)

MEMORY = "gateway.layers.InMemoryChannelLayer"


def test_default_layer_from_settings_is_cached() -> None:
    layer = get_channel_layer()
    assert isinstance(layer, InMemoryChannelLayer)
    assert get_channel_layer(DEFAULT_CHANNEL_LAYER) is layer


def test_aliases_get_their_own_config() -> None:
    layers = {
        "default": {"BACKEND": MEMORY, "CONFIG": {"capacity": 7}},
        "bulk": {"BACKEND": MEMORY, "CONFIG": {"capacity": 5000, "expiry": 5}},
    }
    with override_settings(CHANNEL_LAYERS=layers):
        default, bulk = get_channel_layer(), get_channel_layer("bulk")
        assert isinstance(default, InMemoryChannelLayer)
        assert isinstance(bulk, InMemoryChannelLayer)
        assert default is not bulk
        assert (default.capacity, bulk.capacity, bulk.expiry) == (7, 5000, 5)


def test_overriding_the_setting_rebuilds_the_layers() -> None:
    before = get_channel_layer()
    layers = {"default": {"BACKEND": MEMORY, "CONFIG": {"capacity": 3}}}
    with override_settings(CHANNEL_LAYERS=layers):
        inside = get_channel_layer()
        assert inside is not before
        assert inside is not None
        assert inside.capacity == 3
    after = get_channel_layer()
    assert after is not inside
    assert after is not None
    assert after.capacity == 100


@pytest.mark.parametrize("setting", [None, {}], ids=["none", "empty"])
def test_no_layers_configured_gives_none(setting: object) -> None:
    with override_settings(CHANNEL_LAYERS=setting):
        assert get_channel_layer() is None
        assert get_channel_layer("other") is None


def test_unknown_alias_is_named() -> None:
    with pytest.raises(InvalidChannelLayerError, match=r"no channel layer 'missing'.*'default'"):
        get_channel_layer("missing")


def test_unimportable_backend_is_named_with_its_alias() -> None:
    layers = {"default": {"BACKEND": "nowhere.at_all.Layer"}}
    with (
        override_settings(CHANNEL_LAYERS=layers),
        pytest.raises(InvalidChannelLayerError, match=r"'nowhere.at_all.Layer'.*\['default'\]"),
    ):
        get_channel_layer()


def test_backend_must_be_a_channel_layer() -> None:
    layers = {"default": {"BACKEND": "collections.OrderedDict"}}
    with (
        override_settings(CHANNEL_LAYERS=layers),
        pytest.raises(InvalidChannelLayerError, match="is not a channel layer"),
    ):
        get_channel_layer()


def test_missing_backend_is_reported() -> None:
    with (
        override_settings(CHANNEL_LAYERS={"default": {"CONFIG": {}}}),
        pytest.raises(InvalidChannelLayerError, match="has no BACKEND"),
    ):
        get_channel_layer()


def test_config_the_backend_does_not_take_is_reported() -> None:
    layers = {"default": {"BACKEND": "gateway.layers.BaseChannelLayer", "CONFIG": {"hosts": []}}}
    with (
        override_settings(CHANNEL_LAYERS=layers),
        pytest.raises(InvalidChannelLayerError, match=r"CONFIG of CHANNEL_LAYERS\['default'\]"),
    ):
        get_channel_layer()


def test_bad_config_value_names_the_key() -> None:
    layers = {"default": {"BACKEND": MEMORY, "CONFIG": {"capacity": 0}}}
    with (
        override_settings(CHANNEL_LAYERS=layers),
        pytest.raises(ImproperlyConfiguredGateway, match="capacity"),
    ):
        get_channel_layer()


def test_test_config_builds_a_separate_layer() -> None:
    layers = {
        "default": {"BACKEND": MEMORY, "CONFIG": {"capacity": 10}, "TEST_CONFIG": {"capacity": 2}}
    }
    with override_settings(CHANNEL_LAYERS=layers):
        test_layer = channel_layers.make_test_backend("default")
        assert test_layer.capacity == 2
        assert get_channel_layer() is not test_layer
    with (
        override_settings(CHANNEL_LAYERS={"default": {"BACKEND": MEMORY}}),
        pytest.raises(InvalidChannelLayerError, match="has no TEST_CONFIG"),
    ):
        channel_layers.make_test_backend("default")


def test_channels_backend_path_is_accepted() -> None:
    layers = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 9}}
    }
    with override_settings(CHANNEL_LAYERS=layers):
        layer = get_channel_layer()
        assert type(layer) is InMemoryChannelLayer
        assert layer.capacity == 9
    assert "channels.layers" not in sys.modules  # mapped by name, never imported


def test_set_swaps_a_layer_in() -> None:
    replacement: BaseChannelLayer = InMemoryChannelLayer(capacity=1)
    previous = channel_layers.set("default", replacement)
    try:
        assert get_channel_layer() is replacement
    finally:
        channel_layers.backends.pop("default")
    assert previous is None or isinstance(previous, InMemoryChannelLayer)


def test_importing_the_package_reads_no_settings() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "import gateway.layers as layers; print(layers.DEFAULT_CHANNEL_LAYER)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "default"


class LayerOnAnotherBase:
    """A third-party layer that does not subclass ours (e.g. built on Channels' base class)."""

    def __init__(self, **config: Any) -> None:
        self.config = config

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        return None

    async def receive(self, channel: str) -> dict[str, Any]:
        return {}

    async def new_channel(self, prefix: str = "specific.") -> str:
        return prefix + "x"


class BreaksOnConstruction:
    def __init__(self, **config: Any) -> None:
        raise KeyError("from inside the backend")


def test_a_layer_with_the_api_is_taken_whatever_its_base_class() -> None:
    path = f"{__name__}.LayerOnAnotherBase"
    layers = {"default": {"BACKEND": path, "CONFIG": {"hosts": ["x"]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        layer: object = get_channel_layer()
        assert isinstance(layer, LayerOnAnotherBase)
        assert layer.config == {"hosts": ["x"]}
        assert run_checks(tags=["gateway"]) == []


def test_what_a_backend_raises_while_built_is_not_hidden() -> None:
    layers = {"default": {"BACKEND": f"{__name__}.BreaksOnConstruction"}}
    with override_settings(CHANNEL_LAYERS=layers), pytest.raises(KeyError, match="inside"):
        get_channel_layer()
