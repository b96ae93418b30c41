"""`raft.liveness.Liveness` without I/O.  The campaign budget: elections started by timers are admitted at
`max_campaigns_per_s` with a burst of one tick's worth, a dead leader's first successors at
`max_successor_campaigns_per_s` on top, and what was admitted or held back is counted (GET /raft
`elections`, the Prometheus `raftka_raft_elections_total`).  Peer silence: the time this broker's event loop
stood still (the ticker woke late) is not counted as its peers' silence, and leases still count in real time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftka.raft.host import HostConfig
from raftka.raft.liveness import Liveness


def liveness(per_s: int, successors_per_s: int, tick_ms: int = 100) -> Liveness:
    cfg = HostConfig(tick_ms=tick_ms, max_campaigns_per_s=per_s, max_successor_campaigns_per_s=successors_per_s)
    return Liveness(cfg, {}, replica_lost=lambda r: False, activate=lambda g: None, note_role=lambda g: None,
                    wake_ticker=lambda: None)


def test_a_tick_admits_its_share_and_defers_the_rest():
    budget = liveness(per_s=30, successors_per_s=20)  # 3 and 2 per 100 ms tick
    budget.tick((), now=0.0, ticks=1)
    admitted = [budget.may_campaign(first_successor=False) for _ in range(5)]
    assert admitted == [True, True, True, False, False]
    assert [budget.may_campaign(first_successor=True) for _ in range(3)] == [True, True, False]
    assert (budget.campaigns_started, budget.campaigns_deferred) == (5, 3)
    budget.tick((), now=10.0, ticks=50)  # a long stall still grants one tick's burst, not 50 ticks' worth
    assert sum(budget.may_campaign(first_successor=False) for _ in range(10)) == 3


@settings(max_examples=200, deadline=None)
@given(per_s=st.integers(10, 5000), successors_per_s=st.integers(10, 5000),
       rounds=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 600), st.booleans()), min_size=1, max_size=30))
def test_admissions_never_exceed_the_budget_and_every_request_is_counted(per_s, successors_per_s, rounds):
    budget = liveness(per_s, successors_per_s)
    tick_s = budget.cfg.tick_ms / 1000
    asked = ticks_so_far = 0
    for ticks, requests, successor in rounds:
        budget.tick((), now=ticks_so_far * tick_s, ticks=ticks)
        ticks_so_far += ticks
        for _ in range(requests):
            budget.may_campaign(first_successor=successor)
        asked += requests
        # tokens accrue per tick and a fraction left over admits one more (of each kind)
        assert budget.campaigns_started <= ticks_so_far * (per_s + successors_per_s) * tick_s + 2
    assert budget.campaigns_started + budget.campaigns_deferred == asked


def test_a_stall_of_this_broker_is_not_its_peers_silence():
    lv = liveness(per_s=10, successors_per_s=10)  # 100 ms ticks, heartbeats every 2, an election timeout of 1 s
    lv.heard_from(2, now=10.0)
    lv.heard_from(3, now=10.0)
    lv.peer_acked[2] = 10.0  # and broker 2 answered a broker heartbeat sent then
    lv.note_late(0.15, now=10.15)  # late by less than a heartbeat interval: a busy loop, not a deaf one
    assert lv.deaf_s == 0.0
    lv.heard_from(3, now=11.5)  # read in the same wake-up, before the ticker reported how late it was
    lv.note_late(1.5, now=11.5)  # the loop stood still 1.5 s: whatever the peers sent waits unread
    assert lv.silence_s(2, 11.5) == pytest.approx(0.2)  # 1.5 s, less the 1.3 s deaf beyond a heartbeat interval
    assert lv.silence_s(3, 11.5) == 0.0  # heard now, not in the future
    assert lv.heard_lately(2, 11.5, window_s=1.0)
    assert not lv.acked_lately(2, 11.5, window_s=1.0)  # a lease counts from the send, in real time
    assert lv.heard_lately(2, 12.2, window_s=1.0)
    assert not lv.heard_lately(2, 12.4, window_s=1.0)  # a peer that stays silent is found out, 1.3 s later


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0.0, 3.0), st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_silence_is_real_silence_less_at_most_the_deaf_time(steps):
    """For any run of frames and late wake-ups: a peer's silence never exceeds the time since its last frame, and
    falls short of it by at most the time this broker was deaf since (the excess of its lateness)."""
    lv = liveness(per_s=10, successors_per_s=10)
    grace = lv.cfg.heartbeat_ticks * lv.cfg.tick_ms / 1000
    now, last_frame, deaf_since_frame = 0.0, None, 0.0
    for elapsed, late, frame in steps:
        now += elapsed
        if frame:
            lv.heard_from(2, now)
            last_frame, deaf_since_frame = now, 0.0
        if late:  # the ticker woke `elapsed` late: the loop stood still for the whole step
            lv.note_late(elapsed, now)
            if last_frame is not None and not frame:
                deaf_since_frame += max(0.0, elapsed - grace)
        if last_frame is not None:
            real = now - last_frame
            assert lv.silence_s(2, now) <= real + 1e-9
            assert lv.silence_s(2, now) >= real - deaf_since_frame - 1e-9
