"""Test-only defects ("canaries") that prove the jepsen-style checker can fail.

A canary is switched on only by the environment variable RAFTKA_CANARY given
to a broker process (the fault-injection harness does it with --bug=NAME);
nothing a client sends can turn one on, and an unknown name stops the broker.
Each breaks exactly one guarantee:

  ack-before-commit   the leader counts itself as a majority: acks before replication
  no-fsync            the journal never fsyncs but claims it did
  follower-reads      any replica serves fetches, without the leader lease
  no-dedup            the idempotent producer's duplicate detection is off
  commit-offset-lww   committed group offsets may go backwards (last writer wins)
  skip-truncate       a follower keeps conflicting entries instead of truncating them
  wiped-node-votes    a broker back with an empty data dir takes its old replica id (votes as its old self)
  learner-counted     learners' votes and acknowledgements count toward quorums
  membership-before-own-term   a new leader changes membership before committing an entry of its term
  promote-lagging-learner      a learner becomes a voter before it has caught up
"""

from __future__ import annotations

import os

CANARIES = frozenset({"ack-before-commit", "no-fsync", "follower-reads", "no-dedup", "commit-offset-lww",
                      "skip-truncate", "wiped-node-votes", "learner-counted", "membership-before-own-term",
                      "promote-lagging-learner"})
ENV = "RAFTKA_CANARY"
ACTIVE = os.environ.get(ENV, "")
if ACTIVE and ACTIVE not in CANARIES:
    raise SystemExit(f"{ENV}={ACTIVE!r} is not a known canary; known: {', '.join(sorted(CANARIES))}")


def enabled(name: str) -> bool:
    return ACTIVE == name
