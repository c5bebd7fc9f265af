"""The files deploy/local writes, checked without starting anything: nginx -t, supervisord's
own parser, and the settings every process reads."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.support import not_installed

pytestmark = pytest.mark.topology


@pytest.fixture
def topology(tmp_path: Path) -> object:
    try:
        from deploy.local.topology import Topology
    except ImportError as error:
        not_installed(f"{error.name} is not installed")
    for tool in ("nginx", "openssl"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin") is None:
            not_installed(f"{tool} is not installed (Debian: apt-get install {tool})")
    topology = Topology(tmp_path)
    for name in ("logs", "run", "nginx"):
        (tmp_path / name).mkdir()
    topology.make_certificate()
    topology.write_nginx_config()
    return topology


def nginx_t(topology: object) -> subprocess.CompletedProcess[str]:
    from deploy.local.topology import find_tool

    directory = topology.path("nginx")  # type: ignore[attr-defined]
    return subprocess.run(
        [find_tool("nginx"), "-t", "-p", str(directory), "-c", str(directory / "nginx.conf"),
         "-e", str(topology.logs / "nginx-error.log")],  # type: ignore[attr-defined]
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_nginx_config_passes_nginx_t(topology: object) -> None:
    done = nginx_t(topology)
    assert done.returncode == 0, done.stderr
    assert "[warn]" not in done.stderr, done.stderr
    config = (topology.path("nginx", "nginx.conf")).read_text()  # type: ignore[attr-defined]
    for gateway in topology.processes:  # type: ignore[attr-defined]
        assert f"server 127.0.0.1:{gateway.http_port} " in config
    assert "proxy_set_header Upgrade $http_upgrade;" in config
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in config


def test_the_nginx_check_fails_on_a_broken_config(topology: object) -> None:
    path = topology.path("nginx", "nginx.conf")  # type: ignore[attr-defined]
    path.write_text(path.read_text().replace("proxy_http_version 1.1;", "proxy_http_version 1.1"))
    assert nginx_t(topology).returncode != 0


def test_supervisord_reads_every_program(topology: object) -> None:
    from supervisor.options import ServerOptions

    path = topology.path("supervisord.conf")  # type: ignore[attr-defined]
    path.write_text(topology.supervisord_config())  # type: ignore[attr-defined]
    options = ServerOptions()
    options.realize(["-c", str(path)])
    programs = {group.name for group in options.process_group_configs}
    servers = {"postgres", "redis", "mosquitto", "nginx"}
    assert programs == servers | {"gateway-1", "gateway-2", "gateway-3", "worker-1", "worker-2"}
    environment = options.configroot.supervisord.environment
    assert environment["DJANGO_SETTINGS_MODULE"] == "deploy.settings"


def test_every_process_reads_the_same_settings_module(topology: object) -> None:
    import os
    import sys

    from deploy.local.topology import ROOT

    script = (
        "from django.conf import settings as s; import json; print(json.dumps(["
        "s.DATABASES['default']['PORT'], sorted(s.GATEWAY['ADAPTERS']),"
        " s.CHANNEL_LAYERS['default']['CONFIG']['hosts']]))"
    )
    environment = {**os.environ, **topology.environment()}  # type: ignore[attr-defined]
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, cwd=ROOT,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    port, adapters, hosts = json.loads(done.stdout)
    assert port == topology.postgres_port  # type: ignore[attr-defined]
    assert adapters == ["broker-access", "mail", "mqtt", "sms"]
    assert hosts == [f"redis://127.0.0.1:{topology.redis_port}/0"]  # type: ignore[attr-defined]
