"""The jepsen-style history: file format, validation, pairing and a typed model.

Owns what a history *is*; checkers only read the model built here.

File format
===========
JSON lines, one event per line (blank lines are ignored; ``index`` below is the
0-based position of an event among the non-blank lines)::

    {"type": "invoke"|"ok"|"fail"|"info", "process": int, "f": F,
     "value": ..., "time": int, "node": ..., "error": ...}

``time`` is a monotonic clock in nanoseconds (``time.monotonic_ns()``), shared
by every recorder of one run. ``node`` (the broker that served the request) and
``error`` (a description of a failure) are optional. ``F`` is one of ``send``,
``poll``, ``assign``, ``subscribe``, ``commit``, ``list_committed``, ``crash``,
``final_poll``.

Pairing. Each client process is sequential: an ``invoke`` is followed by exactly
one completion (``ok`` / ``fail`` / ``info``) of the same ``f`` before the
process invokes again. ``fail`` means the operation certainly had no effect;
``info`` means the outcome is unknown (timeout, lost connection) and the
process is retired: it must not invoke again (the harness uses a new process
id). An invoke left without a completion at the end of the history counts as
``info``. Partitions are written ``"topic/partition"`` (e.g. ``"jepsen/3"``).

Values (the completion repeats or extends the invoke's value):

- ``send``: invoke ``{"topic": t, "key": k, "value": v}`` (``v`` a unique
  integer per topic, ``k`` the partitioning key or null); ``ok`` adds
  ``"partition": p, "offset": o``.
- ``poll`` / ``final_poll``: invoke ``{}`` (anything); ``ok``
  ``{"records": {"t/p": [[offset, value], ...]}, "mode": "assign"|"subscribe",
  "rebalanced": bool}`` (records in the order returned; ``rebalanced``, default
  false, says the consumer's assignment changed since its previous poll).
  ``final_poll`` is a poll of the final phase that reads everything after the
  heal.
- ``assign``: ``{"partitions": ["t/p", ...], "seek_to_beginning": bool,
  "seek": {"t/p": offset}}`` (both seek keys optional). Replaces the assignment.
- ``subscribe``: ``{"topics": [t, ...], "group": g}``.
- ``commit``: ``{"group": g, "offsets": {"t/p": o}, "seek": bool}``. ``seek``
  (default false) declares that the consumer seeked, so this commit may move a
  committed offset backwards.
- ``list_committed``: invoke ``{"group": g}``; ``ok`` ``{"group": g,
  "offsets": {"t/p": o}}`` listing every partition with a committed offset.
- ``crash``: value ignored; the client drops its consumer state and restarts.

Nemesis events have ``"process": "nemesis"`` and ``"type": "info"`` and are
not paired. ``f`` ``"start-NAME"`` opens a fault window NAME (``value`` says
what, e.g. ``{"nodes": [2]}``), ``"stop-NAME"`` closes the oldest open window
NAME, ``"heal"`` closes every open window and marks the moment everything is
healed (liveness is measured from it). Any other ``f`` is an instantaneous
fault event (e.g. ``"kill"``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

COMPLETION_TYPES = frozenset({"ok", "fail", "info"})
CLIENT_FUNCTIONS = frozenset(
    {"send", "poll", "assign", "subscribe", "commit", "list_committed", "crash", "final_poll"}
)
POLL_FUNCTIONS = frozenset({"poll", "final_poll"})
SCALAR_TYPES = frozenset({int, str, float, bool, type(None)})  # allowed record values
NEMESIS = "nemesis"
HEAL = "heal"


class HistoryError(ValueError):
    """A history that does not follow the format; the message names the event index."""


def partition_key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def split_partition_key(key: str) -> tuple[str, int]:
    """``"t/3"`` -> ``("t", 3)``; raises HistoryError for anything else."""
    if not isinstance(key, str):
        raise HistoryError(f"bad partition key {key!r}: expected 'topic/partition'")
    return _split_str_key(key)


@functools.lru_cache(maxsize=4096)
def _split_str_key(key: str) -> tuple[str, int]:
    topic, sep, partition = key.rpartition("/")
    if not sep or not topic or not partition.isdigit():
        raise HistoryError(f"bad partition key {key!r}: expected 'topic/partition'")
    return topic, int(partition)


# --------------------------------------------------------------------------- model


@dataclass(slots=True)
class Event:
    index: int
    type: str
    process: int | str
    f: str
    value: Any
    time: int
    node: Any = None
    error: Any = None

    def to_json(self) -> dict[str, Any]:
        out = {"type": self.type, "process": self.process, "f": self.f,
               "value": self.value, "time": self.time}
        if self.node is not None:
            out["node"] = self.node
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class Send:
    topic: str
    key: Any
    value: Any
    partition: int | None = None  # known only when the send is ok
    offset: int | None = None
    tp: str | None = None  # "topic/partition" when the partition is known


@dataclass(slots=True)
class PollResult:
    records: dict[str, list]  # "t/p" -> [[offset, value], ...]
    mode: str
    rebalanced: bool


@dataclass(frozen=True, slots=True)
class Assign:
    partitions: tuple[str, ...]
    seek_to_beginning: bool
    seek: dict[str, int]


@dataclass(frozen=True, slots=True)
class Subscribe:
    topics: tuple[str, ...]
    group: Any


@dataclass(frozen=True, slots=True)
class Commit:
    group: Any
    offsets: dict[str, int]
    seek: bool


@dataclass(frozen=True, slots=True)
class Committed:
    group: Any
    offsets: dict[str, int] | None  # None unless the list_committed is ok


Body = Send | PollResult | Assign | Subscribe | Commit | Committed | None


@dataclass(slots=True, eq=False)
class Op:
    """One client operation: an invoke and its completion.

    ``body`` is the typed value: for ``poll``/``final_poll`` it is a PollResult
    only when ok (None otherwise); for every other f it is always set.
    ``complete_time`` is None when the op never completed.
    """

    process: int
    f: str
    type: str
    invoke_index: int
    complete_index: int | None
    invoke_time: int
    complete_time: int | None
    body: Body
    node: Any = None
    error: Any = None

    @property
    def end_time(self) -> float:
        """Completion time, +inf for an op that never completed."""
        return math.inf if self.complete_time is None else self.complete_time

    def ref(self) -> dict[str, Any]:
        """The compact reference to this op used in reports."""
        return {"process": self.process, "f": self.f, "type": self.type,
                "invoke_index": self.invoke_index, "complete_index": self.complete_index,
                "invoke_time": self.invoke_time, "complete_time": self.complete_time}

    def label(self) -> str:
        end = "never" if self.complete_index is None else f"#{self.complete_index}"
        return f"p{self.process} {self.f} {self.type} [#{self.invoke_index}->{end}]"


@dataclass(frozen=True, slots=True)
class FaultWindow:
    name: str
    start: int
    end: int | None  # None: never closed
    value: Any = None


@dataclass(slots=True)
class History:
    events: list[Event]
    ops: list[Op]  # client ops in invoke order
    nemesis: list[Event] = field(default_factory=list)

    @property
    def heal_times(self) -> list[int]:
        return [e.time for e in self.nemesis if e.f == HEAL]

    @property
    def start_time(self) -> int:
        return min((e.time for e in self.events), default=0)

    def fault_windows(self) -> list[FaultWindow]:
        """Nemesis start-NAME/stop-NAME/heal events as (name, start, end) windows."""
        open_windows: dict[str, list[Event]] = {}
        windows: list[FaultWindow] = []
        for e in sorted(self.nemesis, key=lambda e: (e.time, e.index)):
            if e.f.startswith("start-"):
                open_windows.setdefault(e.f[6:], []).append(e)
            elif e.f.startswith("stop-") and open_windows.get(e.f[5:]):
                started = open_windows[e.f[5:]].pop(0)
                windows.append(FaultWindow(e.f[5:], started.time, e.time, started.value))
            elif e.f == HEAL:
                for name, starts in open_windows.items():
                    windows.extend(FaultWindow(name, s.time, e.time, s.value) for s in starts)
                open_windows.clear()
        for name, starts in open_windows.items():
            windows.extend(FaultWindow(name, s.time, None, s.value) for s in starts)
        return sorted(windows, key=lambda w: w.start)

    def instant_faults(self) -> list[Event]:
        """Nemesis events that are neither window boundaries nor heals."""
        return [e for e in self.nemesis
                if not (e.f.startswith("start-") or e.f.startswith("stop-") or e.f == HEAL)]


# ---------------------------------------------------------------------- parsing


def _fail(index: int, message: str) -> HistoryError:
    return HistoryError(f"event {index}: {message}")


def parse_event(index: int, raw: Any) -> Event:
    if not isinstance(raw, dict):
        raise _fail(index, f"expected a JSON object, got {type(raw).__name__}")
    etype, process, f, t = raw.get("type"), raw.get("process"), raw.get("f"), raw.get("time")
    if etype not in COMPLETION_TYPES and etype != "invoke":
        raise _fail(index, f"bad type {etype!r}")
    if type(t) is not int:
        raise _fail(index, f"time must be an integer (ns), got {t!r}")
    if process == NEMESIS:
        if etype != "info" or not isinstance(f, str):
            raise _fail(index, "nemesis events need type 'info' and a string f")
    elif type(process) is not int:
        raise _fail(index, f"process must be an integer or 'nemesis', got {process!r}")
    elif f not in CLIENT_FUNCTIONS:
        raise _fail(index, f"unknown f {f!r}")
    return Event(index, etype, process, f, raw.get("value"), t, raw.get("node"), raw.get("error"))


def _check_tp(index: int, key: Any) -> None:
    try:
        split_partition_key(key)
    except HistoryError as exc:
        raise _fail(index, str(exc)) from None


def _require_dict(index: int, value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(index, f"{what} must be an object, got {value!r}")
    return value


def _offsets(index: int, value: Any, what: str) -> dict[str, int]:
    offsets = _require_dict(index, value, what)
    for tp, offset in offsets.items():
        _check_tp(index, tp)
        if type(offset) is not int:
            raise _fail(index, f"{what}[{tp!r}] must be an integer, got {offset!r}")
    return offsets


def _send_body(invoke: Event, completion: Event | None) -> Send:
    v = _require_dict(invoke.index, invoke.value, "send value")
    if (not isinstance(v.get("topic"), str) or "value" not in v
            or type(v["value"]) not in SCALAR_TYPES):
        raise _fail(invoke.index, "send needs a string 'topic' and a scalar 'value'")
    if completion is None or completion.type != "ok":
        return Send(v["topic"], v.get("key"), v["value"])
    c = _require_dict(completion.index, completion.value, "send ok value")
    partition, offset = c.get("partition"), c.get("offset")
    if type(partition) is not int or type(offset) is not int or offset < 0:
        raise _fail(completion.index, "send ok needs integer 'partition' and 'offset' >= 0")
    if c.get("value", v["value"]) != v["value"] or c.get("topic", v["topic"]) != v["topic"]:
        raise _fail(completion.index, "send ok value differs from its invoke")
    return Send(v["topic"], v.get("key"), v["value"], partition, offset,
                partition_key(v["topic"], partition))


def _poll_body(completion: Event) -> PollResult:
    c = _require_dict(completion.index, completion.value, f"{completion.f} ok value")
    records = _require_dict(completion.index, c.get("records"), "records")
    for tp, pairs in records.items():
        _check_tp(completion.index, tp)
        if not isinstance(pairs, list):
            raise _fail(completion.index, f"records[{tp!r}] must be a list")
        for pair in pairs:
            if (not isinstance(pair, list) or len(pair) != 2 or type(pair[0]) is not int
                    or type(pair[1]) not in SCALAR_TYPES):
                raise _fail(completion.index, f"records[{tp!r}]: bad [offset, value] {pair!r}")
    mode = c.get("mode", "assign")
    if mode not in ("assign", "subscribe"):
        raise _fail(completion.index, f"poll mode must be 'assign' or 'subscribe', got {mode!r}")
    return PollResult(records, mode, bool(c.get("rebalanced", False)))


def _body(invoke: Event, completion: Event | None) -> Body:
    f, ok = invoke.f, completion is not None and completion.type == "ok"
    if f == "send":
        return _send_body(invoke, completion)
    if f in POLL_FUNCTIONS:
        return _poll_body(completion) if ok else None
    if f == "crash":
        return None
    v = _require_dict(invoke.index, invoke.value, f"{f} value")
    if f == "assign":
        partitions = v.get("partitions")
        if not isinstance(partitions, list):
            raise _fail(invoke.index, "assign needs a 'partitions' list")
        for tp in partitions:
            _check_tp(invoke.index, tp)
        return Assign(tuple(partitions), bool(v.get("seek_to_beginning", False)),
                      _offsets(invoke.index, v.get("seek", {}), "seek"))
    if f == "subscribe":
        topics = v.get("topics")
        if not isinstance(topics, list):
            raise _fail(invoke.index, "subscribe needs a 'topics' list")
        return Subscribe(tuple(topics), v.get("group"))
    if "group" not in v:
        raise _fail(invoke.index, f"{f} needs a 'group'")
    if f == "commit":
        return Commit(v["group"], _offsets(invoke.index, v.get("offsets"), "offsets"),
                      bool(v.get("seek", False)))
    # list_committed
    if not ok:
        return Committed(v["group"], None)
    c = _require_dict(completion.index, completion.value, "list_committed ok value")
    return Committed(v["group"], _offsets(completion.index, c.get("offsets"), "offsets"))


def _make_op(invoke: Event, completion: Event | None) -> Op:
    return Op(
        process=invoke.process, f=invoke.f,
        type="info" if completion is None else completion.type,
        invoke_index=invoke.index,
        complete_index=None if completion is None else completion.index,
        invoke_time=invoke.time,
        complete_time=None if completion is None else completion.time,
        body=_body(invoke, completion),
        node=None if completion is None else completion.node,
        error=None if completion is None else completion.error,
    )


def pair(events: list[Event]) -> History:
    """Pair invokes with completions per process and build the typed model."""
    pending: dict[int, Event] = {}
    retired: dict[int, int] = {}  # process -> index of the info completion
    slots: list[Op | Event] = []  # an invoke Event until its completion arrives
    slot_of: dict[int, int] = {}
    nemesis: list[Event] = []
    for e in events:
        if e.process == NEMESIS:
            nemesis.append(e)
            continue
        p = e.process
        if e.type == "invoke":
            if p in pending:
                raise _fail(e.index,
                            f"process {p} invoked while op at {pending[p].index} is pending")
            if p in retired:
                raise _fail(e.index, f"process {p} was retired by an info at {retired[p]}")
            pending[p] = e
            slot_of[p] = len(slots)
            slots.append(e)
            continue
        invoke = pending.pop(p, None)
        if invoke is None:
            raise _fail(e.index, f"{e.type} for process {p} without a pending invoke")
        if invoke.f != e.f:
            raise _fail(e.index, f"completion f {e.f!r} does not match invoke f {invoke.f!r}")
        if e.type == "info":
            retired[p] = e.index
        slots[slot_of[p]] = _make_op(invoke, e)
    for p, invoke in pending.items():
        slots[slot_of[p]] = _make_op(invoke, None)
    return History(events, slots, nemesis)  # type: ignore[arg-type]


def history_from_dicts(raws: Iterable[Any]) -> History:
    return pair([parse_event(i, raw) for i, raw in enumerate(raws)])


def iter_jsonl(stream: IO[bytes]) -> Iterator[Any]:
    for lineno, line in enumerate(stream, 1):
        if line.strip():
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise HistoryError(f"line {lineno}: invalid JSON: {exc}") from None


def load_history(path: str | Path) -> History:
    with open(path, "rb") as stream:
        return history_from_dicts(iter_jsonl(stream))


def write_history(path: str | Path, events: Iterable[dict[str, Any] | Event]) -> None:
    with open(path, "wb") as out:
        for e in events:
            out.write(orjson.dumps(e.to_json() if isinstance(e, Event) else e))
            out.write(b"\n")


class HistoryRecorder:
    """Appends events to a JSON-lines history file as they happen (for the harness).

    Each call stamps ``time.monotonic_ns()`` and flushes the line, so a crashed
    harness still leaves a readable history.
    """

    def __init__(self, path: str | Path) -> None:
        self._out = open(path, "ab")

    def _write(self, event: dict[str, Any]) -> None:
        event["time"] = time.monotonic_ns()
        self._out.write(orjson.dumps(event) + b"\n")
        self._out.flush()

    def invoke(self, process: int, f: str, value: Any) -> None:
        self._write({"type": "invoke", "process": process, "f": f, "value": value})

    def complete(self, type_: str, process: int, f: str, value: Any,
                 node: Any = None, error: Any = None) -> None:
        if type_ not in COMPLETION_TYPES:
            raise ValueError(f"completion type must be one of {sorted(COMPLETION_TYPES)}")
        event = {"type": type_, "process": process, "f": f, "value": value}
        if node is not None:
            event["node"] = node
        if error is not None:
            event["error"] = error
        self._write(event)

    def nemesis(self, f: str, value: Any = None) -> None:
        self._write({"type": "info", "process": NEMESIS, "f": f, "value": value})

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
