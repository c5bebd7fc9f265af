"""The header block is parsed cheaply, as the parser would, and only once per delivery."""

from __future__ import annotations

from email import policy
from email.message import Message
from email.parser import BytesParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.email_parse import parse_headers, parse_message, parsed_headers, split_message
from gateway.email_read import subject

_COMPAT32 = BytesParser(policy=policy.compat32)

# Pieces of header lines, malformed ones included: folding, bare CR, LF-only line ends,
# a unix From line, names with blanks or nothing before the colon, 8-bit bytes, NUL.
line_pieces = st.sampled_from(
    [b"Subject", b"X-Y", b"From ", b"From", b":", b": ", b":\t", b" ", b"\t", b"value",
     b"=?utf-8?q?caf=C3=A9?=", b"<a@b>", b"\r\n", b"\n", b"\r", b"\r\n ", b"\n\t",
     b"\xff\xfe", b"\x00", b"\x0b", b"\x85", b"a b:c", b"\x7f"]
)  # fmt: skip
header_blocks = st.lists(line_pieces, max_size=30).map(b"".join)
messages = st.builds(
    lambda block, end, body: block + end + body,
    header_blocks,
    st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\n\n", b"\n\r\n", b""]),
    st.binary(max_size=40),
)
clean_messages = st.builds(
    lambda fields, body: b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n" + body,
    st.lists(
        st.tuples(
            st.sampled_from([b"From", b"To", b"Subject", b"Message-ID", b"X-Folded"]),
            st.sampled_from([b"plain", b"", b"folded\r\n continued", b"two\r\n\tfolds\r\n x"]),
        ),
        max_size=6,
    ),
    st.binary(max_size=40),
)


def _parser_headers(raw: bytes) -> Message:
    parts = split_message(raw)
    return _COMPAT32.parsebytes(parts[0] if parts is not None else raw, headersonly=True)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(messages, clean_messages, st.binary(max_size=200)))
def test_parse_headers_equals_the_parser(raw: bytes) -> None:
    fast, full = parse_headers(raw), _parser_headers(raw)
    assert list(fast.raw_items()) == list(full.raw_items())
    assert [type(d) for d in fast.defects] == [type(d) for d in full.defects]
    assert fast.get_payload() == full.get_payload()
    assert fast.get_unixfrom() == full.get_unixfrom()


def test_split_message_ends_at_the_first_blank_line() -> None:
    raw = b"A: b\r\n\r\nbody\r\n\r\nmore"
    assert split_message(raw) == (b"A: b\r\n\r\n", b"body\r\n\r\nmore")
    assert split_message(b"A: b\n\nbody") == (b"A: b\n\n", b"body")
    assert split_message(b"A: b\r\n\nbody") == (b"A: b\r\n\n", b"body")
    assert split_message(b"A: b\r\nno blank line\r\n") is None


RAW = b"From: a@b.test\r\nSubject: Original\r\nMessage-ID: <1@b.test>\r\n\r\nHello\r\n"


def test_parse_message_reuses_the_headers_parsed_for_these_bytes() -> None:
    headers = parse_headers(RAW.replace(b"Original", b"Reused"))
    with parsed_headers(RAW, headers):
        # The very same bytes object: its header block is not parsed again.
        assert subject(parse_message(RAW)) == "Reused"
        # Equal bytes in another object, or other bytes: parsed as usual.
        assert subject(parse_message(bytes(bytearray(RAW)))) == "Original"
    assert subject(parse_message(RAW)) == "Original"  # only within the block


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(messages, clean_messages))
def test_parse_message_with_reused_headers_equals_a_fresh_parse(raw: bytes) -> None:
    with parsed_headers(raw, parse_headers(raw)):
        reused = parse_message(raw)
    fresh = parse_message(raw)
    assert list(reused.raw_items()) == list(fresh.raw_items())
    assert [type(d) for d in reused.defects] == [type(d) for d in fresh.defects]
    assert reused.is_multipart() == fresh.is_multipart()
    if not fresh.is_multipart():
        assert reused.get_payload() == fresh.get_payload()
