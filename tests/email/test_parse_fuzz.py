"""The email parser under random bytes: it parses or records defects, never raises or hangs.

`gateway.email_parse` documents that defects are recorded, never raised; `gateway.email_read`
reads whatever the parser made of them. Each example must finish within Hypothesis' deadline
(200 ms; the "long" profile lifts it, see tests/conftest.py).
"""

from __future__ import annotations

from email.message import Message

from hypothesis import given
from hypothesis import strategies as st

from gateway import email_read
from gateway.email_parse import parse_headers, parse_message, split_message

NAMES = st.sampled_from(
    ["From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Content-Type",
     "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version", "X-Junk", "from"]
)  # fmt: skip
VALUES = st.one_of(
    st.binary(max_size=80),
    st.sampled_from(
        [b"multipart/mixed; boundary=b", b"multipart/alternative; boundary=\"\"",
         b"message/rfc822", b"text/plain; charset=unknown-8bit", b"=?utf-8?q?=E2=82?=",
         b"<a@b> <c@d", b"base64", b"quoted-printable", b"attachment; filename*=x''%ff"]
    ),
)  # fmt: skip
LINE_END = st.sampled_from([b"\r\n", b"\n", b"\r", b""])


@st.composite
def mail_shaped(draw: st.DrawFn) -> bytes:
    """Header-like lines, a blank line or not, then a body with boundaries and junk."""
    fields = draw(st.lists(st.tuples(NAMES, VALUES, LINE_END), max_size=12))
    head = b"".join(name.encode() + b": " + value + end for name, value, end in fields)
    body = draw(st.lists(st.one_of(st.binary(max_size=60), st.just(b"--b\r\n")), max_size=10))
    return head + draw(LINE_END) + draw(LINE_END) + b"".join(body)


RAW = st.one_of(st.binary(max_size=2000), mail_shaped())


def read_everything(message: Message) -> None:
    email_read.subject(message)
    email_read.sender_address(message)
    email_read.message_id(message)
    email_read.in_reply_to(message)
    email_read.references(message)
    email_read.text_body(message)
    email_read.html_body(message)
    email_read.attachments(message)


@given(RAW)
def test_parse_message_never_raises(raw: bytes) -> None:
    read_everything(parse_message(raw))


@given(RAW)
def test_parse_headers_never_raises(raw: bytes) -> None:
    headers = parse_headers(raw)
    email_read.subject(headers)
    email_read.message_id(headers)
    email_read.references(headers)


@given(RAW)
def test_split_message_finds_the_blank_line_or_none(raw: bytes) -> None:
    parts = split_message(raw)
    if parts is not None:
        head, body = parts
        assert head + body == raw
        assert head.endswith((b"\n\n", b"\n\r\n"))
