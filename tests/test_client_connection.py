"""Bootstrap address parsing and HTTP failure mapping (real sockets, no broker needed)."""

import asyncio

import pytest
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
