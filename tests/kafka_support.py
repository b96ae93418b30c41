"""Test support for the Kafka listener: a shared 3-broker cluster, raw responses read off a socket, and reading
records back over HTTP."""

from __future__ import annotations

import base64
import socket
import struct

from cluster import request, retry

from raftka.client.devcluster import LocalCluster


def start_kafka_cluster(root, brokers: int = 3) -> LocalCluster:
    cluster = LocalCluster(brokers, root, election_timeout_ms=300)
    cluster.start()
    try:
        cluster.wait_kafka_registered()
    except BaseException:
        cluster.close()
        raise
    return cluster


def receive_response(sock: socket.socket, response_cls, version: int):
    """One size-framed Kafka response read off `sock`, decoded with its header."""
    size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
    return response_cls.decode(_recv_exactly(sock, size), version=version, header=True)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def http_records(cluster: LocalCluster, topic: str, partition: int, count: int) -> list[dict]:
    """The first `count` records of a partition, read over raftka's HTTP API (binary format: base64 fields) from
    a running broker."""
    records: list[dict] = []
    while len(records) < count:
        live = cluster.url(min(cluster.procs))
        resp = retry(lambda: request(live + f"/topics/{topic}/partitions/{partition}/records"
                                     f"?offset={len(records)}&timeout_ms=2000&max_bytes=1048576",
                                     accept="application/vnd.kafka.binary.v2+json"))
        assert resp.status == 200, resp.body
        page = resp.json()
        assert page, f"{topic}/{partition}: only {len(records)} of {count} records"
        records += [{"offset": r["offset"], "key": _b64(r["key"]), "value": _b64(r["value"])} for r in page]
    return records[:count]


def _b64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
