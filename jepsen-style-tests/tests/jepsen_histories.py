"""Test support: a builder for hand-made histories and a simulated correct log
that produces valid histories for property tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jepsen_raftka.checker import CheckOptions, check
from jepsen_raftka.history import History, history_from_dicts
from jepsen_raftka.report import Report

MS = 1_000_000
S = 1_000_000_000
NO_MINIMUMS = CheckOptions(min_ok_sends=0, min_polled_records=0)


class Builder:
    """Appends events with a clock that advances 1 ms per event.

    ``op`` records an invoke immediately followed by its completion; ``begin``
    and ``end`` record them separately for concurrent ops. Each returns the
    index of the event it wrote, so tests can name the ops they expect.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.time = 0

    def _add(self, event: dict[str, Any]) -> int:
        self.time += MS
        self.events.append({**event, "time": self.time})
        return len(self.events) - 1

    def advance(self, seconds: float) -> None:
        self.time += int(seconds * S)

    def begin(self, process: int, f: str, value: Any = None) -> int:
        return self._add({"type": "invoke", "process": process, "f": f, "value": value})

    def end(self, type_: str, process: int, f: str, value: Any = None) -> int:
        return self._add({"type": type_, "process": process, "f": f, "value": value})

    def op(self, process: int, f: str, value: Any = None, type_: str = "ok",
           result: Any = None) -> int:
        index = self.begin(process, f, value)
        self.end(type_, process, f, value if result is None else result)
        return index

    def send(self, process: int, value: int, offset: int | None = None, partition: int = 0,
             topic: str = "t", type_: str = "ok") -> int:
        sent = {"topic": topic, "key": None, "value": value}
        result = {**sent, "partition": partition, "offset": offset} if type_ == "ok" else sent
        return self.op(process, "send", sent, type_, result)

    def poll(self, process: int, records: dict[str, list], mode: str = "assign",
             rebalanced: bool = False, f: str = "poll") -> int:
        return self.op(process, f, {}, "ok",
                       {"records": records, "mode": mode, "rebalanced": rebalanced})

    def assign(self, process: int, partitions: list[str], seek_to_beginning: bool = False,
               seek: dict[str, int] | None = None) -> int:
        return self.op(process, "assign", {"partitions": partitions,
                                           "seek_to_beginning": seek_to_beginning,
                                           "seek": seek or {}})

    def commit(self, process: int, group: str, offsets: dict[str, int], seek: bool = False,
               type_: str = "ok") -> int:
        return self.op(process, "commit", {"group": group, "offsets": offsets, "seek": seek},
                       type_)

    def list_committed(self, process: int, group: str, offsets: dict[str, int]) -> int:
        return self.op(process, "list_committed", {"group": group}, "ok",
                       {"group": group, "offsets": offsets})

    def nemesis(self, f: str, value: Any = None) -> int:
        return self._add({"type": "info", "process": "nemesis", "f": f, "value": value})

    def history(self) -> History:
        return history_from_dicts(self.events)

    def check(self, **kwargs: Any) -> Report:
        kwargs.setdefault("options", NO_MINIMUMS)
        return check(self.history(), **kwargs)


def clean_run(n: int = 5) -> Builder:
    """A small correct run: n sends to t/0, a consumer reading them all, a heal,
    a send after it, and final polls reading everything."""
    b = Builder()
    b.assign(1, ["t/0"], seek_to_beginning=True)
    for i in range(n):
        b.send(0, 100 + i, offset=i)
    b.poll(1, {"t/0": [[i, 100 + i] for i in range(n)]})
    b.nemesis("start-partition", {"nodes": [1]})
    b.nemesis("heal")
    b.send(0, 100 + n, offset=n)
    b.assign(9, ["t/0"], seek_to_beginning=True)
    b.poll(9, {"t/0": [[i, 100 + i] for i in range(n + 1)]}, f="final_poll")
    return b


@dataclass
class _Consumer:
    process: int
    positions: dict[str, int] = field(default_factory=dict)


class SimulatedLog:
    """A correct raftka, driven by a list of actions, recording a linear history.

    Actions are tuples; see ``run``. Everything the simulated system returns is
    right, so the checker must find no anomaly in what it records.
    """

    GROUP = "g"

    def __init__(self, partitions: int = 2) -> None:
        self.b = Builder()
        self.tps = [f"t/{p}" for p in range(partitions)]
        self.logs: dict[str, list[int]] = {tp: [] for tp in self.tps}
        self.committed: dict[str, int] = {}
        self.consumers: dict[int, _Consumer] = {}  # slot -> consumer
        self.next_value = 0
        self.next_process = 10

    def _fresh_value(self) -> int:
        self.next_value += 1
        return self.next_value

    def _consumer(self, slot: int) -> _Consumer:
        c = self.consumers.get(slot)
        if c is None:
            c = self.consumers[slot] = _Consumer(self.next_process)
            self.next_process += 1
            seek = {tp: self.committed.get(tp, 0) for tp in self.tps}
            self.b.assign(c.process, self.tps, seek=seek)
            c.positions = dict(seek)
        return c

    def _retire(self, slot: int) -> None:
        self.consumers.pop(slot, None)

    def send(self, slot: int, partition: int, outcome: str) -> None:
        c = self._consumer(slot)
        tp = self.tps[partition % len(self.tps)]
        value = self._fresh_value()
        if outcome == "ok":
            self.logs[tp].append(value)
            self.b.send(c.process, value, len(self.logs[tp]) - 1, int(tp[2:]))
        elif outcome == "fail":
            self.b.send(c.process, value, type_="fail")
        else:  # info: maybe applied; the process is retired either way
            if outcome == "info-applied":
                self.logs[tp].append(value)
            self.b.send(c.process, value, type_="info")
            self._retire(slot)

    def poll(self, slot: int, max_records: int) -> None:
        c = self._consumer(slot)
        records = {}
        for tp, pos in c.positions.items():
            chunk = self.logs[tp][pos:pos + max_records]
            records[tp] = [[pos + i, v] for i, v in enumerate(chunk)]
            c.positions[tp] = pos + len(chunk)
        self.b.poll(c.process, records)

    def commit(self, slot: int) -> None:
        c = self._consumer(slot)
        offsets = dict(c.positions)
        self.b.commit(c.process, self.GROUP, offsets)
        for tp, o in offsets.items():
            self.committed[tp] = max(self.committed.get(tp, 0), o)

    def list_committed(self, slot: int) -> None:
        c = self._consumer(slot)
        self.b.list_committed(c.process, self.GROUP, dict(self.committed))

    def seek_and_commit(self, slot: int, partition: int, fraction: float) -> None:
        c = self._consumer(slot)
        tp = self.tps[partition % len(self.tps)]
        offset = int(len(self.logs[tp]) * fraction)
        self.b.assign(c.process, self.tps, seek={tp: offset})
        c.positions[tp] = offset
        self.b.commit(c.process, self.GROUP, {tp: offset}, seek=True)
        self.committed[tp] = offset

    def crash(self, slot: int) -> None:
        c = self._consumer(slot)
        self.b.op(c.process, "crash")
        self._retire(slot)
        self.consumers[slot] = _Consumer(c.process)
        seek = {tp: self.committed.get(tp, 0) for tp in self.tps}
        self.b.assign(c.process, self.tps, seek=seek)
        self.consumers[slot].positions = dict(seek)

    def run(self, actions: list[tuple]) -> History:
        for name, *args in actions:
            getattr(self, name)(*args)
        self.b.nemesis("start-partition", {"nodes": [1]})
        self.b.nemesis("heal")
        self.send(0, 0, "ok")
        final = self.next_process
        self.b.assign(final, self.tps, seek_to_beginning=True)
        positions = {tp: 0 for tp in self.tps}
        while any(positions[tp] < len(self.logs[tp]) for tp in self.tps):
            records = {}
            for tp in self.tps:
                chunk = self.logs[tp][positions[tp]:positions[tp] + 7]
                records[tp] = [[positions[tp] + i, v] for i, v in enumerate(chunk)]
                positions[tp] += len(chunk)
            self.b.poll(final, records, f="final_poll")
        return self.b.history()
