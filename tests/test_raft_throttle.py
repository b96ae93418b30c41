"""The learner catch-up throttle: the byte-rate limiter, and a real snapshot stream to a learner held to it
(with the partition's own journal, and with the partition log as the Raft log)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

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


def records_of(sm: PartitionStateMachine) -> list[tuple[int, bytes]]:
    return [(r.offset, r.value) for r in sm.log.read_records(sm.log_start_offset, 1 << 30, 1 << 30,
                                                             max_offset=sm.high_watermark)]


@pytest.mark.parametrize("raft_log", [False, True], ids=["own journal", "log is the raft log"])
def test_a_learner_catches_up_no_faster_than_the_limit_and_the_transfer_never_restarts(tmp_path, raft_log):
    """As the Raft log, the learner's empty log is replaced by the renamed staging log, the journal appends the
    entries after the install to it, and a restart of the learner's host finds both."""
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
            sm_a = PartitionStateMachine(str(tmp_path / "pa"), LogConfig(), raft_log=raft_log)
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
            sm_b = PartitionStateMachine(str(tmp_path / "pb"), LogConfig(), lock=False, raft_log=raft_log)
            b.add_group("g", None, sm_b)
            empty_log_inode = os.stat(tmp_path / "pb" / "log").st_ino
            started = time.monotonic()
            a.propose_membership("g", Membership.of([1], [2]))
            deadline = time.monotonic() + 60
            while sm_b.high_watermark < records and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            took = time.monotonic() - started
            assert sm_b.high_watermark == records
            assert os.stat(tmp_path / "pb" / "log").st_ino != empty_log_inode  # renamed into place, not copied
            for k in range(3):  # appended after the install, to the renamed log
                await a.propose("g", encode_produce(encode_batch([Record(None, b"after%d" % k)])))
            deadline = time.monotonic() + 30
            while sm_b.high_watermark < records + 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert records_of(sm_b) == records_of(sm_a)
            assert b.group("g").storage_error is None
            await b.stop()
            sm_b.close()
            b = RaftHost(2, str(tmp_path / "b"), listen=("127.0.0.1", ports[2][1]), secret=secret, config=cfg)
            await b.start()
            b.set_peers(ports)
            sm_b = PartitionStateMachine(str(tmp_path / "pb"), LogConfig(), lock=False, raft_log=raft_log)
            b.add_group("g", None, sm_b)
            await a.propose("g", encode_produce(encode_batch([Record(None, b"restarted")])))
            deadline = time.monotonic() + 30
            while sm_b.high_watermark < records + 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert records_of(sm_b) == records_of(sm_a) and len(records_of(sm_a)) == records + 4
            return size, took, a.catchup_limiter.charged
        finally:
            await b.stop()
            await a.stop()

    size, took, charged = asyncio.run(scenario())
    burst, chunk = max(rate // 10, 1 << 20), 1 << 20
    assert took >= (size - burst - chunk) / rate * 0.95, (size, took)  # held to the rate after the first burst
    assert charged < size + (1 << 20) + 65536, (size, charged)  # no chunk was sent twice: the transfer never restarted
