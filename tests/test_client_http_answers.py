"""The client's HTTP/1.1 answer reader: any answers, cut anywhere, come out whole and in order; bad bytes
raise MalformedAnswer and nothing else."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftka.client.http_answers import MAX_HEAD_BYTES, AnswerReader, MalformedAnswer

bodies = st.binary(max_size=3000)


@st.composite
def answers(draw):
    """(bytes on the wire, (status, body, keep_alive, X-Raftka-Broker value) expected)."""
    status = draw(st.sampled_from([200, 201, 204, 304, 307, 400, 404, 413, 500, 503]))
    body = b"" if status in (204, 304) else draw(bodies)
    close = draw(st.booleans())
    broker = str(draw(st.integers(0, 99)))
    head = [f"HTTP/1.1 {status} Whatever Reason", f"x-raftka-BROKER:  {broker} "]
    if close:
        head.append("Connection: close")
    wire = b""
    if draw(st.booleans()) and status not in (204, 304):
        head.append("Transfer-Encoding: chunked")
        rest = body
        while rest:
            size = draw(st.integers(1, max(1, len(rest))))
            extension = draw(st.sampled_from(["", ";name=value"]))
            wire += f"{size:x}{extension}\r\n".encode() + rest[:size] + b"\r\n"
            rest = rest[size:]
        wire += b"0\r\n" + draw(st.sampled_from([b"", b"Trailer-One: 1\r\n"])) + b"\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
        wire = body
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" if draw(st.booleans()) else b""
    return interim + ("\r\n".join(head) + "\r\n\r\n").encode() + wire, (status, body, not close, broker)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


@settings(max_examples=300, deadline=None)
@given(st.lists(answers(), min_size=1, max_size=5), st.lists(st.integers(0, 1 << 20), max_size=12))
def test_answers_cut_anywhere_come_out_whole_and_in_order(items, cuts):
    wire = b"".join(w for w, _ in items)
    reader = AnswerReader()
    got = []
    for piece in _cut(wire, cuts):
        got.extend(reader.feed(piece))
    assert [(a.status, a.body, a.keep_alive, a.headers["X-Raftka-Broker"]) for a in got] == [e for _, e in items]
    assert reader.idle
    assert reader.end() is None


def test_a_body_without_length_ends_with_the_connection():
    reader = AnswerReader()
    assert reader.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ") == []
    assert reader.feed(b"world") == []
    answer = reader.end()
    assert answer is not None and answer.body == b"hello world" and not answer.keep_alive


def test_http_1_0_closes_unless_kept_alive():
    assert not AnswerReader().feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")[0].keep_alive
    assert AnswerReader().feed(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")[0].keep_alive


@pytest.mark.parametrize(
    "wire, why",
    [
        (b"HTTP/2 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "status line"),
        (b"<html>\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\n folded: value\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "conflicting"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "CRLF"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", "longer than"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES, "longer than"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 2000, "chunk-size line"),
    ],
)
def test_malformed_answers_are_refused_with_a_reason(wire, why):
    with pytest.raises(MalformedAnswer, match=why):
        AnswerReader().feed(wire)


def test_a_connection_closed_inside_a_sized_answer_is_malformed():
    reader = AnswerReader()
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(MalformedAnswer, match="middle of an answer"):
        reader.end()


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_arbitrary_bytes_give_answers_or_malformed_and_nothing_else(pieces):
    reader = AnswerReader()
    try:
        for piece in pieces:
            for answer in reader.feed(piece):
                assert 100 <= answer.status <= 999
        reader.end()
    except MalformedAnswer:
        pass


@settings(max_examples=300, deadline=None)
@given(answers(), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=1))
def test_a_changed_byte_never_raises_anything_but_malformed(item, position, replacement):
    wire, _ = item
    index = position % len(wire)
    reader = AnswerReader()
    try:
        reader.feed(wire[:index] + replacement + wire[index + 1:])
        reader.end()
    except MalformedAnswer:
        pass
