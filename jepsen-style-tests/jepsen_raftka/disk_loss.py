"""Disk-loss nemeses: a broker loses its data directory and comes back empty under the same id.

* ``DiskLoss``: kill -9 the target, delete its data directory and fsync ledger
  (Brokers.disk_loss); stop() starts it again, same ``--id``, on the empty
  directory. A correct broker comes back as a new incarnation, is swapped in
  for its lost replicas (as a learner, promoted once caught up) and never
  votes or acknowledges as the replica it was.
* ``PauseWipeKill``: issue 11's repro as one fault window, on the replicas of
  one partition: SIGSTOP C, the partition's leader; once the other two have
  elected a new leader A, which with B committed entries that C never
  received, kill -9 B, wipe it and start it again (empty, same id); once B
  has heard from A, kill -9 A; SIGCONT C; then wait up to
  ``takeover_wait_s`` to see whether the stale C takes the partition over
  (the start value says). Until stop() starts A again only C (stale) and the
  empty B run: a broker that votes as its old self elects C, which hands out
  again offsets that A and B acknowledged, and A truncates them when it
  returns. A correct cluster keeps the partition unavailable until A is back.

  C is the paused *leader*, where the issue paused a follower, so that C is
  stale for certain: a leader keeps streaming appends to a follower that
  stopped answering (up to its in-flight window), which the kernel buffers
  and the follower reads when it resumes; a newly elected leader sends a
  silent follower one append and nothing more. B must hear from A before A
  dies: an empty broker that takes its old replica id (the
  ``wiped-node-votes`` canary) thinks the cluster has not formed yet and
  waits until every peer has announced itself
  (``raftka.node.cluster.identity``); had A died first, B would wait for A,
  and once A is back, A, whose log is complete, wins the elections. So the
  nemesis waits for B's own word (its log: it joined as a new incarnation, or
  it is waiting for peers and A is not among those it has not heard from).
  The history's ``start-pause-wipe-kill`` comes when all this is done; its
  value has each step's time from the pause.

Both wipe only a cluster whose membership is settled (the ``ready`` callback,
raft_state.membership_settled: every group has a leader, no learner, and every
voter runs as that replica): losing a second replica of a group before the
first is replaced loses its quorum for good, which no replicated system
survives; the harness would only be measuring its own schedule. When the
cluster does not settle within ``ready_timeout_s`` the window is skipped and
its start value says why.
"""

from __future__ import annotations

import re
import time
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

from .nemesis import Kill, Nemesis, NemesisContext, Pause, Target, chosen_by, one
from .raft_state import GroupStates

Ready = Callable[[], str | None]  # None: the cluster may lose a disk now; else why not
View = Callable[[list[int]], GroupStates]  # the Raft groups as those of the given brokers that answer see them

NEW_INCARNATION = "joining as a new incarnation"
WAITING_FOR_PEERS = re.compile(r"waiting for peers to tell every broker to start \(not heard from: \[([0-9, ]*)\]\)")


class _Wiping(Nemesis):
    def __init__(self, ctx: NemesisContext, ready: Ready, ready_timeout_s: float) -> None:
        super().__init__(ctx)
        self.ready = ready
        self.ready_timeout_s = ready_timeout_s
        self.skipped = False

    def _await_ready(self) -> str | None:
        """None once the cluster may lose a disk; why not, after ready_timeout_s."""
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            try:
                reason = self.ready()
            except Exception as exc:  # a cluster that cannot tell is not ready
                reason = f"unknown: {exc!r}"
            if reason is None or time.monotonic() > deadline:
                return reason
            time.sleep(0.25)

    def _start(self) -> Any:
        reason = self._await_ready()
        self.skipped = reason is not None
        if self.skipped:
            return {"skipped": f"not settled after {self.ready_timeout_s:g} s: {reason}"}
        return self._wipe()

    def _stop(self) -> Any:
        return None if self.skipped else self._restart()

    @abstractmethod
    def _wipe(self) -> Any:
        """Take the disk(s); the start value."""

    @abstractmethod
    def _restart(self) -> Any:
        """Start what _wipe left down; the stop value."""


class DiskLoss(_Wiping):
    """kill -9 the target node and delete its data; stop() starts it on an empty data directory."""

    name = "disk-loss"

    def __init__(self, ctx: NemesisContext, target: Target, ready: Ready, ready_timeout_s: float = 30.0) -> None:
        super().__init__(ctx, ready, ready_timeout_s)
        self.target = target
        self.node: int | None = None

    def _wipe(self) -> Any:
        nodes, description = self.target.choose(self.ctx.cluster.nodes, self.ctx.rng)
        self.node = nodes[0]
        self.ctx.brokers.disk_loss(self.node)
        return {"nodes": [self.node], "target": description}

    def _restart(self) -> Any:
        self.ctx.brokers.start([self.node])
        return {"nodes": [self.node]}


def heard_from(log_text: str, peer: int) -> bool:
    """Whether a broker's log (since its start) shows that it has heard from peer."""
    if NEW_INCARNATION in log_text:
        return True
    return any(str(peer) not in m.group(1).replace(" ", "").split(",") for m in WAITING_FOR_PEERS.finditer(log_text))


class PauseWipeKill(_Wiping):
    """Issue 11's repro (see the module docstring); stop() starts the killed leader again."""

    name = "pause-wipe-kill"

    def __init__(self, ctx: NemesisContext, view: View, ready: Ready, *, unseen_entries: int = 5,
                 step_timeout_s: float = 30.0, takeover_wait_s: float = 10.0, ready_timeout_s: float = 30.0) -> None:
        if len(ctx.cluster.nodes) < 3:
            raise ValueError("pause-wipe-kill needs at least 3 nodes")
        super().__init__(ctx, ready, ready_timeout_s)
        self.view = view
        self.unseen_entries = unseen_entries
        self.step_timeout_s = step_timeout_s
        self.takeover_wait_s = takeover_wait_s
        self.killed: int | None = None

    def _partition(self) -> tuple[str, dict[int, dict]] | None:
        """A random partition group with a leader: (partition name, node -> its /raft entry)."""
        groups = [(by_node[next(iter(by_node))]["partition"], by_node) for by_node in self._view().values()
                  if any(e.get("partition") for e in by_node.values())
                  and any(e["role"] == "leader" for e in by_node.values())]
        return self.ctx.rng.choice(sorted(groups, key=lambda g: g[0])) if groups else None

    def _view(self) -> GroupStates:
        """What the running brokers say (a paused one would only make the request wait)."""
        brokers = self.ctx.brokers
        try:
            return self.view([n for n in self.ctx.cluster.nodes if brokers.running(n) and not brokers.paused(n)])
        except Exception:  # a broker that cannot tell is no answer
            return {}

    def _entries(self, partition: str) -> dict[int, dict]:
        return next((by_node for by_node in self._view().values()
                     if any(e.get("partition") == partition for e in by_node.values())), {})

    def _await_unseen_commits(self, partition: str, paused: int) -> int | None:
        """The node that took over the partition from the paused node, once it has committed
        unseen_entries that the paused node never received (None: not within step_timeout_s).

        A new leader sends its first append to each follower when it is elected; to one that does
        not answer it sends nothing more. So whatever it appended after it was first seen leading
        has not reached the paused node, not even into its socket buffers."""
        first_seen: dict[int, int] = {}

        def committed_unseen() -> int | None:
            for node, e in self._entries(partition).items():
                if node != paused and e["role"] == "leader":
                    first = first_seen.setdefault(node, e["last_index"])
                    if e["commit_index"] >= first + self.unseen_entries:
                        return node
            return None

        return self._until(committed_unseen, self.step_timeout_s)

    def _until(self, condition: Callable[[], Any], timeout_s: float) -> Any:
        """condition()'s first true answer, or None after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while not (answer := condition()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return answer or None

    def _wipe(self) -> Any:
        rng = self.ctx.rng
        chosen = self._partition()
        if chosen is None:  # no partition leader known: any three nodes
            partition, (c, a, b) = None, rng.sample(list(self.ctx.cluster.nodes), 3)
        else:
            partition, entries = chosen
            c = next(n for n, e in entries.items() if e["role"] == "leader")
            a, b = rng.sample([n for n in entries if n != c], 2)
        try:
            return self._repro(partition, a, b, c)
        except BaseException:  # leave no node down or paused that the schedule does not know of
            self.ctx.brokers.resume([c])
            self.ctx.brokers.start([a, b])
            raise

    def _repro(self, partition: str | None, a: int, b: int, c: int) -> Any:
        """The steps, C paused first; A and B are swapped if B is the one elected in C's place."""
        brokers = self.ctx.brokers
        started = time.monotonic()
        steps: dict[str, float] = {}

        def step(name: str) -> None:
            steps[name] = round(time.monotonic() - started, 3)

        brokers.pause([c])
        step("paused C (the partition's leader)")
        if partition is not None and (leader := self._await_unseen_commits(partition, c)) is not None:
            a, b = leader, next(n for n in (a, b) if n != leader)
            step("A, the new leader, and B committed entries C never received")
        brokers.disk_loss(b)
        step("wiped B")
        brokers.start([b])
        heard = self._until(lambda: heard_from(brokers.log_since_start(b), a) or not brokers.running(b),
                            self.step_timeout_s) and brokers.running(b)
        step("B heard from A" if heard else "B did not hear from A")
        brokers.kill([a])
        step("killed A")
        brokers.resume([c])
        step("resumed C")
        self.killed = a

        def c_leads() -> bool:
            return self._entries(partition).get(c, {}).get("role") == "leader"

        took_over = partition is not None and bool(self._until(c_leads, self.takeover_wait_s))
        if took_over:
            step("stale C leads the partition")
        return {"partition": partition, "nodes": [a, b, c], "leader_killed": a, "wiped": b, "paused": c,
                "b_heard_from_a": bool(heard), "stale_leader": took_over, "steps_s": steps}

    def _restart(self) -> Any:
        self.ctx.brokers.start([self.killed])
        return {"nodes": [self.killed]}


def another(ctx: NemesisContext) -> Target:
    """A random node that runs and is not paused: in a combination started after a wipe, one that
    the wipe did not hit."""

    def pick(nodes, rng) -> tuple[list[int], str]:
        up = [n for n in nodes if ctx.brokers.running(n) and not ctx.brokers.paused(n)]
        return ([rng.choice(up)], "another") if up else ([rng.choice(list(nodes))], "another (none up: random)")

    return Target("another", pick)


LeaderCallback = Callable[[], int | None]


def disk_loss_nemeses(ctx: NemesisContext, *, ready: Ready, view: View, partition_leader: LeaderCallback,
                      metadata_leader: LeaderCallback) -> dict[str, Nemesis]:
    """The disk-loss faults by name (pause-wipe-kill only with 3 nodes or more), and a kill and a
    pause of another node than the one a wipe took, to combine with it."""
    out: dict[str, Nemesis] = {
        "disk-loss-one": DiskLoss(ctx, one(), ready),
        "disk-loss-leader": DiskLoss(ctx, chosen_by("leader", partition_leader), ready),
        "disk-loss-metadata-leader": DiskLoss(ctx, chosen_by("metadata-leader", metadata_leader), ready),
        "kill-another": Kill(ctx, another(ctx)),
        "pause-another": Pause(ctx, another(ctx)),
    }
    if len(ctx.cluster.nodes) >= 3:
        out["pause-wipe-kill"] = PauseWipeKill(ctx, view, ready)
    return out
