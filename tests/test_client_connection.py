"""Bootstrap address parsing and HTTP failure mapping (real sockets, no broker needed)."""

import asyncio
from typing import NamedTuple

import pytest
from aiohttp import web
from client_ports import closed_port

from raftka.client.cluster import Cluster, topic_path
from raftka.client.connection import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, Connection, normalize_url, parse_bootstrap
from raftka.client.errors import BrokerConnectionError, NoBrokersAvailable, RequestTimedOutError


@pytest.mark.parametrize(
    "given, expected",
    [
        ("127.0.0.1:9091", "http://127.0.0.1:9091"),
        ("http://h:1/", "http://h:1"),
        (" https://h:443 ", "https://h:443"),
        ("[::1]:9091", "http://[::1]:9091"),
    ],
)
def test_normalize_url(given, expected):
    assert normalize_url(given) == expected


@pytest.mark.parametrize("bad", ["", "h", "ftp://h:1", "http://h:1/path", "http://h:99999", "http://:1"])
def test_bad_addresses_are_refused_with_a_reason(bad):
    with pytest.raises(ValueError):
        normalize_url(bad)


def test_parse_bootstrap_lists_strings_and_env(monkeypatch):
    assert parse_bootstrap("a:1,b:2,,a:1") == ["http://a:1", "http://b:2"]
    assert parse_bootstrap(["http://a:1", "b:2"]) == ["http://a:1", "http://b:2"]
    monkeypatch.setenv(BOOTSTRAP_ENV, "c:3")
    assert parse_bootstrap(None) == ["http://c:3"]
    monkeypatch.delenv(BOOTSTRAP_ENV)
    assert parse_bootstrap(None) == [DEFAULT_BOOTSTRAP]
    with pytest.raises(ValueError):
        parse_bootstrap([])


def test_topic_paths_quote_names():
    assert topic_path("a.b-c_1") == "/topics/a.b-c_1"
    assert topic_path("x/y", 3, "/records") == "/topics/x%2Fy/partitions/3/records"


def test_connection_refused_is_a_connection_error_naming_the_broker():
    async def go():
        conn = Connection(request_timeout_s=2)
        url = f"http://127.0.0.1:{closed_port()}"
        try:
            with pytest.raises(BrokerConnectionError) as info:
                await conn.request(url, "GET", "/health")
        finally:
            await conn.close()
        assert info.value.broker == url and info.value.retriable

    asyncio.run(go())


def test_a_broker_that_accepts_but_never_answers_times_out_as_unknown_outcome():
    async def go():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = Connection(request_timeout_s=0.3)
        try:
            with pytest.raises(RequestTimedOutError, match="no answer within 0.3 s"):
                await conn.request(f"http://127.0.0.1:{port}", "POST", "/x", data=b"payload")
        finally:
            await conn.close()
            server.close()

    asyncio.run(go())


def test_no_brokers_available_lists_every_address_tried_and_why():
    async def go():
        urls = [f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}"]
        cluster = Cluster(urls, request_timeout_ms=2000)
        try:
            with pytest.raises(NoBrokersAvailable) as info:
                await cluster.ensure_metadata()
        finally:
            await cluster.close()
        assert list(info.value.tried) == urls
        assert all("cannot connect" in why for why in info.value.tried.values())
        assert all(url in str(info.value) for url in urls)

    asyncio.run(go())


# -- keep-alive connections (real sockets, a scripted server) ----------------------------------------------


class Reply(NamedTuple):
    data: bytes = b""  # sent as the answer
    close: bool = False  # close the connection after sending it
    delay: float = 0.0  # seconds before sending it


class ScriptedBroker:
    """A TCP server that reads each request (head and Content-Length body) and sends ``script(n)``, a Reply
    (n counts requests over all connections, from 1)."""

    def __init__(self, script):
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.server = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                reply = self.script(len(self.requests))
                await asyncio.sleep(reply.delay)
                writer.write(reply.data)
                await writer.drain()
                if reply.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def _ask(broker: ScriptedBroker, count: int, **kwargs) -> list[bytes]:
    conn = Connection(request_timeout_s=5)
    try:
        bodies = []
        for _ in range(count):
            bodies.append((await conn.request(broker.url, "GET", "/", **kwargs)).body)
            await asyncio.sleep(0.05)  # a close by the broker reaches the client meanwhile
        return bodies
    finally:
        await conn.close()


def test_requests_to_one_broker_share_a_kept_alive_connection():
    async def go():
        async with ScriptedBroker(lambda n: Reply(_ok(b'{"n": %d}' % n, "X-Raftka-Broker: 7"))) as broker:
            conn = Connection(request_timeout_s=5)
            try:
                answers = [await conn.request(broker.url, "POST", "/t", json={"i": i}, params={"a": "b c"})
                           for i in range(5)]
            finally:
                await conn.close()
        assert [a.json()["n"] for a in answers] == [1, 2, 3, 4, 5]
        assert answers[0].served_by == 7 and broker.connections == 1
        first = broker.requests[0]
        assert first.startswith(b"POST /t?a=b+c HTTP/1.1\r\n") and first.endswith(b'{"i":0}')
        assert b"Content-Type: application/json\r\n" in first

    asyncio.run(go())


@pytest.mark.parametrize("announced", [True, False])
def test_a_connection_the_broker_closes_is_not_reused(announced):
    async def go():
        extra = ("Connection: close",) if announced else ()
        async with ScriptedBroker(lambda n: Reply(_ok(b"%d" % n, *extra[:n == 1]), close=n == 1)) as broker:
            assert await _ask(broker, 3) == [b"1", b"2", b"3"]
        assert broker.connections == 2

    asyncio.run(go())


@pytest.mark.parametrize("reply, why", [
    (Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=True), "middle of an answer"),
    (Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n", close=True), "middle of an answer"),
    (Reply(b"", close=True), "closed the connection"),
    (Reply(b"SMTP ready\r\n\r\n"), "bad status line"),
])
def test_a_cut_or_garbled_answer_is_an_unknown_outcome_and_the_next_request_starts_afresh(reply, why):
    async def go():
        async with ScriptedBroker(lambda n: reply if n == 1 else Reply(_ok(b"fine"))) as broker:
            with pytest.raises(RequestTimedOutError, match=f"connection lost: .*{why}"):
                await _ask(broker, 1)
            assert await _ask(broker, 1) == [b"fine"]

    asyncio.run(go())


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_late_answer_never_answers_the_next_request(how):
    async def go():
        script = {1: Reply(_ok(b"late"), delay=0.4), 2: Reply(_ok(b"second"))}
        async with ScriptedBroker(lambda n: script[n]) as broker:
            conn = Connection(request_timeout_s=5)
            try:
                if how == "timeout":
                    with pytest.raises(RequestTimedOutError):
                        await conn.request(broker.url, "GET", "/", timeout_s=0.1)
                else:
                    task = asyncio.ensure_future(conn.request(broker.url, "GET", "/"))
                    await asyncio.sleep(0.1)
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                second = await conn.request(broker.url, "GET", "/")
                await asyncio.sleep(0.5)  # the late answer is sent meanwhile
            finally:
                await conn.close()
        assert second.body == b"second" and broker.connections == 2

    asyncio.run(go())


def test_a_chunked_answer_from_aiohttps_server_is_read_whole():
    async def stream(request):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"alpha ", b"beta ", b"gamma"):
            await response.write(part)
        await response.write_eof()
        return response

    async def go():
        app = web.Application()
        app.router.add_get("/s", stream)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        conn = Connection(request_timeout_s=5)
        try:
            bodies = [(await conn.request(f"http://127.0.0.1:{port}", "GET", "/s")).body for _ in range(2)]
        finally:
            await conn.close()
            await runner.cleanup()
        assert bodies == [b"alpha beta gamma"] * 2

    asyncio.run(go())
