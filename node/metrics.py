"""A tiny in-process Prometheus registry: counters, gauges, fixed-bucket histograms, text format.

Why not ``prometheus_client``: the broker needs a handful of families, one
registry per broker (tests run several brokers in one process, which a global
default registry makes awkward), and a cheap ``inc()`` on the request path.
The output is the Prometheus text exposition format 0.0.4 (``CONTENT_TYPE``);
the tests check it with ``prometheus_client``'s own parser.

Usage::

    registry = MetricsRegistry()
    produced = registry.counter("raftka_produced_records_total", "Records appended.", ("topic",))
    produced.labels("orders").inc(250)
    latency = registry.histogram("raftka_produce_seconds", "Produce latency.")
    latency.observe(0.004)
    registry.gauge_function("raftka_raft_commit_index", "Commit index per group.", ("group",),
                            lambda: [((name,), g.commit_index) for name, g in groups.items()])
    body = registry.render()

Values are plain Python numbers updated without locks: update them from the
event-loop thread (``+=`` from several threads at once may lose increments).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["CONTENT_TYPE", "DEFAULT_BUCKETS", "Counter", "Gauge", "Histogram", "MetricsRegistry"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

LabelValues = tuple[str, ...]


def _format_value(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    return repr(float(value))


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label_value(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Family(ABC):
    """Name, help text and label names shared by every metric family."""

    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for metric {name}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"duplicate label names {list(labelnames)} for metric {name}")
        self.name, self.help_text, self.labelnames = name, help_text, tuple(labelnames)

    def _render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {_escape_help(self.help_text)}")
        out.append(f"# TYPE {self.name} {self.kind}")
        for values, sample in self._samples():
            self._render_sample(out, values, sample)

    @abstractmethod
    def _samples(self) -> Iterable[tuple[LabelValues, Any]]:
        """(label values, sample) pairs to render."""

    def _render_sample(self, out: list[str], values: LabelValues, sample: Any) -> None:
        out.append(f"{self.name}{_label_text(self.labelnames, values)} {_format_value(sample.value)}")


class _StoredFamily(_Family):
    """A family whose children (one per label combination) hold values in memory."""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, help_text, labelnames)
        self._children: dict[LabelValues, Any] = {}

    def labels(self, *values: object) -> Any:
        """The child for these label values (created on first use), in ``labelnames`` order."""
        key = tuple(map(str, values))
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self.labelnames):
                raise ValueError(f"metric {self.name} takes labels {self.labelnames}, got {values!r}")
            child = self._children[key] = self._new_child()
        return child

    def remove(self, *values: object) -> None:
        """Forget one label combination (e.g. a deleted topic)."""
        self._children.pop(tuple(map(str, values)), None)

    @abstractmethod
    def _new_child(self) -> Any:
        """A fresh child holding the value(s) of one label combination."""

    def _samples(self) -> Iterable[tuple[LabelValues, Any]]:
        return self._children.items()


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(f"counters only go up; got inc({amount})")
        self.value += amount


class _GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


class _HistogramChild:
    __slots__ = ("_bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value
        self.count += 1


class Counter(_StoredFamily):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        if not labelnames:
            self.inc = self.labels().inc

    def _new_child(self) -> _CounterChild:
        return _CounterChild()


class Gauge(_StoredFamily):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        if not labelnames:
            child = self.labels()
            self.set, self.inc, self.dec = child.set, child.inc, child.dec

    def _new_child(self) -> _GaugeChild:
        return _GaugeChild()


class Histogram(_StoredFamily):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        if "le" in labelnames:
            raise ValueError(f"'le' is reserved for histogram buckets ({name})")
        bounds = tuple(float(b) for b in buckets if b != math.inf)
        if not bounds or list(bounds) != sorted(set(bounds)) or any(math.isnan(b) for b in bounds):
            raise ValueError(f"histogram {name} needs strictly increasing finite bucket bounds, got {list(buckets)}")
        super().__init__(name, help_text, labelnames)
        self.bounds = bounds
        if not labelnames:
            self.observe = self.labels().observe

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def _render_sample(self, out: list[str], values: LabelValues, child: _HistogramChild) -> None:
        cumulative = 0
        for bound, count in zip((*self.bounds, math.inf), child.counts, strict=True):
            cumulative += count
            le = 'le="' + _format_value(bound) + '"'
            out.append(f"{self.name}_bucket{_label_text(self.labelnames, values, le)} {cumulative}")
        labels = _label_text(self.labelnames, values)
        out.append(f"{self.name}_sum{labels} {_format_value(child.sum)}")
        out.append(f"{self.name}_count{labels} {child.count}")


class _GaugeFunction(_Family):
    """A gauge family whose samples are read from a callback at scrape time."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str],
        read: Callable[[], Iterable[tuple[Sequence[object], float]]],
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self._read = read

    def _samples(self) -> Iterable[tuple[LabelValues, Any]]:
        for values, value in self._read():
            labels = tuple(map(str, values))
            if len(labels) != len(self.labelnames):
                raise ValueError(f"metric {self.name} takes labels {self.labelnames}, callback gave {labels!r}")
            yield labels, value

    def _render_sample(self, out: list[str], values: LabelValues, sample: Any) -> None:
        out.append(f"{self.name}{_label_text(self.labelnames, values)} {_format_value(sample)}")


_F = TypeVar("_F", bound=_Family)


class MetricsRegistry:
    """One broker's metric families, rendered in registration order."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def _add(self, family: _F) -> _F:
        if family.name in self._families:
            raise ValueError(f"metric {family.name} is already registered")
        self._families[family.name] = family
        return family

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labelnames))

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labelnames))

    def histogram(
        self, name: str, help_text: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._add(Histogram(name, help_text, labelnames, buckets))

    def gauge_function(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str],
        read: Callable[[], Iterable[tuple[Sequence[object], float]]],
    ) -> None:
        """Register a gauge whose ``(label values, value)`` samples ``read()`` returns per scrape."""
        self._add(_GaugeFunction(name, help_text, labelnames, read))

    def render(self) -> bytes:
        """All families in the Prometheus text format (serve with ``CONTENT_TYPE``)."""
        out: list[str] = []
        for family in self._families.values():
            family._render(out)
        out.append("")
        return "\n".join(out).encode()
