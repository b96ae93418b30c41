"""Storage faults of one broker in real 3-broker clusters: a disk that fills up, a disk that fails.

Disk full: broker 3's data dir is a 20 MiB tmpfs.

Under load the disk fills: broker 3 falls below --min-free-bytes, stops its partition replicas and
hands their leadership to brokers 1 and 2, which keep committing (the Python client retries through
the move); /health, /raft and /metrics say why. Lowering retention and deleting a topic free space
on the full broker; once there is room again its replicas resume, catch up and end byte-identical
to the others, with every acknowledged record readable. With the metadata leader on a disk that is
100 % full (a filler file, as another process would leave), config changes and topic deletion still
work and the broker catches up once space returns. All without restarting broker 3.

I/O error: broker 3's data dir is a loop-mounted ext4 that is shut down mid-load (every I/O then
fails with EIO): its replicas stop and leadership moves; after a clean shutdown and a remount of
the repaired filesystem it restarts and catches up.
"""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest

from raftka.client import Producer
from raftka.client.devcluster import LocalCluster, http_json
from raftka.storage import PartitionLog, iter_batches

from cluster import request, retry, wait_until
from small_fs import mounted_ext4, mounted_tmpfs

pytestmark = pytest.mark.timeout(240)

MIB = 1 << 20
DISK_BYTES = 20 * MIB
MIN_FREE = 4 * MIB
ELECTION_MS = 300
FULL = 3  # the broker whose disk fills


@pytest.fixture
def small_disk_cluster(tmp_path):
    root = tmp_path / "cluster"
    with mounted_tmpfs(root / f"broker-{FULL}", DISK_BYTES) as disk:
        cluster = LocalCluster(3, root, election_timeout_ms=ELECTION_MS, extra_args=["--min-free-bytes", str(MIN_FREE)])
        try:
            cluster.start()
            yield cluster, disk
        finally:
            cluster.close()


def health(cluster, broker: int) -> dict:
    """GET /health, also its 503 answer while no metadata leader is known."""
    return request(cluster.url(broker) + "/health", timeout=5).json()


def leaders(cluster, topic: str, asking: int | None = None) -> list[int | None] | None:
    """Partition leaders as broker `asking` (else the first that can tell) knows them; None if none can."""
    for broker in [asking] if asking else cluster.ids:
        resp = request(cluster.url(broker) + "/metadata", timeout=5)
        if resp.status == 200:  # not, e.g., while its metadata replica is catching up
            return [p["leader"] for p in resp.json()["topics"][topic]["partitions"]]
    return None


def led_by(cluster, broker: int, *topics: str) -> bool | None:
    """Does `broker` lead a partition of `topics` (None: cannot tell now)?"""
    known = [leaders(cluster, t) for t in topics]
    return None if None in known else any(broker in k for k in known)


def make_lead(cluster, broker: int, topic: str, partition: int) -> None:
    """Make `broker` the partition's leader: pause whoever leads until the others pick it (at random)."""
    for _ in range(20):
        leader = wait_until(lambda: (known := leaders(cluster, topic, broker)) and known[partition], 20,
                            f"a leader of {topic}/{partition}")
        if leader == broker:
            return
        cluster.pause(leader)
        try:
            wait_until(lambda: (known := leaders(cluster, topic, broker)) and known[partition] not in (None, leader),
                       20, "a new leader")
        finally:
            cluster.resume(leader)
    raise AssertionError(f"broker {broker} never became the leader of {topic}/{partition}")


def create_topic(cluster, name: str, partitions: int, configs: dict) -> None:
    resp = retry(lambda: request(cluster.url(1) + "/topics", "POST",
                                 {"name": name, "partitions": partitions, "replication_factor": 3, "configs": configs}))
    assert resp.status == 201, resp.body
    wait_until(lambda: (known := leaders(cluster, name)) and all(known), 20, f"leaders for {name}")


class Load(threading.Thread):
    """Produces `size`-byte records round the partitions with the raftka client (at most `rate` a second,
    if given); keeps what was acknowledged."""

    def __init__(self, cluster, topic: str, partitions: int, size: int, rate: float | None = None):
        super().__init__(daemon=True)
        self.topic, self.partitions, self.size, self.rate = topic, partitions, size, rate
        self.producer = Producer(cluster.bootstrap, linger_ms=5, delivery_timeout_ms=60_000)
        self.stop = threading.Event()
        self.acked: dict[tuple[int, int], bytes] = {}  # (partition, offset) -> value
        self.ack_times: list[float] = []
        self.failed: list[BaseException] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        i = 0
        pending = []
        while not self.stop.is_set():
            value = b"%010d-" % i + bytes(self.size - 11)
            future = self.producer.send(self.topic, value, partition=i % self.partitions)
            future.add_done_callback(lambda f, value=value: self._done(f, value))
            pending.append(future)
            i += 1
            if self.rate:
                self.stop.wait(1 / self.rate)
            if len(pending) >= 200:  # at most 200 in flight
                for future in pending:
                    future.exception(timeout=90)
                pending = []
        for future in pending:
            future.exception(timeout=90)
        self.producer.close()

    def _done(self, future, value: bytes) -> None:
        if future.exception() is not None:  # a delivery timeout: its outcome is unknown, it proves nothing
            self.failed.append(future.exception())
            return
        meta = future.result()
        with self._lock:
            self.acked[(meta.partition, meta.offset)] = value
            self.ack_times.append(time.monotonic())

    def acks_after(self, moment: float) -> int:
        with self._lock:
            return sum(1 for t in self.ack_times if t > moment)

    def finish(self) -> None:
        self.stop.set()
        self.join(120)
        assert not self.is_alive(), "the producer did not finish"


def read_back(cluster, topic: str, partition: int) -> dict[int, bytes]:
    """(offset -> value) of every committed record, read through the cluster (the leader serves it)."""
    out, offset = {}, 0
    while True:
        resp = retry(lambda: request(f"{cluster.url(1)}/topics/{topic}/partitions/{partition}/records?offset={offset}"
                                     "&max_bytes=4194304", accept="application/vnd.kafka.binary.v2+json"),
                     timeout=30)
        assert resp.status == 200, resp.body
        records = resp.json()
        for r in records:
            out[r["offset"]] = base64.b64decode(r["value"])
        if not records or int(resp.headers["X-Raftka-High-Watermark"]) <= records[-1]["offset"] + 1:
            return out
        offset = records[-1]["offset"] + 1


def replica_bytes(root: Path, broker: int, topic: str, partition: int) -> bytes:
    """The raw batches of a stopped broker's replica of topic/partition, read from its data dir."""
    [directory] = (root / f"broker-{broker}" / "partitions").glob(f"{topic}-{partition}-*")
    log = PartitionLog.open(directory / "log")
    try:
        parts, offset = [], log.log_start_offset
        while offset < log.log_end_offset:
            result = log.read(offset, 1 << 20)
            parts.append(result.data)
            offset = result.next_offset
        return b"".join(parts)
    finally:
        log.close()


def wait_converged(cluster, topic: str, partitions: int, timeout: float = 30) -> None:
    """Wait until every replica of every partition of `topic` has applied the same Raft index and holds no entry
    beyond it (an entry appended but not committed yet may be in one replica's log only: then the logs differ).
    On a timeout, say what each replica reported last."""
    seen: dict[str, dict[int, tuple]] = {}

    def converged() -> bool:
        seen.clear()
        for b in cluster.ids:
            for g in http_json(cluster.url(b) + "/raft", timeout=5)["groups"]:
                if g["partition"] and g["partition"].startswith(topic + "/"):
                    seen.setdefault(g["partition"], {})[b] = (g["applied_index"], g["last_index"], g["commit_index"],
                                                              g["role"], g["term"], g["quiesced"])
        indexes = [{replica[:2] for replica in replicas.values()} for replicas in seen.values()]
        return len(seen) == partitions and all(len(pairs) == 1 and len(set(*pairs)) == 1 for pairs in indexes)

    wait_until(converged, timeout, lambda: f"the replicas of {topic} to converge; (applied, last, commit, role, "
                                           f"term, quiesced) by partition and broker: {seen}")


def assert_identical_copies(root: Path, topic: str, partitions: int) -> None:
    """Every stopped broker's replica of each partition of `topic` holds the same bytes; else say where they part."""
    for p in range(partitions):
        copies = {b: replica_bytes(root, b, topic, p) for b in (1, 2, 3)}
        if len(set(copies.values())) == 1:
            continue
        batches = {b: [(h.base_offset, h.last_offset, h.partition_leader_epoch, bytes(raw))
                       for h, raw in iter_batches(copy)] for b, copy in copies.items()}

        def at(i: int) -> dict:
            return {b: bs[i] if i < len(bs) else None for b, bs in batches.items()}
        first = next(i for i in range(max(map(len, batches.values()))) if len(set(at(i).values())) > 1)
        raise AssertionError(
            f"{topic}/{p}: the replicas differ: "
            + ", ".join(f"broker {b} holds {len(bs)} batches up to offset {bs[-1][1] if bs else None}"
                        for b, bs in batches.items())
            + f"; batch #{first} (base offset, last offset, leader epoch) on each: "
            + str({b: batch and batch[:3] for b, batch in at(first).items()})
            + "".join(f"\nbroker {b}'s warnings about {topic}:\n  " + "\n  ".join(broker_warnings(root, b, topic))
                      for b in batches))


def broker_warnings(root: Path, broker: int, topic: str, last: int = 8) -> list[str]:
    """The last warnings and errors in the broker's log that name `topic` (for a failure's message)."""
    path = root / f"broker-{broker}.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [line[:240] for line in lines if topic in line and (" WARNING " in line or " ERROR " in line)][-last:]


def test_a_full_disk_moves_leadership_loses_nothing_frees_space_and_recovers_without_a_restart(small_disk_cluster):
    cluster, disk = small_disk_cluster
    segment = {"segment.bytes": 256 * 1024}
    create_topic(cluster, "bulk", 3, segment)  # fills the disk; then retention and deletion free it
    create_topic(cluster, "orders", 3, segment)  # the topic whose every acknowledged record is checked
    make_lead(cluster, FULL, "orders", 0)  # it leads something when its disk fills

    orders = Load(cluster, "orders", 3, 200, rate=300)  # small next to the disk: it must fit there again
    bulk = Load(cluster, "bulk", 3, 4096)
    orders.start()
    bulk.start()
    try:
        low = wait_until(lambda: (h := health(cluster, FULL))["storage"]["status"] != "ok" and h, 60,
                         f"broker {FULL}'s disk to fill")
        degraded_at = time.monotonic()
        bulk.finish()
        # Keep it below the watermark until we free space (checkpoints compacting the stopped replicas'
        # journals might otherwise free enough by themselves).
        disk.fill(leave_bytes=MIN_FREE // 2)
        # Normally the watermark trips first; a burst faster than the free-space sampling meets ENOSPC.
        assert low["storage"]["status"] in ("low", "failed"), low
        assert "below the low-disk watermark" in low["storage"]["reason"] or "disk full" in low["storage"]["reason"]
        wait_until(lambda: led_by(cluster, FULL, "orders", "bulk") is False, 10, f"leadership to move off broker {FULL}")
        moved_s = time.monotonic() - degraded_at
        assert moved_s < 5, f"leadership took {moved_s:.1f} s to move off the full broker"  # generous: a busy host

        def every_replica_stopped():  # a replica reopened by a probe between two samples stops at the next one
            groups = http_json(cluster.url(FULL) + "/raft", timeout=5)["groups"]
            stopped = [g for g in groups if g["partition"]]
            return stopped and all(g["storage_failed"] and g["role"] != "leader" for g in stopped) and groups
        raft_groups = wait_until(every_replica_stopped, 10, f"every partition replica on broker {FULL} to stop")
        metadata = next(g for g in raft_groups if g["group"] == "__metadata")
        assert not metadata["storage_failed"]  # the space under the watermark is the metadata group's
        metrics = request(cluster.url(FULL) + "/metrics").body.decode()
        assert "raftka_storage_degraded 1" in metrics
        # Produce goes on at brokers 1 and 2 (the client follows the leaders).
        wait_until(lambda: orders.acks_after(degraded_at + moved_s) >= 200, 30, "produce to continue")

        # Lowering retention frees space on the full broker too (its stopped replicas run retention).
        free_before = health(cluster, FULL)["storage"]["free_bytes"]
        resp = request(cluster.url(FULL) + "/topics/bulk/configs", "PUT", {"configs": {"retention.bytes": 262144}})
        assert resp.status == 200, resp.body
        wait_until(lambda: health(cluster, FULL)["storage"]["free_bytes"] > free_before + 2 * MIB, 30,
                   "retention to free space on the full broker")
        # Deleting a topic removes its data there as well.
        resp = request(cluster.url(FULL) + "/topics/bulk", "DELETE")
        assert resp.status == 204, resp.body
        partitions_dir = Path(cluster.root) / f"broker-{FULL}" / "partitions"
        wait_until(lambda: not list(partitions_dir.glob("bulk-*")), 20, "bulk's data to be deleted on the full broker")

        # Space is back: the replicas resume without a restart and catch up.
        wait_until(lambda: health(cluster, FULL)["storage"]["status"] == "ok", 30, f"broker {FULL} to resume")
        resumed_at = time.monotonic()
        wait_until(lambda: orders.acks_after(resumed_at) >= 200, 30, "produce after the recovery")
    finally:
        orders.finish()
        if bulk.is_alive():
            bulk.finish()

    # Every acknowledged record reads back at its offset.
    assert orders.acked
    for p in range(3):
        stored = read_back(cluster, "orders", p)
        acked = {o: v for (q, o), v in orders.acked.items() if q == p}
        missing = {o for o in acked if stored.get(o) != acked[o]}
        assert not missing, f"acknowledged records of orders/{p} missing or changed at offsets {sorted(missing)[:10]}"

    # The recovered replica converges on the leaders' copy, byte for byte.
    wait_converged(cluster, "orders", 3)
    cluster.close()
    assert_identical_copies(Path(cluster.root), "orders", 3)


def test_metadata_leader_on_a_full_disk_hands_over_and_topic_changes_still_work(small_disk_cluster):
    cluster, disk = small_disk_cluster
    create_topic(cluster, "keep", 1, {})
    create_topic(cluster, "doomed", 1, {})
    resp = retry(lambda: request(cluster.url(1) + "/topics", "POST",
                                 {"name": "solo", "partitions": 3, "replication_factor": 1}))
    assert resp.status == 201, resp.body  # one partition of it has its only replica on the full broker
    [solo] = [p for p, info in enumerate(http_json(cluster.url(1) + "/metadata")["topics"]["solo"]["partitions"])
              if info["replicas"] == [FULL]]
    def agreed_metadata_leader(brokers=cluster.ids):
        seen = {health(cluster, b)["metadata_leader"] for b in brokers}
        return seen.pop() if len(seen) == 1 and None not in seen else None

    for _ in range(20):  # make the broker with the small disk the metadata leader
        leader = wait_until(agreed_metadata_leader, 20, "a metadata leader all brokers agree on")
        if leader == FULL:
            break
        cluster.pause(leader)  # the other two elect one of them, at random
        rest = [b for b in cluster.ids if b != leader]
        wait_until(lambda: agreed_metadata_leader(rest) in rest, 20, "a new metadata leader")
        cluster.resume(leader)
    assert agreed_metadata_leader() == FULL

    disk.fill()  # another process takes every byte: writes fail with ENOSPC, not just the watermark
    for i in range(40):  # each a metadata write; the full broker's journal refuses one of them early
        resp = request(cluster.url(FULL) + "/topics/keep/configs", "PUT", {"configs": {"retention.ms": 600_000 + i}})
        assert resp.status == 200, (i, resp.status, resp.body)
    wait_until(lambda: health(cluster, 1)["metadata_leader"] not in (None, FULL), 15,
               f"metadata leadership to move off broker {FULL}")
    assert health(cluster, FULL)["storage"]["status"] in ("failed", "low")
    resp = request(cluster.url(FULL) + "/topics/doomed", "DELETE")
    assert resp.status == 204, resp.body
    # No replica of solo/{solo} can write: a clear, retriable 507, not a timeout or a 500.
    resp = request(cluster.url(2) + f"/topics/solo/partitions/{solo}", "POST",
                   {"records": [{"value": "x"}]}, content_type="application/vnd.kafka.json.v2+json")
    assert (resp.status, (resp.json() or {}).get("error_code")) == (507, 50701), (resp.status, resp.body)
    message = resp.json()["message"]
    assert message.startswith("Broker storage unavailable: disk") and f"on broker {FULL}" in message, message
    # The Python client retries it until the disk has room again.
    waiting = Producer(cluster.bootstrap, delivery_timeout_ms=120_000)
    delivery = waiting.send("solo", b"waited for space", partition=solo)
    time.sleep(1)
    assert not delivery.done()
    resp = request(cluster.url(1) + "/topics/keep/configs")
    assert resp.json()["configs"]["retention.ms"] == 600_039, resp.body

    disk.free()
    wait_until(lambda: health(cluster, FULL)["storage"]["status"] == "ok", 30, f"broker {FULL}'s disk to recover")
    assert delivery.result(timeout=60).partition == solo
    waiting.close()
    # Its metadata replica reopened and caught up: it sees the deletion and removed the data.
    deadline = time.monotonic() + 20
    while (answer := request(cluster.url(FULL) + "/topics")).json() != ["keep", "solo"]:
        assert time.monotonic() < deadline, (f"the deletion did not reach broker {FULL}: GET /topics answers "
                                             f"{answer.status} {answer.body[:200]!r}; /health {health(cluster, FULL)}")
        time.sleep(0.05)
    partitions_dir = Path(cluster.root) / f"broker-{FULL}" / "partitions"
    wait_until(lambda: not list(partitions_dir.glob("doomed-*")), 20, "doomed's data to be deleted")


def test_an_io_error_stops_the_replica_and_a_restart_on_the_repaired_disk_catches_up(tmp_path):
    """EIO, not ENOSPC: broker 3's ext4 data dir is shut down (every read and write fails). Its replicas
    stop and leadership moves while produce goes on; it still shuts down cleanly, and once the
    filesystem is mounted again it restarts, catches up and matches the others."""
    root = tmp_path / "cluster"
    with mounted_ext4(root / f"broker-{FULL}", tmp_path / "disk.img", 64 * MIB) as disk:
        cluster = LocalCluster(3, root, election_timeout_ms=ELECTION_MS)
        try:
            cluster.start()
            create_topic(cluster, "orders", 3, {})
            make_lead(cluster, FULL, "orders", 0)
            orders = Load(cluster, "orders", 3, 200)
            orders.start()
            try:
                wait_until(lambda: len(orders.acked) >= 300, 30, "produce to start")
                disk.shut_down()
                broken_at = time.monotonic()
                failed = wait_until(lambda: (h := health(cluster, FULL))["storage"]["status"] == "failed" and h, 20,
                                    f"broker {FULL} to notice the I/O errors")
                assert failed["status"] == "degraded" and failed["storage"]["reason"] == "I/O error", failed
                wait_until(lambda: led_by(cluster, FULL, "orders") is False, 10, f"leadership to move off broker {FULL}")
                wait_until(lambda: orders.acks_after(broken_at) >= 200, 30, "produce to continue on brokers 1 and 2")
                assert cluster.stop_broker(FULL, timeout=30) == 0  # a clean shutdown despite the dead disk
                disk.remount()
                cluster.start_broker(FULL)
                cluster.wait_healthy(30, [FULL])
                restarted_at = time.monotonic()
                wait_until(lambda: orders.acks_after(restarted_at) >= 200, 30, "produce after the restart")
            finally:
                orders.finish()
            for p in range(3):
                stored = read_back(cluster, "orders", p)
                acked = {o: v for (q, o), v in orders.acked.items() if q == p}
                assert all(stored.get(o) == v for o, v in acked.items()), f"orders/{p} lost acknowledged records"
            wait_converged(cluster, "orders", 3)
            cluster.close()
            assert_identical_copies(root, "orders", 3)
        finally:
            cluster.close()
