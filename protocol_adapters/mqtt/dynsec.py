"""Mosquitto 2 dynamic security kept in step with Django's devices: `MosquittoDynsec`.

An entry of ``GATEWAY["ADAPTERS"]`` with this backend makes the gateway, at its start, bring
the broker's dynamic-security clients and roles in step with every device (a full resync,
logged), and makes every change to a device or its credential in Django reach the broker at
once (``django_app.broker_access``'s signals call `gateway.broker_access.push`). Both go
through a short-lived admin connection (`dynsec_client.control`); what to send is
`dynsec_plan.plan`'s. It serves nothing itself; its health tells how the last sync went.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from gateway.adapters import AdapterHealth, Listener, ProtocolAdapter
from gateway.broker_access import DeviceAccess, SyncReport, load_device_source
from gateway.exceptions import ImproperlyConfiguredGateway
from gateway.options import Option, OptionSet, optional_text, positive_number
from protocol_adapters.mqtt._compat_gmqtt import check_version
from protocol_adapters.mqtt.dynsec_client import DynsecConnection, DynsecError, Target, control
from protocol_adapters.mqtt.dynsec_plan import BrokerClient, Plan, acls_from_json, plan
from protocol_adapters.mqtt.embedded_acl import DEFAULT_ACL, topic_filter_list

__all__ = ["DYNSEC_OPTIONS", "DynsecSyncer", "MosquittoDynsec"]

logger = logging.getLogger("gateway.mqtt")


def _url(value: object) -> str | None:
    if not isinstance(value, str):
        return 'a str like "mqtt://admin:password@broker:1883"'
    parts = urlsplit(value)
    ok = parts.scheme in ("mqtt", "tcp") and bool(parts.hostname)
    return None if ok else "mqtt://[user:password@]host[:port]"


def _prefix(value: object) -> str | None:
    ok = isinstance(value, str) and value != ""
    return None if ok else "a non-empty str"


DYNSEC_OPTIONS: Final = OptionSet(
    Option("URL", "mqtt://127.0.0.1:1883", _url),
    Option("USERNAME", None, optional_text),
    Option("PASSWORD", None, optional_text),
    Option("ACL", list(DEFAULT_ACL), topic_filter_list),
    Option("ROLE_PREFIX", "gateway-device-", _prefix),
    Option("DEVICE_SOURCE", None, optional_text),
    Option("SYNC_ON_START", True, lambda v: None if isinstance(v, bool) else "True or False"),
    Option("TIMEOUT", 5.0, positive_number),
)
"""Every OPTIONS key of `MosquittoDynsec` (docs/mqtt.md)."""


class DynsecSyncer:
    """`gateway.broker_access.AccessSyncer` for one Mosquitto's dynamic security."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        values = DYNSEC_OPTIONS.parse(options)
        url = urlsplit(values["URL"])
        username = values["USERNAME"] or (unquote(url.username) if url.username else None)
        password = values["PASSWORD"] or (unquote(url.password) if url.password else None)
        self.name = name
        self.target = Target(url.hostname or "127.0.0.1", url.port or 1883, username, password,
                             float(values["TIMEOUT"]))  # fmt: skip
        self.acl: tuple[str, ...] = tuple(values["ACL"])
        self.prefix: str = values["ROLE_PREFIX"]

    async def apply(self, devices: Sequence[DeviceAccess], *, complete: bool) -> SyncReport:
        """Bring the broker in step with `devices`; `complete`: delete the clients of others."""
        async with control(self.target) as connection:
            if complete:
                clients, roles = await _everything(connection)
                known = {d.device_id for d in devices}
                gone = [u for u, c in clients.items() if c.managed and u not in known]
                devices = [*devices, *(DeviceAccess(u, exists=False) for u in gone)]
            else:
                clients, roles = await self._some(connection, [d.device_id for d in devices])
            plans = {d.device_id: self._plan(d, clients, roles) for d in devices}
            commands = [c for p in plans.values() for c in p.commands]
            answers = await connection.run(commands) if commands else []
        report = _report(self.name, plans)
        report.errors += [f"{a.get('command')}: {a['error']}" for a in answers if _failed(a)]
        _log(report)
        return report

    def _plan(
        self, device: DeviceAccess, clients: Mapping[str, BrokerClient], roles: Mapping[str, Any]
    ) -> Plan:
        role = roles.get(f"{self.prefix}{device.device_id}")
        return plan(device, self.acl, self.prefix, clients.get(device.device_id), role)

    async def _some(
        self, connection: DynsecConnection, ids: Sequence[str]
    ) -> tuple[dict[str, BrokerClient], dict[str, Any]]:
        asks: list[dict[str, Any]] = []
        for device_id in ids:
            asks.append({"command": "getClient", "username": device_id})
            asks.append({"command": "getRole", "rolename": f"{self.prefix}{device_id}"})
        answers = await connection.run(asks)
        clients = {
            str(a["data"]["client"]["username"]): BrokerClient.from_json(a["data"]["client"])
            for a in answers[0::2] if not a.get("error")
        }  # fmt: skip
        roles = {
            str(a["data"]["role"]["rolename"]): acls_from_json(a["data"]["role"].get("acls", []))
            for a in answers[1::2] if not a.get("error")
        }  # fmt: skip
        return clients, roles


async def _everything(
    connection: DynsecConnection,
) -> tuple[dict[str, BrokerClient], dict[str, Any]]:
    listed = await connection.run([
        {"command": "listClients", "verbose": True, "count": -1, "offset": 0},
        {"command": "listRoles", "verbose": True, "count": -1, "offset": 0},
    ])  # fmt: skip
    for answer in listed:
        if answer.get("error"):
            raise DynsecError(f"{answer.get('command')}: {answer['error']}")
    clients = [BrokerClient.from_json(c) for c in listed[0]["data"]["clients"]]
    roles = {
        str(r["rolename"]): acls_from_json(r.get("acls", [])) for r in listed[1]["data"]["roles"]
    }
    return {c.username: c for c in clients}, roles


# Another gateway process syncing at the same moment made or removed it first: in step.
_RACED: Final = {
    ("createClient", "Client already exists"),
    ("createRole", "Role already exists"),
    ("deleteClient", "Client not found"),
    ("deleteRole", "Role not found"),
}


def _failed(answer: Mapping[str, Any]) -> bool:
    error = answer.get("error")
    return bool(error) and (answer.get("command"), error) not in _RACED


def _report(name: str, plans: Mapping[str, Plan]) -> SyncReport:
    report = SyncReport(name)
    for device_id, item in plans.items():
        if item.without_password:
            report.without_password.append(device_id)
        if item.outcome == "unchanged":
            report.unchanged += 1
        elif item.outcome == "conflict":
            report.conflicts.append(device_id)
        elif item.outcome == "invalid":
            report.errors.append(f"{device_id}: its id cannot be put in a topic")
        else:
            getattr(report, item.outcome).append(device_id)
    return report


def _log(report: SyncReport) -> None:
    level = logging.WARNING if report.errors or report.without_password else logging.INFO
    if report.changed() or level == logging.WARNING:
        logger.log(level, "%s: dynamic security synced: %s", report.name, "; ".join(report.lines()))


class MosquittoDynsec(ProtocolAdapter):
    """Keeps Mosquitto's dynamic-security clients and roles in step with Django's devices."""

    protocol = "mqtt"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        try:
            check_version()  # the admin connection is a gmqtt client
        except ImproperlyConfiguredGateway as exc:
            return [str(exc)]
        return DYNSEC_OPTIONS.check(options)

    @classmethod
    def access_syncer(cls, name: str, options: Mapping[str, Any]) -> DynsecSyncer:
        """The syncer `gateway.broker_access` pushes device changes through."""
        return DynsecSyncer(name, options)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.syncer = DynsecSyncer(self.context.name, self.context.options)
        self.source = load_device_source(
            DYNSEC_OPTIONS.parse(self.context.options)["DEVICE_SOURCE"]
        )
        self.sync_on_start: bool = DYNSEC_OPTIONS.parse(self.context.options)["SYNC_ON_START"]
        self._health = AdapterHealth("ok", "no sync yet")

    async def start(self) -> list[Listener]:
        if self.sync_on_start:
            await self.resync()
        return []

    async def resync(self) -> SyncReport | None:
        """A full resync; a broker that cannot be reached is logged and reported in health."""
        try:
            report = await self.syncer.apply(await self.source.device_access(), complete=True)
        except DynsecError as exc:
            logger.error("%s: dynamic security not synced: %s", self.context.name, exc)
            self._health = AdapterHealth("degraded", str(exc))
            return None
        detail = "; ".join(report.lines())
        self._health = AdapterHealth("degraded" if report.errors else "ok", detail)
        return report

    def health(self) -> AdapterHealth:
        return self._health

    async def stop(self, timeout: float) -> None:
        return None
