"""Per-process settings: one adapter option set from the environment or the command line.

Processes of one deployment share one settings module; what must differ between two of them
on one host (an SMTP port, an MQTT client id) is given per process, in one scheme:

* the environment: ``GATEWAY_ADAPTERS__<ADAPTER>__<OPTION>[__<SUB>...]=<value>``, e.g.
  ``GATEWAY_ADAPTERS__SMTP__PORT=2526`` sets ``GATEWAY["ADAPTERS"]["smtp"]["OPTIONS"]["PORT"]``
  (the adapter's name is matched without regard to case, option keys are upper case);
* the command line: ``gateway run APP --set smtp.PORT=2526 --set broker.CLIENT_ID=gw-2``,
  which sets exactly that environment variable for the process (and its children).

A value is read as JSON when it is JSON (``2526``, ``true``, ``null``, ``{"MAX": 5}``), else
it is the string as written (``gw-2``). An override of an adapter the settings do not have is
an error naming the variable; the result is checked like the rest of ``GATEWAY``: the system
checks (``manage.py check``, and those ``gateway run`` runs first) check the settings with the
overrides applied (`effective_setting`), and a problem in an overridden adapter names the
variables that set it (`override_note`).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from typing import Any, Final

from gateway.exceptions import ImproperlyConfiguredGateway

__all__ = [
    "ENV_PREFIX",
    "apply_overrides",
    "effective_setting",
    "env_name_for",
    "override_note",
    "set_from_command_line",
]

ENV_PREFIX: Final = "GATEWAY_ADAPTERS__"
_ADAPTER_SETTING: Final = re.compile(r'GATEWAY\["ADAPTERS"\]\["([^"]+)"\]')


def env_name_for(assignment: str) -> tuple[str, str]:
    """``smtp.PORT=2526`` -> (``GATEWAY_ADAPTERS__SMTP__PORT``, ``2526``)."""
    path, equals, value = assignment.partition("=")
    parts = path.split(".")
    if not equals or len(parts) < 2 or not all(part.strip() for part in parts):
        raise ValueError(f"expected ADAPTER.OPTION=VALUE (e.g. smtp.PORT=2526), got {assignment!r}")
    return ENV_PREFIX + "__".join(part.strip().upper() for part in parts), value


def set_from_command_line(assignment: str) -> None:
    """Apply one ``--set ADAPTER.OPTION=VALUE``: it becomes its environment variable."""
    name, value = env_name_for(assignment)
    os.environ[name] = value


def apply_overrides(gateway: Any, environ: Mapping[str, str] | None = None) -> Any:
    """`gateway` (the GATEWAY setting) with every GATEWAY_ADAPTERS__... variable applied."""
    environ = os.environ if environ is None else environ
    found = sorted((k, v) for k, v in environ.items() if k.startswith(ENV_PREFIX))
    if not found or not isinstance(gateway, Mapping):
        return gateway
    result = dict(gateway)
    adapters = result.get("ADAPTERS")
    if not isinstance(adapters, Mapping):
        return gateway  # the setting's own check reports it
    adapters = result["ADAPTERS"] = copy.deepcopy(dict(adapters))
    for variable, raw in found:
        adapter, *keys = variable.removeprefix(ENV_PREFIX).split("__")
        name = next((key for key in adapters if str(key).upper() == adapter), None)
        entry = adapters.get(name) if name is not None else None
        if not isinstance(entry, dict) or not keys or not all(keys):
            raise ImproperlyConfiguredGateway(
                f"{variable}: GATEWAY['ADAPTERS'] has no adapter {adapter.lower()!r}"
                f" (it has {sorted(adapters)}); the scheme is {ENV_PREFIX}<ADAPTER>__<OPTION>"
            )
        options = entry.setdefault("OPTIONS", {})
        for key in keys[:-1]:
            options = options.setdefault(key, {})
            if not isinstance(options, dict):
                raise ImproperlyConfiguredGateway(f"{variable}: {key} is not a dict of options")
        options[keys[-1]] = _value(raw)
    return result


def effective_setting(
    gateway: Any, environ: Mapping[str, str] | None = None
) -> tuple[Any, str | None]:
    """The GATEWAY setting a process runs with, and None; or, when an override cannot be
    applied, the setting as written and why (a sentence naming the variable)."""
    try:
        return apply_overrides(gateway, environ), None
    except ImproperlyConfiguredGateway as exc:
        return gateway, str(exc)


def override_note(setting: str, environ: Mapping[str, str] | None = None) -> str | None:
    """For a problem in `setting` (``GATEWAY["ADAPTERS"]["smtp"]...``): the overrides of that
    adapter, ``NAME=value`` each, in a sentence; None when nothing overrides it."""
    found = _ADAPTER_SETTING.match(setting)
    if found is None:
        return None
    environ = os.environ if environ is None else environ
    prefix = f"{ENV_PREFIX}{found.group(1).upper()}__"
    names = sorted(name for name in environ if name.startswith(prefix))
    if not names:
        return None
    given = ", ".join(f"{name}={environ[name]}" for name in names)
    return f"Overridden for this process (environment or `gateway run --set`): {given}."


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
