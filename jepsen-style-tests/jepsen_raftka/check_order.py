"""Ordering anomalies: offsets inside one poll, across one consumer's polls,
across one producer's sends, and between sends ordered in real time.

raftka's offsets are dense (every offset holds a record), so a gap between two
offsets read one after the other is a skip even when nobody observed the
skipped offset; skipped values are named where some op observed them.
"""

from __future__ import annotations

from typing import Any

from .anomaly import Anomaly
from .history import POLL_FUNCTIONS, Assign, History, Op, PollResult, Send
from .observations import Observations

SKIPPED_SHOWN = 10  # how many skipped offsets a report names


def _skipped(obs: Observations, tp: str, after: int, before: int) -> dict[str, Any]:
    shown = range(after + 1, min(before, after + 1 + SKIPPED_SHOWN))
    return {"skipped_count": before - after - 1,
            "skipped": [[o, obs.value_at(tp, o)] for o in shown]}


def internal_poll_order(history: History, obs: Observations) -> list[Anomaly]:
    """Within one poll, each partition's offsets must be consecutive and increasing."""
    found = []
    for op in history.ops:
        if op.f not in POLL_FUNCTIONS or op.type != "ok":
            continue
        for tp, pairs in op.body.records.items():
            for i in range(1, len(pairs)):
                prev, cur = pairs[i - 1][0], pairs[i][0]
                if cur == prev + 1:
                    continue
                details = {"partition": tp, "offsets": [prev, cur], "position": i}
                if cur <= prev:
                    found.append(Anomaly("int-nonmonotonic-poll", details, (op,)))
                else:
                    found.append(Anomaly("int-poll-skip",
                                         {**details, **_skipped(obs, tp, prev, cur)}, (op,)))
    return found


def _reset_by_assign(last: dict[str, tuple[int, Op]], op: Op) -> dict[str, tuple[int, Op]]:
    assign = op.body
    assert isinstance(assign, Assign)
    kept = {tp: last[tp] for tp in assign.partitions if tp in last}
    if assign.seek_to_beginning:
        kept.update((tp, (-1, op)) for tp in assign.partitions)
    kept.update((tp, (offset - 1, op)) for tp, offset in assign.seek.items())
    return kept


def poll_order(history: History, obs: Observations) -> list[Anomaly]:
    """Across consecutive polls of one process, each partition continues where it left off.

    The comparison is reset by a subscribe or a crash, by a poll in subscribe
    mode that reports a rebalance, and narrowed by an assign to the partitions
    it keeps. An assign's seek sets where the next poll must start
    (``seek_to_beginning`` means offset 0: these runs use no retention).
    """
    found = []
    last_read: dict[int, dict[str, tuple[int, Op]]] = {}  # process -> tp -> (offset, op)
    for op in history.ops:
        if op.f == "crash" or (op.f == "subscribe" and op.type == "ok"):
            last_read.pop(op.process, None)
        elif op.f == "assign" and op.type == "ok":
            last_read[op.process] = _reset_by_assign(last_read.get(op.process, {}), op)
        elif op.f in POLL_FUNCTIONS and op.type == "ok":
            poll = op.body
            assert isinstance(poll, PollResult)
            if poll.mode == "subscribe" and poll.rebalanced:
                last_read.pop(op.process, None)
            last = last_read.setdefault(op.process, {})
            for tp, pairs in poll.records.items():
                if not pairs:
                    continue
                first = pairs[0][0]
                before = last.get(tp)
                if before is not None and first != before[0] + 1:
                    details = {"partition": tp, "offsets": [before[0], first]}
                    if first <= before[0]:
                        found.append(Anomaly("nonmonotonic-poll", details, (before[1], op)))
                    else:
                        found.append(Anomaly("poll-skip",
                                             {**details, **_skipped(obs, tp, before[0], first)},
                                             (before[1], op)))
                last[tp] = (pairs[-1][0], op)
    return found


def _ok_sends(history: History) -> list[tuple[Op, Send]]:
    return [(op, op.body) for op in history.ops if op.f == "send" and op.type == "ok"]


def nonmonotonic_sends(history: History) -> list[Anomaly]:
    """One process's acknowledged sends to a partition get decreasing offsets."""
    found = []
    last_sent: dict[tuple[int, str], tuple[int, Op]] = {}
    for op, send in _ok_sends(history):
        key = (op.process, send.tp)
        before = last_sent.get(key)
        if before is not None and send.offset < before[0]:
            found.append(Anomaly("nonmonotonic-send",
                                 {"partition": send.tp, "offsets": [before[0], send.offset]},
                                 (before[1], op)))
        last_sent[key] = (send.offset, op)
    return found


def realtime_send_order(history: History) -> list[Anomaly]:
    """Send A acked before send B was invoked (same partition) yet B's offset < A's.

    Per partition, sweep sends by invoke time while folding in, by completion
    time, every send that completed earlier; B is compared with the highest
    offset among those, which is also the evidence reported.
    """
    by_tp: dict[str, list[tuple[Op, Send]]] = {}
    for op, send in _ok_sends(history):
        by_tp.setdefault(send.tp, []).append((op, send))
    found = []
    for tp, sends in by_tp.items():
        by_completion = sorted(sends, key=lambda s: s[0].complete_time)
        folded, high, high_op = 0, -1, None
        for op, send in sorted(sends, key=lambda s: s[0].invoke_time):
            while (folded < len(by_completion)
                   and by_completion[folded][0].complete_time < op.invoke_time):
                earlier, earlier_send = by_completion[folded]
                if earlier_send.offset > high:
                    high, high_op = earlier_send.offset, earlier
                folded += 1
            if send.offset < high:
                found.append(Anomaly("realtime-send-order",
                                     {"partition": tp, "offsets": [high, send.offset]},
                                     (high_op, op)))
    return found
