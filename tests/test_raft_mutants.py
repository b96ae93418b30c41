"""Mutation checks: with one safety rule of the Raft core or host switched off
(`raftka.raft.canary.MUTANTS`), the tests listed for it in CATCHERS must fail, each within
its time limit and with a short, readable counterexample.

Every catcher runs deterministically (fixed seeds, no hypothesis shrinking).  What caught each
mutant, how fast, and the first line of the counterexample are printed under "raft simulation
statistics" at the end of the test log.  A new mutant needs its catchers here:
test_every_mutant_has_catchers fails until it has them.
"""

from __future__ import annotations

import time

import pytest

import simreport
import test_raft_core as core
import test_raft_host as host
import test_raft_membership as membership
from raftka.raft import canary

from raftchaos import DEFAULT_PLANS, run_chaos
from raftsim import LivenessFailure


def chaos_plans(*, pre_vote: bool | None = None, within: int = 24):
    """The first `within` default chaos plans (optionally only pre-vote on or off), in order;
    the first safety violation is the counterexample."""
    plans = [p for p in DEFAULT_PLANS if pre_vote is None or p.pre_vote == pre_vote][:within]

    def catcher(tmp_path, monkeypatch):
        for plan in plans:
            try:
                run_chaos(plan)
            except LivenessFailure:
                continue  # only a safety violation counts as caught
    label = "" if pre_vote is None else f", pre-vote {'on' if pre_vote else 'off'}"
    catcher.__name__ = f"chaos (first {within} default plans{label})"
    return catcher


def scenario(test):
    def catcher(tmp_path, monkeypatch):
        test()
    catcher.__name__ = test.__name__
    return catcher


def with_fixtures(test):
    def catcher(tmp_path, monkeypatch):
        test(tmp_path, monkeypatch)
    catcher.__name__ = test.__name__
    return catcher


# mutant ("a+b": both at once) -> (time limit in seconds, tests that must each fail with it switched on)
CATCHERS = {
    "vote-no-uptodate": (20, [scenario(core.test_a_candidate_with_a_stale_log_gets_no_vote_without_pre_vote),
                              chaos_plans(pre_vote=False)]),
    "prevote-no-uptodate": (20, [scenario(
        core.test_a_candidate_with_a_stale_log_is_refused_its_pre_vote_and_does_not_raise_the_term)]),
    "vote-no-uptodate+prevote-no-uptodate": (20, [chaos_plans(pre_vote=True)]),
    "commit-old-term": (20, [scenario(core.test_old_term_entries_are_not_committed_by_counting_replicas)]),
    "leader-counts-unsynced": (20, [scenario(core.test_unsynced_entries_are_never_counted_by_the_leader),
                                    chaos_plans()]),
    "lease-through-transfer": (20, [scenario(
        core.test_a_leader_gives_up_its_lease_once_it_tells_a_follower_to_take_over), chaos_plans()]),
    "read-without-lease": (20, [scenario(
        core.test_a_leader_that_keeps_leading_while_cut_off_loses_its_lease_before_another_is_elected)]),
    "send-before-fsync": (90, [with_fixtures(host.test_a_follower_acknowledges_only_entries_it_has_fsynced)]),
    "learner-counted": (20, [scenario(membership.test_a_learner_never_counts_toward_a_commit), chaos_plans()]),
    "wiped-node-votes": (20, [scenario(membership.test_a_wiped_replica_cannot_elect_a_stale_leader),
                              chaos_plans()]),
    "membership-before-own-term": (20, [scenario(
        membership.test_a_new_leader_changes_membership_only_after_committing_its_own_entry)]),
    "promote-lagging-learner": (20, [scenario(membership.test_promotion_waits_for_the_learner_to_catch_up)]),
}


def test_every_mutant_has_catchers():
    assert sorted(m for m in CATCHERS if "+" not in m) == sorted(canary.MUTANTS)


@pytest.mark.parametrize("mutant", sorted(CATCHERS))
def test_the_suite_catches_the_mutant(mutant, tmp_path_factory, monkeypatch):
    limit, catchers = CATCHERS[mutant]
    names = mutant.split("+")
    for catcher in catchers:
        started = time.perf_counter()
        with canary.mutant(*names):
            try:
                catcher(tmp_path_factory.mktemp("catcher"), monkeypatch)
            except (AssertionError, pytest.fail.Exception) as caught:  # a failed assert or pytest.raises
                counterexample = str(caught).strip().splitlines()[0]
            else:
                what = "; ".join(canary.MUTANTS[n] for n in names)
                pytest.fail(f"mutant {mutant} ({what}) survived {catcher.__name__}")
        seconds = time.perf_counter() - started
        simreport.record(f"mutant {mutant} {catcher.__name__}",
                         f"mutant {mutant}: caught by {catcher.__name__} in {seconds:.2f} s: {counterexample[:160]}")
        assert seconds < limit, f"mutant {mutant} took {seconds:.1f} s to catch with {catcher.__name__}"
        assert len(counterexample) < 400, "the counterexample is not short"
