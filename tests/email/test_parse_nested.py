"""Multipart messages are parsed at compat32's cost into the tree the parser would build.

`gateway.email_parse.parse_message` rebuilds a compat32 parse as ``EmailMessage`` parts when
every part's Content-Type reads the same under both policies and nothing is malformed; the
rest goes to the parser. Each case compares the result with ``policy.default``'s parser part
by part: raw headers, content types, payloads, preambles and epilogues, defects, bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import email_read
from gateway.email_parse import parse_message

_PARSER = BytesParser(policy=policy.default)

CLEAN_TYPES = [
    b"text/plain",
    b'text/plain; charset="utf-8"',
    b"text/html; charset=us-ascii",
    b"application/octet-stream; name=a.bin",
    b"text/plain;\r\n charset=utf-8",
]
# Read differently by the two policies, or malformed: messages with these go to the parser.
ODD_TYPES = [
    b'text/plain; charset="a\\"b"',
    b"text/plain; name*=utf-8''%e2%82%ac",
    b"text/plain (comment)",
    b"=?utf-8?q?text/plain?=",
    b"text",
    b"text/plain; charset",
    b'text/plain; name="=?utf-8?q?caf=C3=A9?="',
]
ENCODINGS = st.sampled_from([None, b"7bit", b"base64", b"quoted-printable", b"8bit", b"x-junk"])
BODIES = st.sampled_from(
    [b"a reading\r\n", b"", b"line one\r\nline two", b"YSByZWFkaW5n\r\n", b"caf\xc3\xa9\r\n",
     b"=E2=82=AC\r\n", b"\xff\xfe raw", b"--not-a-boundary\r\n", b"lf only\nline\n"]
)  # fmt: skip
BOUNDARIES = st.sampled_from(["b1", "=_0123abc", "with space", "a'()+_,./:=?-z", "x" * 70])


def leaf(types: list[bytes]) -> st.SearchStrategy[bytes]:
    return _leaf(st.sampled_from(types))


@st.composite
def _leaf(draw: st.DrawFn, types: st.SearchStrategy[bytes]) -> bytes:
    headers = b"Content-Type: " + draw(types) + b"\r\n"
    encoding = draw(ENCODINGS)
    if encoding is not None:
        headers += b"Content-Transfer-Encoding: " + encoding + b"\r\n"
    if draw(st.booleans()):
        headers += b'Content-Disposition: attachment; filename="r.txt"\r\n'
    return headers + b"\r\n" + draw(BODIES)


def multipart(children: st.SearchStrategy[bytes], endings: list[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        boundary = draw(BOUNDARIES)
        subtype = draw(st.sampled_from(["mixed", "alternative", "related", "digest"]))
        quoted = draw(st.booleans()) or " " in boundary or ":" in boundary
        value = f'"{boundary}"' if quoted else boundary
        folding = draw(st.sampled_from([" ", "\r\n ", "\r\n\t"]))
        head = f"Content-Type: multipart/{subtype};{folding}boundary={value}\r\n".encode()
        parts = draw(st.lists(children, min_size=0, max_size=3))
        mark = f"--{boundary}".encode()
        preamble = draw(st.sampled_from([b"", b"This is a MIME message.\r\n"]))
        body = preamble + b"".join(mark + b"\r\n" + part + b"\r\n" for part in parts)
        ending = mark + b"--" + draw(st.sampled_from(endings))
        return head + b"\r\n" + body + ending

    return build()


def rfc822(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return children.map(
        lambda inner: b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n" + inner
    )


def trees(types: list[bytes], endings: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.recursive(
        leaf(types),
        lambda children: st.one_of(multipart(children, endings), rfc822(children)),
        max_leaves=6,
    )


# Well-formed trees (the parser's tree is rebuilt) and trees with odd Content-Types and
# missing or broken closing boundaries (mostly left to the parser).
CLEAN_TREES = trees(CLEAN_TYPES, [b"\r\n", b"\r\nepilogue\r\n"])
ANY_TREES = trees(CLEAN_TYPES + ODD_TYPES, [b"\r\n", b"\r\nepilogue\r\n", b"", b"-"])
TOP = b"From: a@b.test\r\nTo: support@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"


def outcome(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception as exc:  # the same failure on both sides counts as the same
        return type(exc)


def shape(message: Message) -> list[Any]:
    found = []
    for part in message.walk():
        found.append(
            (
                type(part),
                list(part.raw_items()),
                part.get_unixfrom(),
                part.get_content_type(),
                part.get_default_type(),
                part.get_boundary(),
                part.is_multipart(),
                part.preamble,
                part.epilogue,
                [type(defect) for defect in part.defects],
                None if part.is_multipart() else part.get_payload(),
                None if part.is_multipart() else outcome(lambda p=part: p.get_content()),
            )
        )
    return found


def assert_same(raw: bytes) -> None:
    fast, full = parse_message(raw), _PARSER.parsebytes(raw)
    assert isinstance(fast, EmailMessage)
    assert shape(fast) == shape(full)
    assert outcome(fast.as_bytes) == outcome(full.as_bytes)
    assert outcome(lambda: email_read.text_body(fast)) == outcome(
        lambda: email_read.text_body(full)
    )
    assert [a.filename for a in email_read.attachments(fast)] == [
        a.filename for a in email_read.attachments(full)
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(CLEAN_TREES, ANY_TREES))
def test_a_multipart_message_parses_as_the_parser_would(tree: bytes) -> None:
    assert_same(TOP + tree)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(CLEAN_TREES, ANY_TREES), st.sampled_from([b"\r\n", b"\n"]))
def test_with_lf_line_ends_too(tree: bytes, end: bytes) -> None:
    assert_same((TOP + tree).replace(b"\r\n", end))


def test_a_webhook_rebuilt_message_parses_as_the_parser_would() -> None:
    # What a provider posting fields (Mailgun's parsed form) becomes: three nested multiparts.
    raw = (
        b"From: alice@customer.test\r\nTo: support@example.com\r\nSubject: flood\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary="=_973b"\r\n\r\n'
        b'--=_973b\r\nContent-Type: multipart/related;\r\n boundary="=_c3c2"\r\n\r\n'
        b'--=_c3c2\r\nContent-Type: multipart/alternative;\r\n boundary="=_841a"\r\n\r\n'
        b'--=_841a\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nYSByZWFkaW5n\r\n\r\n--=_841a--\r\n\r\n"
        b"--=_c3c2--\r\n\r\n--=_973b--\r\n"
    )
    assert_same(raw)
    assert email_read.text_body(parse_message(raw)) == "a reading"


def test_a_malformed_multipart_goes_to_the_parser() -> None:
    # No closing boundary: the parser records a defect, and its own tree is returned.
    raw = TOP + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nno end\r\n"
    message = parse_message(raw)
    assert [type(d).__name__ for d in message.defects] == ["CloseBoundaryNotFoundDefect"]
    assert_same(raw)
