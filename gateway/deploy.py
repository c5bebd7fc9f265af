"""``manage.py check --deploy``: settings that work but are risky in production.

gateway.W101  DEBUG is on while a listener is on a public address
gateway.W102  PROXY_HEADERS without FORWARDED_ALLOW_IPS naming the proxies (or with "*")
gateway.W103  an SMTP port on a public address accepts messages over 25 MiB
gateway.W104  an SMS webhook has no secret to check signatures with (it refuses every request)
gateway.W105  the embedded MQTT broker lets anyone in (AUTH "anonymous") on a public address
gateway.W106  SMTP AUTH on a public address without AUTH_REQUIRE_TLS (passwords in clear)
gateway.W107  /-/metrics open to anyone (no METRICS_ACCESS) while HTTP listens on a public address

The HTTP and DEBUG checks are here; each adapter class names its own risks in
`ProtocolAdapter.deploy_risks`, loaded by dotted path like the adapter itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.module_loading import import_string

from gateway.adapters import DeployRisk, ProtocolAdapter, is_public_host
from gateway.conf import GatewaySettings

__all__ = ["deploy_risks"]


def deploy_risks(gateway: GatewaySettings, *, debug: bool) -> list[DeployRisk]:
    """Every risk of a valid GATEWAY setting (run the normal checks first)."""
    enabled = [entry for entry in gateway.adapters if entry.enabled]
    risks = _debug_risks(gateway, enabled) if debug else []
    risks += _proxy_risks(gateway.user.get("HTTP", {}), gateway.http.proxy_headers)
    risks += _metrics_risks(gateway)
    for entry in enabled:
        adapter = import_string(entry.backend)
        if isinstance(adapter, type) and issubclass(adapter, ProtocolAdapter):
            risks += [
                risk._replace(message=f'GATEWAY["ADAPTERS"]["{entry.name}"]: {risk.message}')
                for risk in adapter.deploy_risks(entry.options)
            ]
    return risks


def _debug_risks(gateway: GatewaySettings, enabled: list[Any]) -> list[DeployRisk]:
    hosts = [('GATEWAY["HTTP"]["HOST"]', gateway.http.host)] if gateway.http.enabled else []
    hosts += [
        (f'GATEWAY["ADAPTERS"]["{entry.name}"]["OPTIONS"]["HOST"]', entry.options["HOST"])
        for entry in enabled
        if isinstance(entry.options.get("HOST"), str)
    ]
    public = [f"{setting} {host!r}" for setting, host in hosts if is_public_host(host)]
    if not public:
        return []
    return [
        DeployRisk(
            "gateway.W101",
            f"DEBUG is True while the gateway listens on public addresses: {', '.join(public)}.",
            "Set DEBUG = False in production: debug pages show settings and code to anyone"
            " who reaches them.",
        )
    ]


def _proxy_risks(http: Mapping[str, Any], proxy_headers: bool) -> list[DeployRisk]:
    if not proxy_headers:
        return []
    allowed = http.get("FORWARDED_ALLOW_IPS") if isinstance(http, Mapping) else None
    if allowed is None:
        message = (
            'GATEWAY["HTTP"]["PROXY_HEADERS"] is True but FORWARDED_ALLOW_IPS is not set: only'
            " 127.0.0.1 is trusted, so a proxy elsewhere is ignored."
        )
    elif allowed == "*" or (not isinstance(allowed, str) and "*" in allowed):
        message = (
            'GATEWAY["HTTP"]["FORWARDED_ALLOW_IPS"] is "*": any client can set its own'
            " address and scheme with X-Forwarded-For and X-Forwarded-Proto."
        )
    else:
        return []
    return [
        DeployRisk(
            "gateway.W102",
            message,
            'Set GATEWAY["HTTP"]["FORWARDED_ALLOW_IPS"] to the addresses of your proxies.',
        )
    ]


def _metrics_risks(gateway: GatewaySettings) -> list[DeployRisk]:
    http, path = gateway.http, gateway.metrics_path
    if not http.enabled or path is None or gateway.raw["METRICS_ACCESS"] is not None:
        return []
    if not is_public_host(http.host):
        return []
    return [
        DeployRisk(
            "gateway.W107",
            f'GATEWAY["METRICS_PATH"] {path!r} answers anyone on the public address'
            f" {http.host!r}: event counts and load are readable from outside.",
            'Set GATEWAY["METRICS_ACCESS"] (ALLOW, BEARER_TOKEN or BASIC_USERS), or'
            ' GATEWAY["METRICS_PATH"] = None.',
        )
    ]
