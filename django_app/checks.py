"""System checks: every mistake in GATEWAY and CHANNEL_LAYERS, reported before anything listens.

gateway.E001  GATEWAY has an unknown key
gateway.E002  a GATEWAY value has the wrong type or is out of range
gateway.E003  a dotted path in GATEWAY cannot be imported (or uvloop is missing)
gateway.E004  a dotted path in GATEWAY imports the wrong kind of object
gateway.E005  an adapter rejects its OPTIONS (its check_options)
gateway.E006  CHANNEL_LAYERS is not a dict of aliases, each with a BACKEND
gateway.E007  a CHANNEL_LAYERS BACKEND cannot be imported or is not a channel layer
gateway.E008  a per-process override (GATEWAY_ADAPTERS__...) names no adapter of GATEWAY
gateway.W001  a SQLite file database with deferred transactions (django_app.database_checks)

GATEWAY is checked as the process runs it: with its per-process overrides applied
(gateway.overrides); a problem in an overridden adapter names the variables in its hint.

With ``--deploy``, gateway.W101-W107 name settings that work but are risky in production
(gateway.deploy), and gateway.W108 a database whose connections are not kept
(django_app.database_checks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from django_app.database_checks import check_connection_reuse, check_sqlite_transactions
from gateway.conf_checks import validate
from gateway.overrides import effective_setting, override_note

GATEWAY_TAG = "gateway"


def register() -> None:
    """Register the checks under the "gateway" tag (idempotent)."""
    checks.register(check_gateway_setting, GATEWAY_TAG)
    checks.register(check_channel_layers, GATEWAY_TAG)
    checks.register(check_sqlite_transactions, GATEWAY_TAG)
    checks.register(check_gateway_deploy, GATEWAY_TAG, checks.Tags.security, deploy=True)
    checks.register(check_connection_reuse, GATEWAY_TAG, deploy=True)


def check_gateway_deploy(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """One warning per risky production setting of a valid GATEWAY (``check --deploy``)."""
    from gateway.conf import GatewaySettings
    from gateway.deploy import deploy_risks

    gateway, unusable = effective_setting(getattr(settings, "GATEWAY", {}))
    if unusable or validate(gateway):
        return []  # the errors come first; check_gateway_setting reports them
    risks = deploy_risks(GatewaySettings(gateway), debug=bool(settings.DEBUG))
    return [checks.Warning(risk.message, hint=risk.hint, id=risk.id) for risk in risks]


def check_gateway_setting(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """One error per problem with settings.GATEWAY, per-process overrides applied."""
    gateway, unusable = effective_setting(getattr(settings, "GATEWAY", {}))
    errors: list[checks.CheckMessage] = [] if unusable is None else [_error("E008", unusable)]
    for problem in validate(gateway):
        note = override_note(problem.setting)
        hint = " ".join(part for part in (problem.hint, note) if part) or None
        errors.append(checks.Error(problem.message, hint=hint, id=problem.id))
    return errors


def check_channel_layers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """One error per problem with settings.CHANNEL_LAYERS (Channels' format)."""
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if layers is None:
        return []
    if not isinstance(layers, Mapping):
        return [_error("E006", f"CHANNEL_LAYERS must be a dict of alias -> layer, got {layers!r}")]
    errors: list[checks.CheckMessage] = []
    for alias, entry in layers.items():
        errors += _check_layer(alias, entry)
    return errors


def _check_layer(alias: Any, entry: Any) -> list[checks.CheckMessage]:
    name = f"CHANNEL_LAYERS[{alias!r}]"
    if not isinstance(entry, Mapping):
        return [_error("E006", f"{name} must be a dict with a BACKEND, got {entry!r}")]
    errors = [
        _error("E006", f'{name}["{key}"] must be a dict, got {entry[key]!r}')
        for key in ("CONFIG", "TEST_CONFIG")
        if key in entry and not isinstance(entry[key], Mapping)
    ]
    backend = entry.get("BACKEND")
    if not isinstance(backend, str) or "." not in backend:
        return [
            *errors,
            _error("E006", f'{name}["BACKEND"] must be a dotted path, got {backend!r}'),
        ]
    return errors + _check_backend(f'{name}["BACKEND"]', backend)


def _check_backend(name: str, backend: str) -> list[checks.CheckMessage]:
    from gateway.layers import BACKEND_ALIASES, LAYER_METHODS, is_channel_layer

    try:
        layer_class = import_string(BACKEND_ALIASES.get(backend, backend))
    except ImportError as exc:
        return [_error("E007", f"{name} {backend!r} cannot be imported: {exc}")]
    if not (isinstance(layer_class, type) and is_channel_layer(layer_class)):
        hint = f"A channel layer is a class with {', '.join(LAYER_METHODS)}, such as"
        hint += " a subclass of gateway.layers.BaseChannelLayer."
        return [_error("E007", f"{name} {backend!r} is not a channel layer", hint)]
    return []


def _error(code: str, message: str, hint: str | None = None) -> checks.Error:
    return checks.Error(message, hint=hint, id=f"gateway.{code}")
