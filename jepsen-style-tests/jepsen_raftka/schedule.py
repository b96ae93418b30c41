"""The nemesis schedule: quiet and fault windows in turn for a time limit, then a final heal.

``Schedule.run(duration_s)`` starts with a quiet window (heal_s), then
repeats: start one entry's nemeses (an entry is a nemesis or a combination
such as pause+kill, started in order), hold them fault_s, stop them in
reverse order, stay quiet heal_s. Entries rotate in the given order or are
drawn at random; with ``max_windows`` the schedule heals as soon as that many
fault windows are over. A nemesis that fails to start or stop is logged and
recorded as an instantaneous ``nemesis-error`` event; the run goes on. It
always ends with ``heal()``, also on errors and on an early stop (a
threading.Event, e.g. set by the runner when the workload dies): every
active nemesis is stopped, the network healed, paused nodes resumed, dead
nodes started and clocks reset; once every node is healthy (or the health
timeout passed) the ``heal`` event is recorded, which is where the checker's
liveness clock starts.

Blocking by design (nemeses shell out); an asyncio runner calls it through
``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from .nemesis import Nemesis, NemesisContext
from .processes import ProcessFailed

log = logging.getLogger(__name__)

Entry = Nemesis | Sequence[Nemesis]


class Schedule:
    def __init__(self, ctx: NemesisContext, entries: Sequence[Entry], *, fault_s: float = 10.0,
                 heal_s: float = 10.0, order: str = "rotate", health_timeout_s: float = 60.0,
                 max_windows: int | None = None) -> None:
        if not entries:
            raise ValueError("a schedule needs at least one nemesis")
        if order not in ("rotate", "random"):
            raise ValueError(f"order must be 'rotate' or 'random', got {order!r}")
        self.ctx = ctx
        self.entries = [[e] if isinstance(e, Nemesis) else list(e) for e in entries]
        self.fault_s = fault_s
        self.heal_s = heal_s
        self.order = order
        self.health_timeout_s = health_timeout_s
        self.max_windows = max_windows
        self.windows = 0  # fault windows started
        self.errors: list[str] = []
        self.heal_result: dict[str, Any] | None = None

    def _next_entry(self) -> list[Nemesis]:
        if self.order == "random":
            return self.ctx.rng.choice(self.entries)
        return self.entries[self.windows % len(self.entries)]

    def _error(self, nemesis: Nemesis, action: str, exc: BaseException) -> None:
        message = f"{action} {nemesis.name}: {exc}"
        log.warning("nemesis %s", message)
        self.errors.append(message)
        self.ctx.recorder.nemesis("nemesis-error", {"nemesis": nemesis.name, "action": action, "error": str(exc)})

    def _stop_all(self, nemeses: Sequence[Nemesis]) -> None:
        for nemesis in reversed(nemeses):
            try:
                nemesis.stop()
            except Exception as exc:  # keep healing the others
                self._error(nemesis, "stop", exc)

    def run(self, duration_s: float, stop: threading.Event | None = None) -> dict[str, Any]:
        """Fault and heal windows until duration_s passed or stop is set; then heal().
        Returns the heal result."""
        stop = stop or threading.Event()
        deadline = time.monotonic() + duration_s
        active: list[Nemesis] = []

        def quiet(seconds: float) -> bool:
            """Sleep up to seconds (never past the deadline); False once the run is over."""
            return not stop.wait(max(0.0, min(seconds, deadline - time.monotonic()))) and time.monotonic() < deadline

        try:
            while (self.max_windows is None or self.windows < self.max_windows) and quiet(self.heal_s):
                entry = self._next_entry()
                self.windows += 1
                for nemesis in entry:
                    try:
                        nemesis.start()
                        active.append(nemesis)
                    except Exception as exc:
                        self._error(nemesis, "start", exc)
                quiet(self.fault_s)
                self._stop_all(active)
                active.clear()
        finally:
            self._stop_all(active)
            self.heal_result = self.heal()
        return self.heal_result

    def heal(self) -> dict[str, Any]:
        """Undo every fault of any nemesis, wait for health, record ``heal``."""
        self._stop_all([n for entry in self.entries for n in entry if n.active])
        ctx, started = self.ctx, time.monotonic()
        ctx.cluster.heal_network()
        brokers = ctx.brokers
        brokers.resume()
        if brokers.clock_faults:
            for node in ctx.cluster.nodes:
                brokers.set_clock_offset(node, 0)
        brokers.start()
        result: dict[str, Any] = {"healthy": True}
        try:
            brokers.wait_healthy(timeout_s=self.health_timeout_s)
        except ProcessFailed as exc:
            result = {"healthy": False, "error": str(exc).splitlines()[0]}
            log.warning("heal: %s", exc)
        result["wait_s"] = round(time.monotonic() - started, 3)
        ctx.recorder.nemesis("heal", result)
        return result
