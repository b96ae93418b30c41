"""The learner catch-up throttle: the byte-rate limiter, and a real snapshot stream to a learner held to it."""

from __future__ import annotations

import asyncio
import time

from raftka.raft.host import HostConfig, RaftHost
from raftka.raft.membership import Membership
from raftka.raft.partition import PartitionStateMachine, encode_produce
from raftka.raft.throttle import ByteRateLimiter
from raftka.storage import LogConfig, Record, encode_batch


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_limiter_allows_a_burst_then_the_rate_and_never_saves_up_more_than_the_burst():
    clock = Clock()
    limiter = ByteRateLimiter(1000, burst=500, clock=clock)
    assert limiter.wait_s() == 0
    limiter.charge(1500)  # a chunk larger than the budget may go; the next one waits for the debt
    assert limiter.wait_s() == 1.0
    clock.now += 0.4
    assert abs(limiter.wait_s() - 0.6) < 1e-9
    clock.now += 100  # idle for long: the balance is capped at the burst
    limiter.charge(500)
    assert limiter.wait_s() == 0
    limiter.charge(1)
    assert limiter.wait_s() > 0 and limiter.charged == 2001


def test_a_learner_catches_up_no_faster_than_the_limit_and_the_transfer_never_restarts(tmp_path):
    rate, records = 1_000_000, 4000  # about 4 MB of partition log: 4 chunks of 1 MiB, 2 s of waiting at 1 MB/s
    payload = b"v" * 1000

    async def scenario():
        cfg = HostConfig(tick_ms=10, heartbeat_ticks=2, election_ticks=10, checkpoint_interval_s=3600,
                         journal_keep_entries=0, learner_catchup_bytes_per_sec=rate)
        secret = b"s" * 32
        a = RaftHost(1, str(tmp_path / "a"), listen=("127.0.0.1", 0), secret=secret, config=cfg)
        b = RaftHost(2, str(tmp_path / "b"), listen=("127.0.0.1", 0), secret=secret, config=cfg)
        await a.start()
        await b.start()
        ports = {1: ("127.0.0.1", a.port), 2: ("127.0.0.1", b.port)}
        a.set_peers(ports)
        b.set_peers(ports)
        try:
            sm_a = PartitionStateMachine(str(tmp_path / "pa"), LogConfig())
            a.add_group("g", Membership.of([1]), sm_a)
            node = a.group("g").node
            node.campaign()
            while not a.read_allowed("g"):
                await asyncio.sleep(0.01)
            for _ in range(0, records, 100):
                batch = encode_batch([Record(None, payload) for _ in range(100)])
                await a.propose("g", encode_produce(batch))
            sm_a.checkpoint()
            a.group("g").journal.compact(node.commit)  # the learner must get a snapshot of the partition log
            size = sm_a.log.size_bytes
            sm_b = PartitionStateMachine(str(tmp_path / "pb"), LogConfig())
            b.add_group("g", None, sm_b)
            started = time.monotonic()
            a.propose_membership("g", Membership.of([1], [2]))
            deadline = time.monotonic() + 60
            while sm_b.high_watermark < records and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            took = time.monotonic() - started
            assert sm_b.high_watermark == records
            return size, took, a.catchup_limiter.charged
        finally:
            await b.stop()
            await a.stop()

    size, took, charged = asyncio.run(scenario())
    burst, chunk = max(rate // 10, 1 << 20), 1 << 20
    assert took >= (size - burst - chunk) / rate * 0.95, (size, took)  # held to the rate after the first burst
    assert charged < size + (1 << 20) + 65536, (size, charged)  # no chunk was sent twice: the transfer never restarted
