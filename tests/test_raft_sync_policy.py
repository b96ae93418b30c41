"""InlineSyncPolicy: a lone fsync runs on the event loop only after a streak of fast ones."""

from raftka.raft.sync_policy import InlineSyncPolicy


def test_inline_only_after_a_streak_of_fast_syncs_and_one_slow_sync_starts_it_again():
    policy = InlineSyncPolicy(max_s=0.001, streak=3)
    decisions = []
    for seconds in (0.0002, 0.0002, 0.0002, 0.0002, 0.05, 0.0002, 0.0002, 0.0002):
        decisions.append(policy.inline())
        policy.record(seconds)
    decisions.append(policy.inline())
    assert decisions == [False, False, False, True, True, False, False, False, True]


def test_zero_means_never_inline():
    policy = InlineSyncPolicy(max_s=0, streak=1)
    for _ in range(5):
        policy.record(0.0)
    assert not policy.inline()


def test_slow_syncs_are_counted_apart_and_failures_are_not_slow():
    policy = InlineSyncPolicy(max_s=0.001, streak=1, slow_s=0.1)
    assert [policy.record(s, inline) for s, inline in
            ((0.0002, True), (0.1, True), (0.5, False), (float("inf"), False), (0.099, False))] == \
        [False, True, True, False, False]
    assert (policy.slow_count, policy.slow_inline_count) == (2, 1)
