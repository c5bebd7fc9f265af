"""Channel layers: configured by Django's CHANNEL_LAYERS setting, in Channels' format.

Importing this package reads no settings; `get_channel_layer()` does, on first call.
"""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from gateway.exceptions import InvalidChannelLayerError
from gateway.layers.base import BaseChannelLayer
from gateway.layers.memory import InMemoryChannelLayer

__all__ = [
    "DEFAULT_CHANNEL_LAYER",
    "BaseChannelLayer",
    "ChannelLayerManager",
    "InMemoryChannelLayer",
    "InvalidChannelLayerError",
    "channel_layers",
    "get_channel_layer",
]

DEFAULT_CHANNEL_LAYER = "default"

# Channels' backend paths, so a Channels settings file works unchanged.
BACKEND_ALIASES: dict[str, str] = {
    "channels.layers.InMemoryChannelLayer": "gateway.layers.memory.InMemoryChannelLayer",
    "channels_redis.core.RedisChannelLayer": "gateway.layers.redis.RedisChannelLayer",
    "channels_redis.pubsub.RedisPubSubChannelLayer": "gateway.layers.redis.RedisChannelLayer",
}


#: What makes a channel layer: ours subclass BaseChannelLayer, third-party ones (on Channels'
#: base class) are taken as they are, as Channels takes them.
LAYER_METHODS = ("send", "receive", "new_channel")


def is_channel_layer(candidate: object) -> bool:
    """Whether a layer class or instance has the channel layer API."""
    return all(callable(getattr(candidate, method, None)) for method in LAYER_METHODS)


class ChannelLayerManager:
    """Builds the layers of settings.CHANNEL_LAYERS on first use and keeps one per alias."""

    def __init__(self) -> None:
        self.backends: dict[str, BaseChannelLayer] = {}
        setting_changed.connect(self._reset_backends)

    def _reset_backends(self, setting: str, **kwargs: Any) -> None:
        """Forget the built layers when a test overrides CHANNEL_LAYERS."""
        if setting == "CHANNEL_LAYERS":
            self.backends = {}

    @property
    def configs(self) -> dict[str, dict[str, Any]]:
        """The CHANNEL_LAYERS setting, read lazily; {} when it is not set."""
        return getattr(settings, "CHANNEL_LAYERS", None) or {}

    def make_backend(self, name: str) -> BaseChannelLayer:
        """Build the layer of an alias from its CONFIG."""
        return self._make_backend(name, self._config_of(name).get("CONFIG", {}))

    def make_test_backend(self, name: str) -> BaseChannelLayer:
        """Build the layer of an alias from its TEST_CONFIG."""
        config = self._config_of(name)
        if "TEST_CONFIG" not in config:
            raise InvalidChannelLayerError(f"CHANNEL_LAYERS[{name!r}] has no TEST_CONFIG")
        return self._make_backend(name, config["TEST_CONFIG"])

    def _config_of(self, name: str) -> dict[str, Any]:
        try:
            return self.configs[name]
        except KeyError:
            known = ", ".join(repr(alias) for alias in self.configs) or "none"
            raise InvalidChannelLayerError(
                f"no channel layer {name!r} in CHANNEL_LAYERS (aliases: {known})"
            ) from None

    def _make_backend(self, name: str, config: dict[str, Any]) -> BaseChannelLayer:
        path = self._config_of(name).get("BACKEND")
        if not isinstance(path, str):
            raise InvalidChannelLayerError(f"CHANNEL_LAYERS[{name!r}] has no BACKEND")
        try:
            backend = import_string(BACKEND_ALIASES.get(path, path))
        except ImportError as exc:
            raise InvalidChannelLayerError(
                f"cannot import BACKEND {path!r} of CHANNEL_LAYERS[{name!r}]: {exc}"
            ) from exc
        not_a_layer = InvalidChannelLayerError(
            f"BACKEND {path!r} of CHANNEL_LAYERS[{name!r}] is not a channel layer"
            f" (a class with {', '.join(LAYER_METHODS)})"
        )
        if not isinstance(backend, type):
            raise not_a_layer
        try:
            layer = backend(**config)  # what the backend raises itself is its own to tell
        except TypeError as exc:
            raise InvalidChannelLayerError(
                f"CONFIG of CHANNEL_LAYERS[{name!r}] does not suit {path}: {exc}"
            ) from exc
        if not is_channel_layer(layer):
            raise not_a_layer
        return cast(BaseChannelLayer, layer)

    def __getitem__(self, name: str) -> BaseChannelLayer:
        if name not in self.backends:
            self.backends[name] = self.make_backend(name)
        return self.backends[name]

    def __contains__(self, name: object) -> bool:
        return name in self.configs

    def set(self, name: str, layer: BaseChannelLayer) -> BaseChannelLayer | None:
        """Put a layer in place of an alias (handy in tests); return the one it replaced."""
        previous = self.backends.get(name)
        self.backends[name] = layer
        return previous


channel_layers = ChannelLayerManager()


def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> BaseChannelLayer | None:
    """Return the channel layer of an alias, or None when CHANNEL_LAYERS is not set."""
    if alias not in channel_layers.backends and not channel_layers.configs:
        return None
    return channel_layers[alias]
