"""Test-only defects: canaries that prove the jepsen-style checker can fail, and mutants
that prove the test suite can.

A **canary** is switched on only by the environment variable RAFTKA_CANARY given
to a broker process (the fault-injection harness does it with --bug=NAME);
nothing a client sends can turn one on, and an unknown name stops the broker.
Each breaks exactly one guarantee:

  ack-before-commit   the leader counts itself as a majority: acks before replication
  no-fsync            the journal never fsyncs but claims it did
  follower-reads      any replica serves fetches, without the leader lease
  no-dedup            the idempotent producer's duplicate detection is off
  commit-offset-lww   committed group offsets may go backwards (last writer wins)
  skip-truncate       a follower keeps conflicting entries instead of truncating them
  full-disk-keeps-leadership   a leader whose disk is full (or failing) keeps leadership instead of handing it over
  new-replica-votes   a replica that a move adds starts as a voter of the move's target replicas,
                      instead of a learner that learns its membership from the leader: new replicas,
                      their logs empty, elect a leader of their own

A **mutant** switches off one safety rule of the Raft core or host (`MUTANTS`).
Tests turn mutants on in-process with `with canary.mutant("vote-no-uptodate"): ...`
(tests/test_raft_mutants.py asserts that the suite's checks catch each one);
RAFTKA_CANARY=<mutant> does the same for a broker process, for runs by hand.
A rule site reads `canary.enabled(name)`: a lookup in an empty frozenset while
nothing is switched on.  A new mutant is one line here plus that one condition
at its rule site (and its catching test in test_raft_mutants.CATCHERS).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

CANARIES = frozenset({"ack-before-commit", "no-fsync", "follower-reads", "no-dedup", "commit-offset-lww",
                      "skip-truncate", "full-disk-keeps-leadership", "new-replica-votes"})
MUTANTS = {
    "vote-no-uptodate": "a node grants its real vote to a candidate whose log is behind its own",
    "prevote-no-uptodate": "a node grants its pre-vote to a candidate whose log is behind its own",
    "commit-old-term": "a leader commits an earlier term's entry by counting replicas (Raft figure 8)",
    "leader-counts-unsynced": "a leader counts its own entries toward a majority before they are fsynced",
    "read-without-lease": "a leader serves reads without a lease from a quorum (read_allowed)",
    "lease-through-transfer": "a leader keeps its lease after telling a follower to take over (TIMEOUT_NOW)",
    "send-before-fsync": "the host sends a group's messages (acks, votes) before their fsync completes",
    "learner-counted": "learners' votes and acknowledgements count toward quorums",
    "wiped-node-votes": "a broker back with an empty data dir takes its old replica id (votes as its old self)",
    "membership-before-own-term": "a new leader changes membership before committing an entry of its term",
    "promote-lagging-learner": "a learner becomes a voter before it has caught up",
}
ENV = "RAFTKA_CANARY"
ACTIVE = os.environ.get(ENV, "")
if ACTIVE and ACTIVE not in CANARIES and ACTIVE not in MUTANTS:
    raise SystemExit(f"{ENV}={ACTIVE!r} is not a known canary or mutant; known: "
                     f"{', '.join(sorted(CANARIES | set(MUTANTS)))}")

_switched_on: frozenset[str] = frozenset({ACTIVE} if ACTIVE else ())
enabled = _switched_on.__contains__  # enabled(name) -> bool; rebound by mutant()


@contextlib.contextmanager
def mutant(*names: str) -> Iterator[None]:
    """Switch mutants on in this process for the duration of the block (tests only)."""
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        raise ValueError(f"unknown mutant(s) {unknown}; known: {', '.join(MUTANTS)}")
    global _switched_on, enabled
    previous = _switched_on
    _switched_on = previous | frozenset(names)
    enabled = _switched_on.__contains__
    try:
        yield
    finally:
        _switched_on = previous
        enabled = previous.__contains__
