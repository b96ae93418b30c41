"""The campaign budget of `raft.liveness.Liveness` (no I/O): elections started by timers are admitted at
`max_campaigns_per_s` with a burst of one tick's worth, a dead leader's first successors at
`max_successor_campaigns_per_s` on top, and what was admitted or held back is counted (GET /raft
`elections`, the Prometheus `raftka_raft_elections_total`)."""

from __future__ import annotations

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
