"""deploy/ passes its validators, and each validator fails on a deliberately broken copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import checks
from tests.deploy.checks import DEPLOY

MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
NGINX_SITES = sorted((DEPLOY / "nginx").glob("*.conf"))


def broken_copy(source: Path, directory: Path, old: str, new: str) -> Path:
    """A copy of `source` in `directory` with `old` (which must be there) replaced by `new`."""
    text = source.read_text()
    assert old in text, f"{old!r} is not in {source}"
    copy = directory / source.name
    copy.write_text(text.replace(old, new, 1))
    return copy


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_kubernetes_manifests_match_the_schemas(manifest: Path) -> None:
    assert checks.kubernetes(manifest) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("replicas: 3 ", 'replicas: "three" '),  # a wrong type
        ("periodSeconds: 5", "periodSecond: 5"),  # a misspelt field (strict)
        ("maxUnavailable: 1", "maxUnavailable: {pods: 1}"),  # PodDisruptionBudget
    ],
)
def test_the_kubernetes_check_fails_on_a_broken_manifest(
    tmp_path: Path, old: str, new: str
) -> None:
    broken = broken_copy(DEPLOY / "kubernetes/gateway.yaml", tmp_path, old, new)
    assert checks.kubernetes(broken) != []


def test_the_manifests_cover_the_topology() -> None:
    resources = [r for path in MANIFESTS for r in checks.manifest_resources(path)]
    by_kind = {(r["kind"], r["metadata"]["name"]): r for r in resources}
    gateway = by_kind[("StatefulSet", "gateway")]
    pod = gateway["spec"]["template"]
    labels = pod["metadata"]["labels"]
    # The pod's stable name is its MQTT client id.
    env = {item["name"]: item for item in pod["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert by_kind[("Service", gateway["spec"]["serviceName"])]["spec"]["clusterIP"] == "None"
    budget = by_kind[("PodDisruptionBudget", "gateway")]
    assert budget["spec"]["selector"]["matchLabels"] == labels
    for name in ("redis", "mqtt-broker", "postgres"):
        assert by_kind[("Service", name)]["spec"]["type"] == "ExternalName"
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/health"
    # The grace period covers preStop, the drain and the lifespan shutdown (10 s each, default).
    assert pod["spec"]["terminationGracePeriodSeconds"] > 5 + 10 + 10


def test_the_compose_file_matches_the_compose_specification() -> None:
    assert checks.compose(DEPLOY / "compose.yaml") == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('    command: ["gateway", "worker"', '    comand: ["gateway", "worker"'),
        ("{condition: service_healthy}", "{condition: healthy}"),
    ],
)
def test_the_compose_check_fails_on_a_broken_file(tmp_path: Path, old: str, new: str) -> None:
    broken = broken_copy(DEPLOY / "compose.yaml", tmp_path, old, new)
    assert checks.compose(broken) != []


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    assert checks.systemd_unit(DEPLOY / "systemd/gateway.service", tmp_path) == []


def test_the_systemd_unit_waits_for_the_drain_and_the_lifespan_shutdown() -> None:
    unit = (DEPLOY / "systemd/gateway.service").read_text()
    options = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line)
    assert options["KillSignal"] == "SIGTERM"
    assert int(options["TimeoutStopSec"]) > 2 * 10  # SHUTDOWN_TIMEOUT's default, twice


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Restart=on-failure", "Restart=sometimes"),
        ("KillSignal=SIGTERM", "KillSignal=SIGTERN"),
        ("TimeoutStopSec=30", "TimeoutStopSecs=30"),
    ],
)
def test_the_systemd_check_fails_on_a_broken_unit(tmp_path: Path, old: str, new: str) -> None:
    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    broken = broken_copy(DEPLOY / "systemd/gateway.service", broken_dir, old, new)
    assert checks.systemd_unit(broken, tmp_path / "root") != []


@pytest.mark.parametrize("site", NGINX_SITES, ids=lambda path: path.name)
def test_the_nginx_configs_pass_nginx_t(tmp_path: Path, site: Path) -> None:
    assert checks.nginx_site(site, tmp_path) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("listen 443 ssl http2;", "listen 443 ssl;\n    http2 on;"),  # needs nginx 1.25.1
        ("proxy_http_version 1.1;", "proxy_http_version 1.1"),
        ("keepalive 64;", "keepalive sixty-four;"),
    ],
)
def test_the_nginx_check_fails_on_a_broken_config(tmp_path: Path, old: str, new: str) -> None:
    if "http2 on" in new and checks.nginx_accepts_http2_on():
        pytest.skip("this nginx (1.25.1 or newer) knows `http2 on;`")
    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    broken = broken_copy(DEPLOY / "nginx/gateway.conf", broken_dir, old, new)
    assert checks.nginx_site(broken, tmp_path) != []


def test_the_dockerfile_passes_hadolint() -> None:
    assert checks.dockerfile(DEPLOY / "Dockerfile") == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("FROM python:3.12-slim", "FROM python"),  # an untagged base image
        ("USER 10001:10001", "USER root"),  # the last USER is root
        ("WORKDIR /app", "RUN cd /app"),
    ],
)
def test_the_dockerfile_check_fails_on_a_broken_dockerfile(
    tmp_path: Path, old: str, new: str
) -> None:
    broken = broken_copy(DEPLOY / "Dockerfile", tmp_path, old, new)
    assert checks.dockerfile(broken) != []
