"""What the brokers say about their Raft groups (``GET /raft`` on every broker), read while they run.

``group_states`` gathers every replica's entry of every group. For one group,
``membership_problem`` says why its membership is not settled: not exactly
one leader, a learner still catching up, or a voter that no broker hosts as
that replica (its broker is down, or came back with an empty disk as a new
incarnation that has not replaced it yet); ``replication_problem`` also
wants every replica to have applied everything the leader holds. A
disk-loss nemesis wipes a broker only once every group's membership is
settled (``membership_settled``); the runner compares the replicas' logs
only once every partition group's replication is settled and stable
(``collect.wait_replicas_converged``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .api import BrokerApi, NoAnswer, NotDelivered

METADATA_GROUP = "__metadata"

GroupStates = dict[str, dict[int, dict[str, Any]]]  # group -> node -> that replica's /raft entry
Check = Callable[[dict[int, dict[str, Any]]], str | None]


def group_states(api: BrokerApi, timeout_s: float = 2.0, *, nodes: Iterable[int] | None = None,
                 every_broker: bool = True) -> GroupStates | None:
    """Every group's entry on every broker (or the given ones); None when a broker did not answer
    (unless every_broker is False: then the entries of the brokers that answered)."""
    states: GroupStates = {}
    for node in api.nodes if nodes is None else nodes:
        try:
            reply = api.request(node, "GET", "/raft", timeout_s=timeout_s)
        except (NotDelivered, NoAnswer):
            reply = None
        if reply is None or reply.status != 200 or not isinstance(reply.doc, dict):
            if every_broker:
                return None
            continue
        for entry in reply.doc.get("groups", []):
            states.setdefault(entry["group"], {})[node] = entry
    return states


def _leader(by_node: dict[int, dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    leaders = [e for e in by_node.values() if e["role"] == "leader"]
    if len(leaders) != 1:
        return None, f"{len(leaders)} replicas say they lead"
    return leaders[0], None


def membership_problem(by_node: dict[int, dict[str, Any]]) -> str | None:
    """Why one group's membership is not settled (None: it is)."""
    leader, problem = _leader(by_node)
    if leader is None:
        return problem
    if leader["learners"]:
        return f"learners {leader['learners']} are catching up"
    hosted = sorted(e["id"] for e in by_node.values())
    if hosted != sorted(leader["voters"]):
        return f"voters {sorted(leader['voters'])} but replicas {hosted} run"
    return None


def replication_problem(by_node: dict[int, dict[str, Any]]) -> str | None:
    """Why one group's replicas may still differ (None: each applied all the leader holds)."""
    problem = membership_problem(by_node)
    if problem is not None:
        return problem
    leader, _ = _leader(by_node)
    applied = {node: e["applied_index"] for node, e in sorted(by_node.items())}
    if any(index != leader["last_index"] for index in applied.values()):
        return f"applied indexes {applied}, the leader's last index {leader['last_index']}"
    return None


def problems(states: GroupStates, check: Check, *, partitions_only: bool = False) -> dict[str, str]:
    """group -> what check finds wrong with it, for the groups that have a problem."""
    found = {}
    for group, by_node in sorted(states.items()):
        if partitions_only and group == METADATA_GROUP:
            continue
        problem = check(by_node)
        if problem is not None:
            found[group] = problem
    return found


def membership_settled(api: BrokerApi) -> str | None:
    """Why the cluster is not ready to lose a disk (None: every group's membership is settled)."""
    states = group_states(api)
    if states is None:
        return "a broker did not answer GET /raft"
    found = problems(states, membership_problem)
    if found:
        group, problem = next(iter(found.items()))
        return f"{len(found)} groups unsettled, e.g. {group}: {problem}"
    return None
