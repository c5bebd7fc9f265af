"""A throw-away Mosquitto with the dynamic-security plugin, and the GATEWAY that syncs it.

`running_dynsec_mosquitto()` writes the plugin's config with ``mosquitto_ctrl dynsec init``
(one admin client, `ADMIN` / `ADMIN_PASSWORD`, allowed ``$CONTROL/dynamic-security/#`` and
every topic) in a temporary directory, and starts Mosquitto on a free 127.0.0.1 port with the
plugin loaded and anonymous clients refused.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.integration.support import not_installed

__all__ = ["ADMIN", "ADMIN_PASSWORD", "PLUGIN", "dynsec_gateway", "running_dynsec_mosquitto"]

PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
ADMIN = "admin"
ADMIN_PASSWORD = "admin-password-for-tests"


def _ctrl() -> str:
    found = shutil.which("mosquitto_ctrl")
    if found is None or not Path(PLUGIN).exists():
        not_installed(
            "Mosquitto's dynamic security is not installed (apt-get install mosquitto "
            "mosquitto-clients)"
        )
    assert found is not None
    return found


@contextmanager
def running_dynsec_mosquitto() -> Iterator[Mosquitto]:
    """Mosquitto with the dynamic-security plugin and its admin client; stopped afterwards."""
    tool = _ctrl()
    with tempfile.TemporaryDirectory(prefix="mosquitto-dynsec-") as directory:
        config = Path(directory) / "dynamic-security.json"
        subprocess.run(
            [tool, "dynsec", "init", str(config), ADMIN, ADMIN_PASSWORD],
            check=True,
            capture_output=True,
        )
        plugin = [f"plugin {PLUGIN}", f"plugin_opt_config_file {config}"]
        with running_mosquitto(0, "allow_anonymous false", *plugin) as broker:
            yield broker


def dynsec_gateway(port: int, **options: Any) -> dict[str, Any]:
    """A GATEWAY setting whose only adapter syncs the Mosquitto on `port`."""
    return {
        "ADAPTERS": {
            "dynsec": {
                "BACKEND": "protocol_adapters.mqtt.MosquittoDynsec",
                "OPTIONS": {
                    "URL": f"mqtt://127.0.0.1:{port}",
                    "USERNAME": ADMIN,
                    "PASSWORD": ADMIN_PASSWORD,
                    **options,
                },
            }
        }
    }
