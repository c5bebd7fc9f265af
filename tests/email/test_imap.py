"""The IMAP adapter against a real Dovecot started by each test."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_app.models.imap import ImapCheckpoint
from tests.email.imap_support import (
    Recorder,
    account,
    eventually,
    flags,
    message,
    running_adapter,
)
from tests.integration.dovecot import Dovecot, running_dovecot

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    with running_dovecot(tmp_path) as server:
        yield server


async def test_idle_delivers_new_mail_and_flags_it_seen(dovecot: Dovecot) -> None:
    app = Recorder()
    async with running_adapter(app, [account(dovecot)]) as running:
        assert [(x.protocol, x.address) for x in running.listeners] == [
            ("imap", f"imap://inbox@example.com@127.0.0.1:{dovecot.port}/INBOX")
        ]
        await eventually(lambda: ": idle" in running.detail(), "the adapter to IDLE")
        raw = message("first")
        await asyncio.to_thread(dovecot.append, raw)
        await eventually(lambda: app.calls, "the message to be handled")
        await eventually(
            lambda: _flags_are(dovecot, {1: {"\\Seen"}}), "the message to be flagged \\Seen"
        )
        assert running.adapter.health().status == "ok"
    scope, received = app.calls[0]
    assert received == raw
    assert scope["type"] == "email"
    assert scope["source"] == "imap"
    assert scope["adapter"] == "imap"
    assert scope["recipient"] == "inbox@example.com"
    assert scope["sender"] == "customer@example.org"
    assert scope["mailbox"] == "INBOX"
    assert scope["uid"] == 1
    assert scope["uidvalidity"] > 0
    assert scope["message_id"] == "first@test"
    assert scope["peer"] is None
    assert len(app.calls) == 1


async def _flags_are(dovecot: Dovecot, expected: dict[int, set[str]]) -> bool:
    return await flags(dovecot) == expected


async def test_mail_already_waiting_is_handled_in_uid_order(dovecot: Dovecot) -> None:
    for subject in ("one", "two", "three"):
        dovecot.append(message(subject))
    app = Recorder()
    async with running_adapter(app, [account(dovecot)]):
        await eventually(lambda: len(app.calls) == 3, "three messages")
        await eventually(
            lambda: _flags_are(dovecot, {uid: {"\\Seen"} for uid in (1, 2, 3)}), "all seen"
        )
    assert app.subjects() == ["one", "two", "three"]


async def test_on_success_move_puts_handled_mail_in_the_folder(dovecot: Dovecot) -> None:
    dovecot.create("Done")
    app = Recorder()
    async with running_adapter(app, [account(dovecot, ON_SUCCESS="move:Done")]):
        await asyncio.to_thread(dovecot.append, message("to move"))
        await eventually(lambda: _flags_are(dovecot, {}), "INBOX to be empty")
    assert "\\Seen" in (await flags(dovecot, "Done"))[1]
    assert app.subjects() == ["to move"]


async def test_move_falls_back_to_copy_and_expunge_without_move(tmp_path: Path) -> None:
    app = Recorder()
    with running_dovecot(tmp_path, capability="IMAP4rev1 IDLE UIDPLUS LITERAL+") as server:
        server.create("Done")
        async with running_adapter(app, [account(server, ON_SUCCESS="move:Done")]):
            await asyncio.to_thread(server.append, message("copied"))
            await eventually(lambda: _flags_are(server, {}), "INBOX to be empty")
        assert "\\Seen" in (await flags(server, "Done"))[1]
    assert app.subjects() == ["copied"]


async def test_a_failing_consumer_is_retried_then_dead_lettered_and_mail_stays_unseen(
    dovecot: Dovecot,
) -> None:
    app = Recorder(fail=lambda subject, attempt: subject == "boom")
    async with running_adapter(app, [account(dovecot)]) as running:
        await asyncio.to_thread(dovecot.append, message("boom"))
        await eventually(lambda: running.dead, "a dead letter")
        # Mail arriving later is handled; the dead-lettered one is not tried again.
        await asyncio.to_thread(dovecot.append, message("fine"))
        await eventually(lambda: "fine" in app.subjects(), "the next message")
        await eventually(
            lambda: _flags_are(dovecot, {1: set(), 2: {"\\Seen"}}), "only the second seen"
        )
    assert app.subjects() == ["boom", "boom", "boom", "fine"]
    assert [scope["attempt"] for scope, _ in app.calls[:3]] == [1, 2, 3]
    [letter] = running.dead
    assert letter.attempts == 3
    assert letter.payload == message("boom")
    assert "consumer failed on boom" in letter.error
    assert running.metrics.render().count("dead_lettered") >= 1


async def test_a_consumer_failing_once_is_retried_and_the_mail_flagged(dovecot: Dovecot) -> None:
    app = Recorder(fail=lambda subject, attempt: attempt == 1)
    async with running_adapter(app, [account(dovecot)]) as running:
        await asyncio.to_thread(dovecot.append, message("flaky"))
        await eventually(lambda: _flags_are(dovecot, {1: {"\\Seen"}}), "the message seen")
    assert [scope["attempt"] for scope, _ in app.calls] == [1, 2]
    assert running.dead == []


async def test_unrouted_mail_stays_unseen_and_is_logged_once(
    dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    app = Recorder()
    caplog.set_level(logging.WARNING, logger="gateway.imap")
    routes = (r"sales@example\.com",)
    async with running_adapter(app, [account(dovecot)], routes=routes):
        await asyncio.to_thread(dovecot.append, message("nobody wants me"))
        # A catch-all mailbox: the delivering server's X-Original-To names the recipient.
        routed = message("for sales", headers="X-Original-To: sales@example.com\r\n")
        await asyncio.to_thread(dovecot.append, routed)
        await eventually(lambda: _flags_are(dovecot, {1: set(), 2: {"\\Seen"}}), "2 seen")
        await asyncio.sleep(0.5)  # a few more IDLE rounds: the unrouted one is not retried
    assert app.subjects() == ["for sales"]
    assert app.calls[0][0]["recipient"] == "sales@example.com"
    unrouted = [r for r in caplog.records if "no route accepts" in r.getMessage()]
    assert len(unrouted) == 1
    assert "inbox@example.com" in unrouted[0].getMessage()


async def test_dovecot_restart_reconnects_and_nothing_is_handled_twice(dovecot: Dovecot) -> None:
    app = Recorder()
    async with running_adapter(app, [account(dovecot)]) as running:
        await asyncio.to_thread(dovecot.append, message("before"))
        await eventually(lambda: _flags_are(dovecot, {1: {"\\Seen"}}), "the first seen")
        await eventually(lambda: ": idle" in running.detail(), "the adapter to IDLE")
        # Dovecot goes away while the adapter waits in IDLE: the socket closes under it.
        await asyncio.to_thread(dovecot.restart)
        await asyncio.to_thread(dovecot.append, message("after"))
        await eventually(lambda: "after" in app.subjects(), "mail after the restart")
        await eventually(lambda: _flags_are(dovecot, {1: {"\\Seen"}, 2: {"\\Seen"}}), "both seen")
        await eventually(lambda: running.adapter.health().status == "ok", "health ok")
    assert app.subjects() == ["before", "after"]


async def test_connection_lost_before_flagging_does_not_run_the_app_again(
    dovecot: Dovecot,
) -> None:
    stopped = asyncio.Event()

    async def stop_server_once(subject: str) -> None:
        if not stopped.is_set():
            stopped.set()
            await asyncio.to_thread(dovecot.stop)  # the app returns; \Seen cannot be stored

    app = Recorder(before_return=stop_server_once)
    async with running_adapter(app, [account(dovecot)]) as running:
        await asyncio.to_thread(dovecot.append, message("once"))
        await eventually(stopped.is_set, "the app to stop the server")
        await eventually(lambda: "backoff" in running.detail(), "the adapter to back off")
        await asyncio.to_thread(dovecot.start)
        # Reconnected, it finds the message still unseen and flags it without a second run.
        await eventually(lambda: _flags_are(dovecot, {1: {"\\Seen"}}), "the message seen")
    assert app.subjects() == ["once"]


async def test_poll_fallback_without_idle(dovecot: Dovecot) -> None:
    app = Recorder()
    async with running_adapter(app, [account(dovecot, IDLE=False)]) as running:
        await eventually(lambda: ": polling" in running.detail(), "the adapter to poll")
        await asyncio.to_thread(dovecot.append, message("polled"))
        await eventually(lambda: _flags_are(dovecot, {1: {"\\Seen"}}), "the message seen")
    assert app.subjects() == ["polled"]


async def test_poll_fallback_when_the_server_has_no_idle(tmp_path: Path) -> None:
    app = Recorder()
    with running_dovecot(tmp_path, capability="IMAP4rev1 UIDPLUS LITERAL+") as server:
        async with running_adapter(app, [account(server)]) as running:
            await eventually(lambda: ": polling" in running.detail(), "the adapter to poll")
            await asyncio.to_thread(server.append, message("polled"))
            await eventually(lambda: _flags_are(server, {1: {"\\Seen"}}), "the message seen")
    assert app.subjects() == ["polled"]


async def test_uidvalidity_change_rescans_the_mailbox(dovecot: Dovecot) -> None:
    dovecot.create("Support")
    app = Recorder()
    accounts = [account(dovecot, MAILBOX="Support")]
    async with running_adapter(app, accounts):
        await asyncio.to_thread(dovecot.append, message("old"), "Support")
        await eventually(lambda: "old" in app.subjects(), "the first message")
        await eventually(lambda: _checkpoint_at(1), "the checkpoint at UID 1")
    first = await _checkpoint()
    # Recreated, the mailbox gets a new UIDVALIDITY and its UIDs start at 1 again.
    dovecot.delete("Support")
    dovecot.create("Support")
    dovecot.append(message("new"), "Support")
    async with running_adapter(app, accounts):
        await eventually(lambda: "new" in app.subjects(), "the message with UID 1 again")
        await eventually(lambda: _flags_seen_in(dovecot, "Support"), "it to be seen")
    second = await _checkpoint()
    assert second.uidvalidity != first.uidvalidity
    assert second.last_uid == 1
    assert app.subjects() == ["old", "new"]


async def test_checkpoint_survives_a_restart_of_the_adapter(dovecot: Dovecot) -> None:
    app = Recorder(fail=lambda subject, attempt: subject == "poison")
    async with running_adapter(app, [account(dovecot)]) as running:
        await asyncio.to_thread(dovecot.append, message("poison"))
        await eventually(lambda: running.dead, "a dead letter")
        await eventually(lambda: _checkpoint_at(1), "the checkpoint past it")
    async with running_adapter(app, [account(dovecot)]):
        await asyncio.to_thread(dovecot.append, message("later"))
        await eventually(lambda: "later" in app.subjects(), "the next message")
    # The dead-lettered message stays unseen for an admin, and is not run again.
    assert app.subjects().count("poison") == 3
    assert await flags(dovecot) == {1: set(), 2: {"\\Seen"}}


async def test_two_mailboxes_are_watched_side_by_side(dovecot: Dovecot) -> None:
    dovecot.create("Other")
    app = Recorder()
    accounts = [account(dovecot), account(dovecot, MAILBOX="Other")]
    async with running_adapter(app, accounts) as running:
        assert len(running.listeners) == 2
        await asyncio.to_thread(dovecot.append, message("in inbox"))
        await asyncio.to_thread(dovecot.append, message("in other"), "Other")
        await eventually(lambda: len(app.calls) == 2, "both messages")
    assert sorted(scope["mailbox"] for scope, _ in app.calls) == ["INBOX", "Other"]


async def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    app = Recorder()
    with running_dovecot(tmp_path, tls=True) as server:
        entry = account(server, SSL=True, SSL_CAFILE=str(server.cafile))
        async with running_adapter(app, [entry]) as running:
            assert running.listeners[0].address.startswith("imaps://")
            await asyncio.to_thread(server.append, message("secret"))
            await eventually(lambda: _flags_are(server, {1: {"\\Seen"}}), "the message seen")
    assert app.subjects() == ["secret"]


async def _flags_seen_in(dovecot: Dovecot, mailbox: str) -> bool:
    return await flags(dovecot, mailbox) == {1: {"\\Seen"}}


async def _checkpoint() -> ImapCheckpoint:
    return await ImapCheckpoint.objects.aget()


async def _checkpoint_at(uid: int) -> bool:
    row = await ImapCheckpoint.objects.afirst()
    return row is not None and row.last_uid == uid


async def test_the_same_message_twice_in_the_mailbox_is_handled_once(dovecot: Dovecot) -> None:
    app = Recorder()
    async with running_adapter(app, [account(dovecot)]):
        await asyncio.to_thread(dovecot.append, message("twice"))
        await asyncio.to_thread(dovecot.append, message("twice"))
        await eventually(
            lambda: _flags_are(dovecot, {1: {"\\Seen"}, 2: {"\\Seen"}}), "both flagged"
        )
    assert app.subjects() == ["twice"]


async def test_idle_is_renewed_and_still_sees_new_mail(dovecot: Dovecot) -> None:
    app = Recorder()
    async with running_adapter(app, [account(dovecot, IDLE_TIMEOUT=0.3)]) as running:
        await eventually(lambda: ": idle" in running.detail(), "the adapter to IDLE")
        await asyncio.sleep(1.5)  # several IDLE periods end and start again
        await asyncio.to_thread(dovecot.append, message("late"))
        await eventually(lambda: _flags_are(dovecot, {1: {"\\Seen"}}), "the message seen")
        assert running.adapter.health().status == "ok"
    assert app.subjects() == ["late"]


async def test_a_server_gone_silent_times_out_and_the_adapter_reconnects(
    dovecot: Dovecot,
) -> None:
    proxy = await FreezingProxy.start(dovecot.port)
    app = Recorder()
    entry = account(dovecot, PORT=proxy.port, IDLE_TIMEOUT=0.5, TIMEOUT=1.0)
    try:
        async with running_adapter(app, [entry]) as running:
            await eventually(lambda: ": idle" in running.detail(), "the adapter to IDLE")
            # No FIN, no RST: the link just stops carrying bytes, like a dead NAT entry.
            proxy.freeze()
            await eventually(lambda: proxy.connections >= 2, "a timeout and a new connection")
            await asyncio.to_thread(dovecot.append, message("after silence"))
            await eventually(lambda: _flags_are(dovecot, {1: {"\\Seen"}}), "the message seen")
        assert app.subjects() == ["after silence"]
    finally:
        await proxy.close()


class FreezingProxy:
    """A TCP proxy to Dovecot whose open connections can be frozen (bytes no longer pass)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.connections = 0
        self.frozen: list[asyncio.Event] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    @classmethod
    async def start(cls, target: int) -> FreezingProxy:
        proxy = cls(target)
        proxy.server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
        proxy.port = proxy.server.sockets[0].getsockname()[1]
        return proxy

    def freeze(self) -> None:
        for event in self.frozen:
            event.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        frozen = asyncio.Event()
        self.frozen.append(frozen)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer, frozen), self._pipe(up_reader, writer, frozen)
        )

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frozen: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if frozen.is_set():
                continue  # swallowed: the peer waits for an answer that never comes
            writer.write(data)
        if not frozen.is_set():
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


async def test_an_unreachable_server_at_start_is_retried_until_it_answers(
    dovecot: Dovecot,
) -> None:
    dovecot.stop()
    app = Recorder()
    async with running_adapter(app, [account(dovecot)]) as running:
        await eventually(lambda: "backoff" in running.detail(), "the adapter to back off")
        assert running.adapter.health().status == "down"
        await asyncio.to_thread(dovecot.start)
        await asyncio.to_thread(dovecot.append, message("patience"))
        await eventually(lambda: _flags_are(dovecot, {1: {"\\Seen"}}), "the message seen")
        assert running.adapter.health().status == "ok"
    assert app.subjects() == ["patience"]
