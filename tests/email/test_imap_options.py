"""The IMAP adapter's OPTIONS: every mistake reported, naming the setting; defaults applied."""

from __future__ import annotations

from typing import Any

from gateway.adapters import AdapterContext
from gateway.metrics import MetricsRegistry
from gateway.pipeline import log_dead_letter
from gateway.types import Receive, Scope, Send
from protocol_adapters.imap import ImapAdapter
from protocol_adapters.imap_options import parse_accounts
from protocol_adapters.imap_session import quote_mailbox

GOOD: dict[str, Any] = {"HOST": "imap.example.com", "USERNAME": "a@example.com", "PASSWORD": "p"}


def test_good_options_have_no_problem() -> None:
    assert ImapAdapter.check_options({"ACCOUNTS": [GOOD]}) == []


def test_accounts_must_be_a_non_empty_list() -> None:
    assert ImapAdapter.check_options({}) == [
        "OPTIONS['ACCOUNTS'] must be a non-empty list of mailboxes"
    ]
    assert ImapAdapter.check_options({"ACCOUNTS": []}) != []


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
        "RETRY_ATTEMPTS": 0,
        "RECONNECT_BACKOFF": -1,
        "STORE": "yes",
        "CHECKPOINT_STORE": False,
    }
    problems = ImapAdapter.check_options(options)
    where = "OPTIONS['ACCOUNTS'][0]"
    expected = [
        f"{where}['COLOUR'] is not a known option",
        f"{where}['HOST'] is required",
        f"{where}['PASSWORD'] is required",
        f"{where}['POLL_INTERVAL'] must be a positive number of seconds",
        f"{where}['IDLE_TIMEOUT'] must be below 29 minutes (1740 s)",
        f"{where}['RECIPIENT_HEADERS'] must be a list of header names",
        f"{where}['PORT'] must be a TCP port number",
        f"{where}['ON_SUCCESS'] must be 'seen' or 'move:<folder>'",
        f"{where}['RECIPIENT'] is required when USERNAME is not an address",
        "OPTIONS['RECONNECT_BACKOFF'] must be a number of seconds >= 0",
        "OPTIONS['RETRY_ATTEMPTS'] must be a whole number >= 1",
        "OPTIONS['STORE']: cannot import 'yes': yes doesn't look like a module path",
        "OPTIONS['CHECKPOINT_STORE'] must be None or a dotted path to a class, got False",
    ]
    assert problems == expected


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
        "OPTIONS['ACCOUNTS'] lists a@example.com@imap.example.com:993/INBOX twice"
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
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("never called")

    context = AdapterContext(app, "imap", {"ACCOUNTS": [GOOD]}, MetricsRegistry(), log_dead_letter)
    adapter = ImapAdapter(context)
    assert adapter.health().status == "starting"
    await adapter.stop(1.0)
    assert ImapAdapter.protocol == "email"
