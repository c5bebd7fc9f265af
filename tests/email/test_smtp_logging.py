"""The SMTP intake's log: aiosmtpd's per-command lines are quiet unless LOGGING asks for them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.email.support import Inbox, asend, make_app, message, smtp_gateway, wire

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def library_log() -> Iterator[logging.Logger]:
    log = logging.getLogger("mail.log")
    level = log.level
    log.setLevel(logging.NOTSET)
    yield log
    log.setLevel(level)


async def _deliver_one(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    inbox = Inbox()
    with caplog.at_level(logging.DEBUG):
        async with smtp_gateway(make_app(inbox)) as port:
            assert await asend(port, wire(message()), ["support@example.com"]) == {}
    assert len(inbox.seen) == 1
    return [record for record in caplog.records if record.name == "mail.log"]


async def test_aiosmtpd_logs_no_line_per_command_by_default(
    library_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    assert await _deliver_one(caplog) == []
    assert library_log.level == logging.WARNING


async def test_a_level_set_in_logging_is_kept(
    library_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    library_log.setLevel(logging.INFO)
    lines = [record.getMessage() for record in await _deliver_one(caplog)]
    assert any("handling connection" in line for line in lines)
    assert library_log.level == logging.INFO
