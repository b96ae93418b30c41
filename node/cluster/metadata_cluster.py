"""The elastic cluster's part of the metadata state: the broker registry and replica moves (pure functions).

Each `apply_*` function validates one metadata command deterministically
against the state document and changes it, returning ``{"ok": ...}`` or
``{"error": code, "message": ...}`` (`MetadataStateMachine` dispatches to
them).  What lives here:

* ``state["cluster_id"]``: made once when the cluster bootstraps; never changes.
* ``state["brokers"]["<id>"]``: one dict per broker, so that other features
  can add their own fields — ``incarnation`` and ``retired`` (its data
  directories, see `raftka.raft.replica`), ``http_url``, ``raft_host``,
  ``raft_port``, ``rack``, and ``membership``: ``active``, ``draining`` (a
  decommission is moving its replicas away) or ``decommissioned``.
* ``state["reassignments"]["<topic>/<p>"]``: a replica move of one partition, a
  *job*: ``id``, ``before`` (the replicas when it started), ``target`` (where it
  goes; ``before`` again once cancelled), ``reason``, ``created_ms``,
  ``cancelled`` and ``decommission`` (the broker whose drain made it, if any).
  While a job exists the partition's replica list is the target followed by
  the replicas leaving it, so every broker involved hosts the group; each
  group's leader changes the Raft membership toward the target one step at a
  time (`raftka.node.cluster.membership`), and the metadata leader completes
  the job once the group's voters are the target (`raftka.node.cluster.jobs`).
* ``state["leader_balance"]``: a counter; each increment asks every partition
  leader to hand leadership to its preferred (first) replica.
"""

from __future__ import annotations

from typing import Any

ACTIVE, DRAINING, DECOMMISSIONED = "active", "draining", "decommissioned"

NOT_FOUND = 40401
PARTITION_NOT_FOUND = 40402
BROKER_NOT_FOUND = 40406
REASSIGNMENT_NOT_FOUND = 40411
STALE = 40905
IN_PROGRESS = 40921
UNSAFE = 40922
INVALID_REQUEST = 42206
INVALID_REPLICAS = 42221


def error(code: int, message: str) -> dict:
    return {"error": code, "message": message}


# ------------------------------------------------------------------ queries

def brokers(state: dict) -> dict[str, dict]:
    return state.setdefault("brokers", {})


def broker_entry(state: dict, broker: int) -> dict | None:
    return state.get("brokers", {}).get(str(broker))


def membership_of(state: dict, broker: int) -> str | None:
    """``active``, ``draining``, ``decommissioned``, or None for a broker the registry does not know."""
    entry = broker_entry(state, broker)
    return None if entry is None else entry.get("membership", ACTIVE)


def registered(state: dict) -> list[int]:
    """Every broker the registry knows and that was not decommissioned, sorted."""
    return sorted(int(b) for b, e in state.get("brokers", {}).items() if e.get("membership", ACTIVE) != DECOMMISSIONED)


def active(state: dict) -> list[int]:
    """Brokers that may take new replicas (not draining, not decommissioned), sorted."""
    return sorted(int(b) for b, e in state.get("brokers", {}).items() if e.get("membership", ACTIVE) == ACTIVE)


def reassignments(state: dict) -> dict[str, dict]:
    return state.setdefault("reassignments", {})


def job_of(state: dict, topic: str, partition: int) -> dict | None:
    return state.get("reassignments", {}).get(f"{topic}/{partition}")


def hosting(target: list[int], before: list[int]) -> list[int]:
    """The replica list while a partition moves: the target, then the replicas leaving it."""
    return [*target, *(b for b in before if b not in target)]


def replicas_on(state: dict, broker: int) -> list[tuple[str, int]]:
    """(topic, partition) of every partition whose replica list names `broker`."""
    return [(name, p) for name, topic in state["topics"].items()
            for p, replicas in enumerate(topic["partitions"]) if broker in replicas]


# --------------------------------------------------------------- registry

def apply_bootstrap_cluster(state: dict, cmd: dict) -> dict:
    """The first metadata leader records the cluster id and the brokers it bootstrapped with (once)."""
    if state.get("cluster_id") not in (None, cmd["cluster_id"]):
        return error(STALE, f"The cluster id is {state['cluster_id']} already.")
    state["cluster_id"] = cmd["cluster_id"]
    for broker, addresses in cmd["brokers"].items():
        entry = brokers(state).setdefault(str(broker), {"incarnation": 0, "retired": []})
        for field in ("http_url", "raft_host", "raft_port"):
            entry.setdefault(field, addresses[field])
        entry.setdefault("membership", ACTIVE)
    return {"ok": True}


def apply_register_broker(state: dict, cmd: dict) -> dict:
    """A broker joins (`--join`): new, back after a decommission, or on a new data directory."""
    broker, incarnation = cmd["broker"], cmd["incarnation"]
    entry = brokers(state).get(str(broker))
    if entry is not None and incarnation in entry.get("retired", []):
        return error(INVALID_REQUEST, f"Incarnation {incarnation:08x} of broker {broker} was retired.")
    if entry is None:
        entry = brokers(state)[str(broker)] = {"incarnation": incarnation, "retired": []}
    elif entry["incarnation"] != incarnation:
        entry["retired"] = [*entry.get("retired", []), entry["incarnation"]]
        entry["incarnation"] = incarnation
    entry.update(http_url=cmd["http_url"], raft_host=cmd["raft_host"], raft_port=cmd["raft_port"],
                 rack=cmd.get("rack"), membership=DRAINING if entry.get("membership") == DRAINING else ACTIVE)
    return {"ok": True}


def apply_update_broker(state: dict, cmd: dict) -> dict:
    """A registered broker announced other addresses or another rack (it restarted with new settings)."""
    entry = broker_entry(state, cmd["broker"])
    if entry is None or entry["incarnation"] != cmd["incarnation"]:
        return error(STALE, f"Broker {cmd['broker']} is not registered at incarnation {cmd['incarnation']}.")
    entry.update({k: cmd[k] for k in ("http_url", "raft_host", "raft_port", "rack") if k in cmd})
    return {"ok": True}


# ----------------------------------------------------------------- moves

def _check_move(state: dict, topic: str, partition: int, target: list[int]) -> dict | None:
    """An error for a move the state cannot take (deterministic part of the service's checks), else None."""
    doc = state["topics"].get(topic)
    if doc is None:
        return error(NOT_FOUND, f"Topic '{topic}' not found.")
    if not 0 <= partition < len(doc["partitions"]):
        return error(PARTITION_NOT_FOUND, f"Partition {partition} of topic '{topic}' not found.")
    if job_of(state, topic, partition) is not None:
        return error(IN_PROGRESS, f"Partition {topic}/{partition} is being reassigned already; wait for it or "
                                  "cancel it first.")
    if not target or len(set(target)) != len(target):
        return error(INVALID_REPLICAS, f"Replicas {target} of {topic}/{partition} must be distinct brokers.")
    for b in target:
        if membership_of(state, b) is None:
            return error(INVALID_REPLICAS, f"Broker {b} is not a member of this cluster.")
        if membership_of(state, b) != ACTIVE and b not in doc["partitions"][partition]:
            return error(INVALID_REPLICAS, f"Broker {b} is {membership_of(state, b)}: it takes no new replicas.")
    return None


def _start_moves(state: dict, moves: list[dict], reason: str, now_ms: int, decommission: int | None) -> list[dict]:
    jobs = []
    for move in moves:
        topic, p, target = move["topic"], move["partition"], list(move["target"])
        doc = state["topics"][topic]
        before = list(doc["partitions"][p])
        if sorted(before) == sorted(target):
            doc["partitions"][p] = target  # the same brokers in another order: only the preferred leader changes
            continue
        job_id = state.get("next_job_id", 1)
        state["next_job_id"] = job_id + 1
        job = {"id": job_id, "topic": topic, "partition": p, "before": before, "target": target, "reason": reason,
               "created_ms": now_ms, "cancelled": False, "decommission": decommission}
        reassignments(state)[f"{topic}/{p}"] = job
        doc["partitions"][p] = hosting(target, before)
        jobs.append(job)
    return jobs


def _check_moves(state: dict, moves: list[dict]) -> dict | None:
    seen = set()
    for move in moves:
        key = (move["topic"], move["partition"])
        if key in seen:
            return error(INVALID_REQUEST, f"Partition {key[0]}/{key[1]} is moved twice in one request.")
        seen.add(key)
        problem = _check_move(state, move["topic"], move["partition"], list(move["target"]))
        if problem is not None:
            return problem
    return None


def apply_start_reassignments(state: dict, cmd: dict) -> dict:
    """Start moving partitions (all of them or none): `moves` = [{topic, partition, target}]."""
    problem = _check_moves(state, cmd["moves"])
    if problem is not None:
        return problem
    jobs = _start_moves(state, cmd["moves"], cmd["reason"], cmd["now_ms"], None)
    return {"ok": True, "jobs": [j["id"] for j in jobs]}


def apply_set_replication_factor(state: dict, cmd: dict) -> dict:
    """A topic's replication factor changes: every partition is moved to a replica list of the new size."""
    topic = state["topics"].get(cmd["name"])
    if topic is None:
        return error(NOT_FOUND, f"Topic '{cmd['name']}' not found.")
    problem = _check_moves(state, cmd["moves"])
    if problem is not None:
        return problem
    topic["replication_factor"] = cmd["factor"]
    jobs = _start_moves(state, cmd["moves"], f"replication factor {cmd['factor']}", cmd["now_ms"], None)
    return {"ok": True, "jobs": [j["id"] for j in jobs]}


def apply_cancel_reassignment(state: dict, cmd: dict) -> dict:
    """Go back to the replicas the move started from (through the same steps)."""
    job = job_of(state, cmd["topic"], cmd["partition"])
    if job is None:
        return error(REASSIGNMENT_NOT_FOUND, f"Partition {cmd['topic']}/{cmd['partition']} is not being reassigned.")
    if job["cancelled"]:
        return {"ok": True, "job": job["id"]}
    leaving = job["target"]
    job.update(target=list(job["before"]), cancelled=True)
    state["topics"][cmd["topic"]]["partitions"][cmd["partition"]] = hosting(job["before"], leaving)
    return {"ok": True, "job": job["id"]}


def apply_complete_reassignment(state: dict, cmd: dict) -> dict:
    """The metadata leader saw the group's voters equal the target: the move is done."""
    job = job_of(state, cmd["topic"], cmd["partition"])
    if job is None or job["id"] != cmd["id"] or job["target"] != cmd["target"]:
        return error(STALE, f"Reassignment {cmd['id']} of {cmd['topic']}/{cmd['partition']} is not current.")
    topic = state["topics"][cmd["topic"]]
    topic["partitions"][cmd["partition"]] = list(job["target"])
    if "members" in topic:
        topic["members"][cmd["partition"]] = list(cmd["members"])  # what a replica created from now on joins
    del reassignments(state)[f"{cmd['topic']}/{cmd['partition']}"]
    return {"ok": True}


def apply_reorder_replicas(state: dict, cmd: dict) -> dict:
    """New preferred leaders: the same replicas in another order (no data moves)."""
    for change in cmd["changes"]:
        topic = state["topics"].get(change["topic"])
        if topic is None or not 0 <= change["partition"] < len(topic["partitions"]):
            return error(NOT_FOUND, f"Partition {change['topic']}/{change['partition']} not found.")
        if sorted(topic["partitions"][change["partition"]]) != sorted(change["replicas"]) or \
                job_of(state, change["topic"], change["partition"]) is not None:
            return error(STALE, f"Partition {change['topic']}/{change['partition']} changed meanwhile.")
    for change in cmd["changes"]:
        state["topics"][change["topic"]]["partitions"][change["partition"]] = list(change["replicas"])
    return {"ok": True}


def apply_balance_leaders(state: dict, cmd: dict) -> dict:
    state["leader_balance"] = state.get("leader_balance", 0) + 1
    return {"ok": True, "epoch": state["leader_balance"]}


# ----------------------------------------------------------- decommission

def apply_decommission_broker(state: dict, cmd: dict) -> dict:
    """Start draining a broker: it takes no new replicas, and each of its replicas moves (`moves`)."""
    broker = cmd["broker"]
    status = membership_of(state, broker)
    if status is None:
        return error(BROKER_NOT_FOUND, f"Broker {broker} is not a member of this cluster.")
    if status != ACTIVE:
        return error(IN_PROGRESS if status == DRAINING else INVALID_REQUEST, f"Broker {broker} is {status} already.")
    if len(active(state)) <= 1:
        return error(UNSAFE, f"Broker {broker} is the last active broker.")
    problem = _check_moves(state, cmd["moves"])
    if problem is not None:
        return problem
    moved = {(m["topic"], m["partition"]) for m in cmd["moves"]}
    for topic, p in replicas_on(state, broker):
        if (topic, p) not in moved or broker in next(m["target"] for m in cmd["moves"]
                                                    if (m["topic"], m["partition"]) == (topic, p)):
            return error(UNSAFE, f"Partition {topic}/{p} would keep a replica on broker {broker}.")
    broker_entry(state, broker)["membership"] = DRAINING
    broker_entry(state, broker)["drain"] = {"started_ms": cmd["now_ms"], "partitions": len(moved)}
    jobs = _start_moves(state, cmd["moves"], f"decommission of broker {broker}", cmd["now_ms"], broker)
    return {"ok": True, "jobs": [j["id"] for j in jobs]}


def apply_recommission_broker(state: dict, cmd: dict) -> dict:
    """Stop an unfinished drain: the broker is active again; moves its drain started and that are still
    running go back to where they started (finished ones stay)."""
    broker = cmd["broker"]
    status = membership_of(state, broker)
    if status is None:
        return error(BROKER_NOT_FOUND, f"Broker {broker} is not a member of this cluster.")
    if status != DRAINING:
        return error(INVALID_REQUEST, f"Broker {broker} is {status}: only a draining broker can be recommissioned.")
    entry = broker_entry(state, broker)
    entry["membership"] = ACTIVE
    entry.pop("drain", None)
    for job in list(reassignments(state).values()):
        if job["decommission"] == broker:
            apply_cancel_reassignment(state, {"topic": job["topic"], "partition": job["partition"]})
    return {"ok": True}


def apply_finish_decommission(state: dict, cmd: dict) -> dict:
    """The drain is over: no replica lists name the broker any more (its metadata seat moved too)."""
    broker = cmd["broker"]
    if membership_of(state, broker) != DRAINING:
        return error(STALE, f"Broker {broker} is not draining.")
    if replicas_on(state, broker):
        return error(STALE, f"Broker {broker} still hosts replicas.")
    entry = broker_entry(state, broker)
    entry["membership"] = DECOMMISSIONED
    entry.pop("drain", None)
    return {"ok": True}


OPS: dict[str, Any] = {
    "bootstrap_cluster": apply_bootstrap_cluster,
    "register_broker": apply_register_broker,
    "update_broker": apply_update_broker,
    "start_reassignments": apply_start_reassignments,
    "set_replication_factor": apply_set_replication_factor,
    "cancel_reassignment": apply_cancel_reassignment,
    "complete_reassignment": apply_complete_reassignment,
    "reorder_replicas": apply_reorder_replicas,
    "balance_leaders": apply_balance_leaders,
    "decommission_broker": apply_decommission_broker,
    "recommission_broker": apply_recommission_broker,
    "finish_decommission": apply_finish_decommission,
}

__all__ = ["ACTIVE", "DECOMMISSIONED", "DRAINING", "OPS", "active", "broker_entry", "brokers", "hosting", "job_of",
           "membership_of", "reassignments", "registered", "replicas_on"]
