"""A subscribe-mode consumer's membership in a consumer group (raftka's group protocol,
notes/http_api.md): join, heartbeat, and the committed offsets a new assignment starts from.

Requests go through a ``Request`` callable (the client's routed request to the group
coordinator). ``join`` long-polls until the rebalance it takes part in completes;
``heartbeat`` says whether the member may go on, must join again with its member id (a
rebalance is in progress, or its generation is stale), or must join afresh (the
coordinator does not know it: session expired, coordinator moved).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .api import Reply

SESSION_TIMEOUT_MS = 6000  # the coordinator's minimum
REBALANCE_TIMEOUT_MS = 5000
INITIAL_REBALANCE_DELAY_S = 3.0  # the coordinator's group.initial.rebalance.delay.ms
REJOIN_CODES = frozenset({40905, 40906})  # stale generation, rebalance in progress
UNKNOWN_MEMBER = 40403

Request = Callable[..., Reply]  # (method, path, body=None, *, timeout_s) -> Reply


@dataclass(frozen=True, slots=True)
class Membership:
    member_id: str
    generation: int
    partitions: tuple[int, ...]  # the assignment, partitions of the workload's topic


class GroupError(Exception):
    """A group request was answered with an error; ``definite`` when it certainly had no effect."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.describe())
        self.reply = reply
        self.definite = reply.definite_failure


def join_timeout_s() -> float:
    """How long a join may take: the initial delay, the rebalance timeout, a margin."""
    return INITIAL_REBALANCE_DELAY_S + REBALANCE_TIMEOUT_MS / 1000 + 4.0


def join(request: Request, group: str, topic: str, member_id: str | None) -> Membership:
    """Join (or rejoin, with member_id) the group; raises GroupError (or NotDelivered/NoAnswer)."""
    body: dict[str, Any] = {"topics": [topic], "session_timeout_ms": SESSION_TIMEOUT_MS,
                            "rebalance_timeout_ms": REBALANCE_TIMEOUT_MS}
    if member_id is not None:
        body["member_id"] = member_id
    reply = request("POST", f"/groups/{group}/members", body, timeout_s=join_timeout_s())
    doc = reply.doc
    if (reply.status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("member_id"), str)
            or type(doc.get("generation")) is not int or not isinstance(doc.get("assignment"), list)):
        raise GroupError(reply)
    partitions = tuple(sorted(a["partition"] for a in doc["assignment"]
                              if isinstance(a, dict) and a.get("topic") == topic))
    return Membership(doc["member_id"], doc["generation"], partitions)


def heartbeat(request: Request, group: str, member: Membership, timeout_s: float) -> str:
    """"ok", "rejoin" (join again with the member id) or "join" (join afresh); raises GroupError
    for any other answer."""
    reply = request("POST", f"/groups/{group}/heartbeat",
                    {"member_id": member.member_id, "generation": member.generation}, timeout_s=timeout_s)
    if reply.status == 200:
        return "ok"
    if reply.error_code in REJOIN_CODES:
        return "rejoin"
    if reply.error_code == UNKNOWN_MEMBER:
        return "join"
    raise GroupError(reply)


def committed_offsets(request: Request, group: str, topic: str, timeout_s: float) -> tuple[dict[int, int], Reply]:
    """(partition -> committed (next to read) offset of the group, the answer); raises GroupError."""
    reply = request("GET", f"/groups/{group}/offsets?topic={topic}", timeout_s=timeout_s)
    listed = reply.doc.get("offsets") if isinstance(reply.doc, dict) else None
    if reply.status != 200 or not isinstance(listed, list):
        raise GroupError(reply)
    return {o["partition"]: o["offset"] for o in listed
            if isinstance(o, dict) and o.get("topic") == topic
            and type(o.get("partition")) is int and type(o.get("offset")) is int}, reply
