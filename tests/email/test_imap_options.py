"""The IMAP adapter's OPTIONS: every mistake reported, naming the setting; defaults applied."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.adapters import AdapterContext
from gateway.metrics import MetricsRegistry
from gateway.options import ReconnectPolicy
from gateway.pipeline import RetryPolicy, log_dead_letter
from gateway.types import Receive, Scope, Send
from protocol_adapters.imap import ImapAdapter
from protocol_adapters.imap_options import IMAP_OPTIONS
from protocol_adapters.imap_session import ImapAccount, quote_mailbox

GOOD: dict[str, Any] = {"HOST": "imap.example.com", "USERNAME": "a@example.com", "PASSWORD": "p"}


async def noop_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("never called")


def test_good_options_have_no_problem() -> None:
    assert ImapAdapter.check_options({"ACCOUNTS": [GOOD]}) == []


def parse_accounts(options: dict[str, Any]) -> list[ImapAccount]:
    accounts: list[ImapAccount] = IMAP_OPTIONS.parse(options)["ACCOUNTS"]
    return accounts


def test_accounts_must_be_a_non_empty_list() -> None:
    required = ['OPTIONS["ACCOUNTS"] is required and must be a non-empty list of mailboxes']
    assert ImapAdapter.check_options({}) == required
    assert ImapAdapter.check_options({"ACCOUNTS": []}) == required
    # The type only: an entry holds a password.
    assert ImapAdapter.check_options({"ACCOUNTS": {**GOOD}}) == [
        'OPTIONS["ACCOUNTS"] must be a non-empty list of mailboxes, got a dict'
    ]
    assert ImapAdapter.check_options({"ACCOUNTS": ["imap.example.com"]}) == [
        'OPTIONS["ACCOUNTS"][0] must be a dict, got str'
    ]


def test_every_mistake_is_reported_with_its_setting() -> None:
    bad = {
        "HOST": "",
        "USERNAME": "not-an-address",
        "PORT": 70000,
        "ON_SUCCESS": "delete",
        "IDLE_TIMEOUT": 1800,
        "POLL_INTERVAL": 0,
        "RECIPIENT_HEADERS": "Delivered-To",
        "COLOUR": "blue",
    }
    options = {
        "ACCOUNTS": [bad],
        "RETRY": {"ATTEMPTS": 0},
        "RECONNECT": {"INITIAL": -1},
        "STORE": "yes",
        "CHECKPOINT_STORE": False,
        "MAX_IN_FLIGHT": 0,
        "SHAPE": "round",
    }
    problems = ImapAdapter.check_options(options)
    where = 'OPTIONS["ACCOUNTS"][0]'
    expected = [
        f'{where}["COLOUR"] is not a known key',
        f'{where}["HOST"] is required',
        f'{where}["PASSWORD"] is required',
        f'{where}["POLL_INTERVAL"] must be a positive number of seconds, got 0',
        f'{where}["IDLE_TIMEOUT"] must be below 29 minutes (1740 s), got 1800',
        f"{where}[\"RECIPIENT_HEADERS\"] must be a list of header names, got 'Delivered-To'",
        f'{where}["PORT"] must be a TCP port number, got 70000',
        f"{where}[\"ON_SUCCESS\"] must be 'seen' or 'move:<folder>', got 'delete'",
        f'{where}["RECIPIENT"] is required when USERNAME is not an address',
        'OPTIONS["RETRY"]["ATTEMPTS"] must be an integer >= 1, got 0',
        'OPTIONS["RECONNECT"]["INITIAL"] must be a positive number of seconds, got -1',
        "OPTIONS[\"STORE\"] cannot import 'yes': yes doesn't look like a module path",
        'OPTIONS["CHECKPOINT_STORE"] must be None or a dotted path to a class, got False',
        'OPTIONS["MAX_IN_FLIGHT"] must be a positive integer, got 0',
        'OPTIONS["SHAPE"] is not a known key',
    ]
    assert problems == expected


def test_old_retry_and_reconnect_keys_work_for_one_release_with_a_warning() -> None:
    old = {
        "ACCOUNTS": [GOOD],
        "RETRY_ATTEMPTS": 5,
        "RETRY_BACKOFF": 0.25,
        "RECONNECT_BACKOFF": 0.05,
        "RECONNECT_MAX_BACKOFF": 0.5,
    }
    assert ImapAdapter.check_options(old) == []
    context = AdapterContext(noop_app, "imap", old, MetricsRegistry(), log_dead_letter)
    with pytest.warns(DeprecationWarning, match="is deprecated") as caught:
        adapter = ImapAdapter(context)
    said = {str(warning.message).split(" is deprecated")[0] for warning in caught}
    assert said == {f'OPTIONS["{key}"]' for key in old if key != "ACCOUNTS"}
    # The new keys' other fields keep their defaults.
    assert adapter.values["RETRY"] == RetryPolicy(5, 0.25, 60.0)
    assert adapter.values["RECONNECT"] == ReconnectPolicy(0.05, 0.5)


def test_old_retry_and_reconnect_keys_are_reported_under_the_new_keys() -> None:
    old = {"ACCOUNTS": [GOOD], "RETRY_ATTEMPTS": 0, "RETRY_MAX_BACKOFF": "1m"}
    assert ImapAdapter.check_options({**old, "RECONNECT_BACKOFF": -1}) == [
        'OPTIONS["RETRY"]["ATTEMPTS"] must be an integer >= 1, got 0',
        'OPTIONS["RETRY"]["MAX_BACKOFF"] must be a number of seconds >= 0, got \'1m\'',
        'OPTIONS["RECONNECT"]["INITIAL"] must be a positive number of seconds, got -1',
    ]
    both = {"ACCOUNTS": [GOOD], "RECONNECT_MAX_BACKOFF": 5, "RECONNECT": {"MAX": 5}}
    assert ImapAdapter.check_options(both) == [
        'OPTIONS["RECONNECT_MAX_BACKOFF"] is the old name of OPTIONS["RECONNECT"]: set one of them'
    ]


def test_defaults_of_the_adapter_keys() -> None:
    values = IMAP_OPTIONS.parse({"ACCOUNTS": [GOOD]})
    assert values["RETRY"] == RetryPolicy(3, 1.0, 60.0)
    assert values["RECONNECT"] == ReconnectPolicy(1.0, 60.0)
    assert (values["MAX_IN_FLIGHT"], values["APP_TIMEOUT"]) == (100, 120.0)
    assert values["STORE"] is values["CHECKPOINT_STORE"] is None


def test_store_options_name_a_class_by_dotted_path() -> None:
    options = {
        "ACCOUNTS": [GOOD],
        "STORE": "gateway.email_store.NoMailStore",
        "CHECKPOINT_STORE": "django_app.imap_checkpoints.DatabaseCheckpointStore",
    }
    assert ImapAdapter.check_options(options) == []


def test_a_mailbox_listed_twice_is_refused() -> None:
    options = {"ACCOUNTS": [GOOD, {**GOOD, "MAILBOX": "Other"}, GOOD]}
    assert ImapAdapter.check_options(options) == [
        'OPTIONS["ACCOUNTS"] lists a@example.com@imap.example.com:993/INBOX twice'
    ]


def test_defaults() -> None:
    [account] = parse_accounts({"ACCOUNTS": [GOOD]})
    assert (account.port, account.ssl, account.mailbox) == (993, True, "INBOX")
    assert account.recipient == "a@example.com"
    assert account.on_success == "seen"
    assert account.move_to is None
    assert account.idle_timeout == 25 * 60
    assert account.use_idle is True
    assert account.url == "imaps://a@example.com@imap.example.com:993/INBOX"
    assert account.key == "a@example.com@imap.example.com:993/INBOX"


def test_plain_imap_move_and_recipient() -> None:
    entry = {**GOOD, "SSL": False, "USERNAME": "support", "RECIPIENT": "Help@Example.com"}
    [account] = parse_accounts({"ACCOUNTS": [{**entry, "ON_SUCCESS": "move:Done/2026"}]})
    assert account.port == 143
    assert account.recipient == "help@example.com"
    assert account.move_to == "Done/2026"
    assert account.url.startswith("imap://support@")


def test_mailbox_names_are_quoted_when_needed() -> None:
    assert quote_mailbox("INBOX") == "INBOX"
    assert quote_mailbox("Support/Done") == "Support/Done"
    assert quote_mailbox("Handled mail") == '"Handled mail"'
    assert quote_mailbox('a"b\\c') == '"a\\"b\\\\c"'


async def test_health_before_start_and_stop_without_start() -> None:
    context = AdapterContext(
        noop_app, "imap", {"ACCOUNTS": [GOOD]}, MetricsRegistry(), log_dead_letter
    )
    adapter = ImapAdapter(context)
    assert adapter.health().status == "starting"
    await adapter.stop(1.0)
    assert ImapAdapter.protocol == "email"
