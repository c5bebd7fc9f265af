"""Mosquitto dynamic security: a device's wanted client and role, and the commands to get there.

Pure functions, no connection: `acls` translates a device's topic filters into the plugin's ACL
entries, `plan` compares what the broker has with what the device needs and returns the
commands (createRole, modifyRole, createClient, modifyClient, enableClient, disableClient,
deleteClient, deleteRole) and the outcome for the report. Nothing is sent for a device already
in step, so a resync drops no connection: every change to a client or its role makes the
plugin disconnect that client.

The ACL is the embedded broker's (``embedded_acl``): the same filters, ``{device_id}``
replaced by the device id (dynsec 2.0 has no ``%u`` substitution, so each device gets its own
role). Mosquitto then checks a PUBLISH with ``publishClientSend`` entries (MQTT topic
matching, the same as `gateway.mqtt.topic_matches`) and a SUBSCRIBE with ``subscribePattern``
entries, whose rule is `gateway.mqtt.filter_covers`'s (a filter passes only if the allowed
filter covers every topic it can match), except for topics starting with ``$``: the plugin
lets ``#`` or ``+/...`` cover ``$SYS/...``, MQTT's matching does not, so a filter whose first
level is a wildcard comes with deny entries for ``$SYS/#`` and ``$CONTROL/#`` ahead of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from gateway.broker_access import DeviceAccess
from protocol_adapters.mqtt.embedded_acl import acl_for

__all__ = ["MARK", "BrokerClient", "Outcome", "Plan", "acls", "marker", "plan", "role_name"]

MARK: Final = "gateway device"
"""The start of the textdescription of every client the gateway made; others are left alone."""
_DOLLAR_ROOTS: Final = ("$SYS/#", "$CONTROL/#")
Outcome = Literal[
    "unchanged", "created", "updated", "enabled", "disabled", "deleted", "conflict", "invalid"
]
Acl = tuple[str, str, int, bool]  # acltype, topic, priority, allow


@dataclass(frozen=True)
class BrokerClient:
    """What the broker has for one username (from getClient / listClients)."""

    username: str
    roles: tuple[str, ...] = ()
    disabled: bool = False
    description: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BrokerClient:
        return cls(
            username=str(data["username"]),
            roles=tuple(sorted(str(r["rolename"]) for r in data.get("roles") or ())),
            disabled=bool(data.get("disabled", False)),
            description=str(data.get("textdescription") or ""),
        )

    @property
    def managed(self) -> bool:
        return self.description.startswith(MARK)

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint of the password the gateway last gave it, or None."""
        _, _, value = self.description.partition("password ")
        return value or None


@dataclass(frozen=True)
class Plan:
    """Commands for one device, in order, and what they amount to."""

    commands: list[dict[str, Any]]
    outcome: Outcome
    without_password: bool = False


def role_name(prefix: str, device_id: str) -> str:
    return f"{prefix}{device_id}"


def marker(fingerprint: str | None) -> str:
    """The textdescription that records which password the broker holds."""
    return f"{MARK}; password {fingerprint}" if fingerprint else f"{MARK}; no password"


def acls(patterns: Sequence[str], device_id: str) -> list[Acl] | None:
    """The role's ACL entries for a device's filters; None if its id cannot be in a topic."""
    filters = acl_for(patterns, device_id)
    if filters is None:
        return None
    entries: list[Acl] = []
    if any(f.split("/")[0] in ("+", "#") for f in filters):
        entries += [("subscribePattern", root, 1, False) for root in _DOLLAR_ROOTS]
    for topic_filter in filters:
        entries += [("publishClientSend", topic_filter, 0, True),
                    ("subscribePattern", topic_filter, 0, True)]  # fmt: skip
    return sorted(set(entries))


def acls_json(entries: Sequence[Acl]) -> list[dict[str, Any]]:
    return [{"acltype": t, "topic": topic, "priority": p, "allow": a} for t, topic, p, a in entries]


def acls_from_json(items: Sequence[Mapping[str, Any]]) -> list[Acl]:
    return sorted(
        (str(i["acltype"]), str(i["topic"]), int(i.get("priority", 0)), bool(i.get("allow")))
        for i in items
    )


def plan(
    device: DeviceAccess,
    default_acl: Sequence[str],
    prefix: str,
    client: BrokerClient | None,
    role_acls: list[Acl] | None,
) -> Plan:
    """What to send so the broker has `device` as Django has it (`role_acls`: None = no role)."""
    user, role = device.device_id, role_name(prefix, device.device_id)
    if client is not None and not client.managed:
        return Plan([], "conflict")
    if not device.exists:
        commands = [{"command": "deleteClient", "username": user}] if client else []
        if role_acls is not None:
            commands.append({"command": "deleteRole", "rolename": role})
        return Plan(commands, "deleted" if commands else "unchanged")
    wanted = acls(device.topics or default_acl, user)
    if wanted is None:
        return Plan([], "invalid")
    commands = _role_commands(role, wanted, role_acls)
    client_commands, outcome, missing = _client_commands(device, role, client)
    commands += client_commands
    if outcome == "unchanged" and commands:
        outcome = "updated"
    return Plan(commands, outcome, missing)


def _role_commands(role: str, wanted: list[Acl], current: list[Acl] | None) -> list[dict[str, Any]]:
    if current is None:
        return [{"command": "createRole", "rolename": role, "acls": acls_json(wanted)}]
    if current != wanted:
        return [{"command": "modifyRole", "rolename": role, "acls": acls_json(wanted)}]
    return []


def _client_commands(
    device: DeviceAccess, role: str, client: BrokerClient | None
) -> tuple[list[dict[str, Any]], Outcome, bool]:
    user, password = device.device_id, device.password
    in_step = password is not None or (
        client is not None and client.fingerprint is not None
        and client.fingerprint == device.fingerprint
    )  # fmt: skip
    enable = device.enabled and in_step
    missing = device.enabled and not in_step
    if client is None:
        create: dict[str, Any] = {
            "command": "createClient",
            "username": user,
            "textdescription": marker(device.fingerprint if password else None),
            "roles": [{"rolename": role}],
        }
        if password:
            create["password"] = password
        disable = [] if enable else [{"command": "disableClient", "username": user}]
        return [create, *disable], "created", missing
    commands: list[dict[str, Any]] = []
    if client.disabled and not enable:
        return commands, "unchanged", missing  # kept off: no change needed on the broker
    if not enable:
        return [{"command": "disableClient", "username": user}], "disabled", missing
    modify: dict[str, Any] = {"command": "modifyClient", "username": user}
    if password is not None:
        modify |= {"password": password, "textdescription": marker(device.fingerprint)}
    if client.roles != (role,):
        modify["roles"] = [{"rolename": role}]
    if len(modify) > 2:
        commands.append(modify)
    if client.disabled:
        commands.append({"command": "enableClient", "username": user})
        return commands, "enabled", missing
    return commands, "updated" if commands else "unchanged", missing
