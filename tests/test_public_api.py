"""`gateway` re-exports the whole public API, and nothing it lists is missing."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import gateway

SUBMODULES_WITH_PUBLIC_API = [
    "gateway.consumers",
    "gateway.layers",
    "gateway.middleware",
    "gateway.exceptions",
    "routers",
]


def test_all_lists_every_export() -> None:
    assert sorted(gateway.__all__) == sorted([*gateway._EXPORTS, "__version__"])
    assert len(set(gateway.__all__)) == len(gateway.__all__)


def test_every_name_in_all_resolves_from_its_module() -> None:
    for name, module in gateway._EXPORTS.items():
        value = getattr(gateway, name)
        assert value is getattr(importlib.import_module(module), name), name


def test_submodules_public_names_are_re_exported() -> None:
    for module_name in SUBMODULES_WITH_PUBLIC_API:
        module = importlib.import_module(module_name)
        public = getattr(module, "__all__", [])
        assert public, f"{module_name} declares no __all__"
        missing = [n for n in public if n not in gateway.__all__ and not n.isupper()]
        assert not missing, f"{module_name} exports {missing} that gateway does not"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        gateway.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_importing_gateway_needs_no_django_settings_and_no_protocol_library() -> None:
    code = (
        "import sys, gateway, gateway.testing;"
        "bad = [m for m in ('amqtt', 'gmqtt', 'aiosmtpd', 'aioimaplib', 'twilio', 'redis',"
        " 'django.conf.settings') if m in sys.modules];"
        "print(bad)"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
