"""The broker HTTP API against a real 3-broker cluster: topics, produce, fetch, forwarding, errors."""

import base64
import http.client
import json
import select
import time
import urllib.parse

import pytest

from cluster import metric_total, request, retry, wait_until
from raftka.client.partitioner import partition_for_key
from raftka.storage import Record, encode_batch, iter_records

BINARY = "application/vnd.kafka.binary.v2+json"
JSONFMT = "application/vnd.kafka.json.v2+json"
BATCH = "application/vnd.raftka.batch"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from raftka.client.devcluster import LocalCluster

    c = LocalCluster(3, tmp_path_factory.mktemp("api"), election_timeout_ms=300).start()
    yield c
    c.close()


def produce(url, topic, records, partition=None, fmt=BINARY):
    path = f"/topics/{topic}" if partition is None else f"/topics/{topic}/partitions/{partition}"
    return retry(lambda: request(url + path, "POST", {"records": records}, content_type=fmt))


def fetch_all(url, topic, partition, offset=0, fmt=BINARY):
    resp = retry(lambda: request(f"{url}/topics/{topic}/partitions/{partition}/records?offset={offset}",
                                 accept=fmt))
    assert resp.status == 200, resp.body
    return resp.json()


def test_create_produce_fetch_round_trip_from_every_broker(cluster):
    urls = cluster.bootstrap
    resp = request(urls[1] + "/topics", "POST", {"name": "orders", "partitions": 3, "replication_factor": 3})
    assert resp.status == 201, resp.body
    assert "orders" in request(urls[2] + "/topics").json() or retry(
        lambda: request(urls[2] + "/topics/orders"), retry_on=(404,)).status == 200
    records = [{"key": b64(b"k%d" % i), "value": b64(b"v%d" % i)} for i in range(30)]
    resp = produce(urls[0], "orders", records)
    assert resp.status == 200, resp.body
    offsets = resp.json()["offsets"]
    assert all(o["error_code"] is None for o in offsets)
    for i, o in enumerate(offsets):
        assert o["partition"] == partition_for_key(b"k%d" % i, 3)  # Kafka's murmur2
    for url in urls:  # any broker answers (forwarding to the leader)
        seen = {}
        for p in range(3):
            for r in fetch_all(url, "orders", p):
                seen[base64.b64decode(r["key"])] = (p, r["offset"], base64.b64decode(r["value"]))
        assert len(seen) == 30
        for i, o in enumerate(offsets):
            assert seen[b"k%d" % i] == (o["partition"], o["offset"], b"v%d" % i)


def test_same_key_same_partition_and_dense_offsets(cluster):
    urls = cluster.bootstrap
    assert request(urls[0] + "/topics", "POST", {"name": "keys", "partitions": 4}).status == 201
    for _ in range(3):
        resp = produce(urls[2], "keys", [{"key": b64(b"user-7"), "value": b64(b"x")}] * 5)
        parts = {o["partition"] for o in resp.json()["offsets"]}
        assert parts == {partition_for_key(b"user-7", 4)}
    p = partition_for_key(b"user-7", 4)
    assert [r["offset"] for r in fetch_all(urls[0], "keys", p)] == list(range(15))


def test_json_format_and_headers(cluster):
    urls = cluster.bootstrap
    request(urls[0] + "/topics", "POST", {"name": "js", "partitions": 1})
    resp = produce(urls[1], "js", [{"key": "a", "value": {"n": 1},
                                    "headers": [{"key": "h", "value": b64(b"hv")}]}], fmt=JSONFMT)
    assert resp.status == 200, resp.body
    got = fetch_all(urls[2], "js", 0, fmt=JSONFMT)
    assert got[0]["key"] == "a" and got[0]["value"] == {"n": 1}
    assert got[0]["headers"] == [{"key": "h", "value": b64(b"hv")}]


def test_binary_batch_fast_path_and_raw_fetch(cluster):
    urls = cluster.bootstrap
    request(urls[0] + "/topics", "POST", {"name": "fast", "partitions": 1})
    batch = encode_batch([Record(b"k", b"value-%d" % i) for i in range(100)])
    resp = retry(lambda: request(urls[1] + "/topics/fast/partitions/0/batch", "POST", raw=batch, content_type=BATCH))
    assert resp.status == 200, resp.body
    assert resp.json()["base_offset"] == 0 and resp.json()["last_offset"] == 99
    raw = retry(lambda: request(urls[2] + "/topics/fast/partitions/0/records?offset=50", accept=BATCH))
    values = [r.value for r in iter_records(raw.body, start_offset=50)]
    assert values == [b"value-%d" % i for i in range(50, 100)]
    assert raw.headers["X-Raftka-High-Watermark"] == "100"


def test_idempotent_producer_fields_deduplicate(cluster):
    urls = cluster.bootstrap
    request(urls[0] + "/topics", "POST", {"name": "idem", "partitions": 1})
    pid = retry(lambda: request(urls[1] + "/producers", "POST", {})).json()["producer_id"]
    body = {"records": [{"value": b64(b"once")}], "producer_id": pid, "producer_epoch": 0, "base_sequence": 0}
    first = retry(lambda: request(urls[0] + "/topics/idem/partitions/0", "POST", body, content_type=BINARY))
    again = retry(lambda: request(urls[2] + "/topics/idem/partitions/0", "POST", body, content_type=BINARY))
    assert first.status == again.status == 200, (first.body, again.body)
    assert first.json()["offsets"][0]["offset"] == again.json()["offsets"][0]["offset"] == 0
    assert len(fetch_all(urls[0], "idem", 0)) == 1
    skip = dict(body, base_sequence=5)
    resp = request(urls[0] + "/topics/idem/partitions/0", "POST", skip, content_type=BINARY)
    assert resp.status >= 400 and resp.json()["error_code"] // 100 == resp.status


def test_long_poll_returns_when_data_arrives(cluster):
    urls = cluster.bootstrap
    request(urls[0] + "/topics", "POST", {"name": "poll", "partitions": 1})
    produce(urls[0], "poll", [{"value": b64(b"first")}])
    host, port = urllib.parse.urlsplit(urls[1]).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.monotonic()
    conn.request("GET", "/topics/poll/partitions/0/records?offset=1&timeout_ms=15000", headers={"Accept": BINARY})
    # Precondition: the poll is sent and still unanswered (parked: there is nothing at offset 1) when
    # the record arrives; a poll answered before that would test nothing.
    readable, _, _ = select.select([conn.sock], [], [], 0.5)
    assert not readable, "the long poll answered before any record arrived at its offset"
    produce(urls[2], "poll", [{"value": b64(b"second")}])
    resp = conn.getresponse()
    took = time.monotonic() - started
    body = resp.read()
    conn.close()
    assert resp.status == 200, body
    assert [base64.b64decode(r["value"]) for r in json.loads(body)] == [b"second"]
    assert took < 14, "the poll ran into its timeout instead of returning with the record"


@pytest.mark.parametrize("method,path,body,ctype,status,code", [
    ("POST", "/topics", b"{not json", "application/json", 422, 42206),
    ("POST", "/topics", json.dumps({"name": "bad name!"}).encode(), "application/json", 422, 42208),
    ("POST", "/topics", json.dumps({"name": "rf", "replication_factor": 5}).encode(), "application/json", 422, 42210),
    ("POST", "/topics", json.dumps({"name": "np", "partitions": 0}).encode(), "application/json", 422, 42209),
    ("GET", "/topics/nope", None, None, 404, 40401),
    ("GET", "/topics/orders/partitions/99/records?offset=0", None, None, 404, 40402),
    ("POST", "/topics/orders", b'{"records":[{"value":"***"}]}', BINARY, 422, 42207),
    ("POST", "/topics/orders", b'{"records":[]}', "text/plain", 415, 41501),
    ("GET", "/topics/orders/partitions/0/records?offset=-1", None, None, 422, 42206),
    ("GET", "/topics/orders/partitions/0/records?offset=999999", None, None, 416, 41601),
    ("GET", "/topics/orders/partitions/0/records", None, None, 422, 42206),
    ("POST", "/topics/orders/partitions/0/batch", b"garbage", BATCH, 422, 42206),
    ("GET", "/no/such/path", None, None, 404, 40400),
])
def test_bad_input_gets_a_clear_error(cluster, method, path, body, ctype, status, code):
    urls = cluster.bootstrap
    if "orders" not in request(urls[0] + "/topics").json():
        request(urls[0] + "/topics", "POST", {"name": "orders", "partitions": 3})
    resp = retry(lambda: request(urls[1] + path, method, raw=body, content_type=ctype or "application/json"))
    assert resp.status == status, resp.body
    doc = resp.json()
    assert doc["error_code"] == code and doc["message"]


def test_oversize_body_is_rejected_and_broker_survives(cluster):
    url = cluster.bootstrap[0]
    resp = request(url + "/topics", "POST", raw=b"x" * (17 << 20), content_type="application/json")
    assert resp.status == 413 and resp.json()["error_code"] == 41301
    assert request(url + "/health").status == 200


def test_ops_endpoints(cluster):
    url = cluster.bootstrap[0]
    assert request(url + "/health").json()["status"] == "ok"
    raft = request(url + "/raft").json()
    assert any(g["group"] == "__metadata" for g in raft["groups"])
    metrics = request(url + "/metrics").body.decode()
    assert "raftka_raft_commit_index" in metrics
    elections = {b: request(cluster.url(b) + "/raft?groups=").json() for b in cluster.ids}
    assert all(doc["groups"] == [] and set(doc["elections"]) == {"started", "deferred", "won", "stepped_down"}
               for doc in elections.values()), elections
    leader = request(url + "/health").json()["metadata_leader"]
    assert elections[leader]["elections"]["won"] >= 1, elections
    scrape = request(cluster.url(leader) + "/metrics").body.decode()
    assert metric_total(scrape, "raftka_raft_elections_total", outcome="won") >= elections[leader]["elections"]["won"]
    assert request(url + "/topics", "POST", {"name": "frozen", "partitions": 3}).status == 201

    def frozen():  # the hosted partitions' objects are kept out of the collector's scans
        counts = {b: metric_total(request(cluster.url(b) + "/metrics").body.decode(), "raftka_gc_frozen_objects")
                  for b in cluster.ids}
        return all(n > 10_000 for n in counts.values()) and counts

    wait_until(frozen, 30, "every broker to freeze its heap after hosting the new partitions")


def test_any_broker_relays_another_brokers_own_views(cluster):
    url = cluster.bootstrap[0]
    for broker in cluster.ids:
        raft = retry(lambda: request(f"{url}/brokers/{broker}/raft")).json()
        assert raft["broker"] == broker and raft["election_timeout_ms"] > 0
        assert any(g["group"] == "__metadata" for g in raft["groups"])
        assert request(f"{url}/brokers/{broker}/health").json()["broker"] == broker
        metrics = request(f"{url}/brokers/{broker}/metrics")
        assert metrics.headers["Content-Type"].startswith("text/plain") and b"raftka_raft_term" in metrics.body
    for bad in ("/brokers/9/raft", "/brokers/x/raft", "/brokers/1/openapi.json", "/brokers/2/topics"):
        resp = request(url + bad)
        assert (resp.status, resp.json()["error_code"]) == (422, 42206), bad


def test_traffic_metrics_count_each_produce_and_fetch_once_on_the_leader(cluster):
    urls = cluster.bootstrap
    assert retry(lambda: request(urls[0] + "/topics", "POST", {"name": "metered", "partitions": 1})).status == 201
    leader = cluster.leader_of("metered", 0)
    other = cluster.url(next(b for b in cluster.ids if b != leader))
    records = [{"value": b64(b"m%d" % i)} for i in range(5)]
    assert produce(other, "metered", records, partition=0).status == 200  # forwarded to the leader
    assert produce(other, "metered", records).status == 200
    assert len(fetch_all(other, "metered", 0)) == 10
    scrapes = {b: request(cluster.url(b) + "/metrics").body.decode() for b in cluster.ids}
    for b, text in scrapes.items():
        produced = metric_total(text, "raftka_produced_records_total", topic="metered")
        fetched = metric_total(text, "raftka_fetched_records_total", topic="metered")
        assert (produced, fetched) == ((10, 10) if b == leader else (0, 0)), b
    assert metric_total(scrapes[leader], "raftka_produce_seconds_count") >= 2
    assert metric_total(scrapes[leader], "raftka_produced_bytes_total", topic="metered") > 50


def test_offsets_by_timestamp_find_the_first_record_at_or_after_it(cluster):
    urls = cluster.bootstrap
    assert retry(lambda: request(urls[0] + "/topics", "POST", {"name": "timed", "partitions": 1})).status == 201
    stamps = [1_000, 3_000, 2_000, 5_000]  # producers set timestamps: not necessarily in order
    assert produce(urls[1], "timed", [{"value": b64(b"t"), "timestamp": t} for t in stamps], partition=0).status == 200
    for timestamp, expected in ((0, 0), (1_000, 0), (1_001, 1), (2_500, 1), (4_000, 3), (5_001, 4)):
        for url in urls:  # the leader answers; the others forward
            doc = retry(lambda: request(f"{url}/topics/timed/partitions/0/offsets?timestamp={timestamp}")).json()
            assert doc == {"beginning_offset": 0, "end_offset": 4, "timestamp_offset": expected}, (url, timestamp)
    resp = request(urls[0] + "/topics/timed/partitions/0/offsets?timestamp=soon")
    assert (resp.status, resp.json()["error_code"]) == (422, 42206)
    raft = request(cluster.url(cluster.leader_of("timed", 0)) + "/raft").json()
    [group] = [g for g in raft["groups"] if g["partition"] == "timed/0"]
    assert group["high_watermark"] == 4 and group["log_start_offset"] == 0 and group["size_bytes"] > 0
