"""The cluster metadata state machine, replicated by the metadata Raft group.

State: topics (id, replica assignment, configs, the replica ids a
partition's Raft group bootstraps a new replica with, and whether its
partitions' logs are their Raft logs: `log_is_raft_log`, set on topics created
since; every replica of an older topic, also one added later, keeps a separate
journal, so that a group's replicas agree on which entries hold records), the producer-id
counter, consumer groups (generation, committed offsets), the client
listeners each broker registered (`register_listener`: its advertised Kafka
address), and the elastic cluster's part (`metadata_cluster`): the cluster
id, the broker registry (each broker's HTTP and Raft addresses, rack,
membership and registered incarnation — its data directory's, see
`raftka.raft.replica`; 0 unless the broker joined later or came back with an
empty disk) and the replica moves in progress; and users and ACLs
(`raftka.node.security.state`).  Commands are small orjson documents with an
"op"; `apply` validates them deterministically (every replica reaches the same
verdict) and returns `{"ok": ...}` or `{"error": code, "message": ...}` —
client mistakes are results, never exceptions.

Checkpoint = the whole state as one JSON file written atomically: the document
is taken on the event loop, written and fsynced in a worker thread
(`begin_checkpoint`); the snapshot stream to a lagging replica is that same
document in one chunk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import orjson

from raftka.node.cluster import metadata_cluster
from raftka.node.security.state import SECURITY_OPS
from raftka.raft import canary
from raftka.raft.replica import replica_id
from raftka.storage import atomic_write

METADATA_GROUP = "__metadata"  # the metadata Raft group's name; every other Raft group is a partition's
CHECKPOINT_FILE = "metadata.json"

TOPIC_EXISTS = 40904
TOPIC_NOT_FOUND = 40401
STALE_GENERATION = 40905
INVALID_REQUEST = 42206
INVALID_PARTITIONS = 42209


def command(op: str, **fields: Any) -> bytes:
    return orjson.dumps({"op": op, **fields})


def partition_key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


class MetadataStateMachine:
    def __init__(self, directory: str, on_change: Callable[[str, dict], None] | None = None):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, CHECKPOINT_FILE)
        self.on_change = on_change
        try:
            with open(self.path, "rb") as f:
                doc = orjson.loads(f.read())
        except FileNotFoundError:
            doc = {"applied_index": 0, "applied_term": 0, "state": self._empty()}
        self.applied_index = doc["applied_index"]
        self.applied_term = doc["applied_term"]
        self.state: dict = doc["state"]
        self._staged: dict | None = None
        self._checkpoint_io = threading.Lock()  # a checkpoint's job (worker thread) vs. a snapshot install
        self._installs = 0  # snapshot installs so far (see begin_checkpoint)

    @staticmethod
    def _empty() -> dict:
        return {"topics": {}, "next_producer_id": 1000, "groups": {}, "listeners": {}}

    # -------------------------------------------------------------- queries

    @property
    def topics(self) -> dict[str, dict]:
        return self.state["topics"]

    def incarnation(self, broker: int) -> int:
        """The registered incarnation of a broker's data directory (0: the one it bootstrapped with)."""
        return self.state.get("brokers", {}).get(str(broker), {}).get("incarnation", 0)

    def retired(self, broker: int, incarnation: int) -> bool:
        """Was `incarnation` of this broker replaced by a later one (its replicas are lost for good)?"""
        return incarnation in self.state.get("brokers", {}).get(str(broker), {}).get("retired", [])

    def replica(self, broker: int) -> int:
        """The replica id a new or changing Raft group should give this broker now."""
        return replica_id(broker, self.incarnation(broker))

    def initial_members(self, topic: dict, partition: int) -> list[int]:
        """Replica ids of the partition's Raft group when it was created (its bootstrap membership)."""
        members = topic.get("members")
        if members is not None and partition < len(members):
            return members[partition]
        return list(topic["partitions"][partition])  # created before incarnations: all at incarnation 0

    @property
    def cluster_id(self) -> str | None:
        return self.state.get("cluster_id")

    def brokers(self) -> dict[int, dict]:
        """The broker registry: id -> entry (see `metadata_cluster`)."""
        return {int(b): e for b, e in self.state.get("brokers", {}).items()}

    def membership_of(self, broker: int) -> str | None:
        return metadata_cluster.membership_of(self.state, broker)

    def active_brokers(self) -> list[int]:
        return metadata_cluster.active(self.state)

    def registered_brokers(self) -> list[int]:
        return metadata_cluster.registered(self.state)

    def reassignments(self) -> dict[str, dict]:
        return self.state.get("reassignments", {})

    def reassignment(self, topic: str, partition: int) -> dict | None:
        return metadata_cluster.job_of(self.state, topic, partition)

    def goal(self, topic: str, partition: int) -> list[int]:
        """The replicas the partition should end up with: a move's target, else its replica list."""
        job = self.reassignment(topic, partition)
        return list(job["target"]) if job is not None else list(self.state["topics"][topic]["partitions"][partition])

    @property
    def leader_balance_epoch(self) -> int:
        return self.state.get("leader_balance", 0)

    def topic(self, name: str) -> dict | None:
        return self.state["topics"].get(name)

    def group(self, name: str) -> dict | None:
        return self.state["groups"].get(name)

    def listener(self, broker_id: int, name: str) -> str | None:
        """The address broker `broker_id` registered for listener `name` ("kafka"), or None."""
        return self.state.get("listeners", {}).get(str(broker_id), {}).get(name)

    # ---------------------------------------------------------------- apply

    def apply(self, index: int, term: int, data: bytes) -> dict:
        self.applied_index, self.applied_term = index, term
        if not data:
            return {"ok": True}
        try:
            cmd = orjson.loads(data)
            handler = self._ops[cmd["op"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return {"error": INVALID_REQUEST, "message": "malformed metadata command"}
        result = handler(self, cmd)
        if "error" not in result and self.on_change is not None and cmd["op"] in self._topic_ops:
            self.on_change(cmd["op"], cmd)
        return result

    def _create_topic(self, cmd: dict) -> dict:
        name = cmd["name"]
        if name in self.state["topics"]:
            return {"error": TOPIC_EXISTS, "message": f"Topic '{name}' already exists."}
        topic = {"id": cmd["id"], "partitions": cmd["assignment"], "configs": cmd["configs"],
                 "replication_factor": len(cmd["assignment"][0]),
                 "members": [[self.replica(b) for b in replicas] for replicas in cmd["assignment"]]}
        if cmd.get("log_is_raft_log"):  # its partitions' logs are their Raft logs; older topics keep journals
            topic["log_is_raft_log"] = True
        self.state["topics"][name] = topic
        return {"ok": True}

    def _delete_topic(self, cmd: dict) -> dict:
        name = cmd["name"]
        if self.state["topics"].pop(name, None) is None:
            return {"error": TOPIC_NOT_FOUND, "message": f"Topic '{name}' not found."}
        moves = self.state.get("reassignments", {})
        for key in [k for k, job in moves.items() if job["topic"] == name]:
            del moves[key]
        prefix = name + "/"
        for group in self.state["groups"].values():
            for key in [k for k in group["offsets"] if k.startswith(prefix)]:
                del group["offsets"][key]
        return {"ok": True}

    def _add_partitions(self, cmd: dict) -> dict:
        topic = self.state["topics"].get(cmd["name"])
        if topic is None:
            return {"error": TOPIC_NOT_FOUND, "message": f"Topic '{cmd['name']}' not found."}
        if cmd["from_count"] != len(topic["partitions"]):
            return {"error": INVALID_PARTITIONS,
                    "message": f"Topic '{cmd['name']}' has {len(topic['partitions'])} partitions, not {cmd['from_count']}."}
        topic["partitions"].extend(cmd["assignment"])
        if "members" in topic:
            topic["members"].extend([self.replica(b) for b in replicas] for replicas in cmd["assignment"])
        return {"ok": True}

    def _alter_configs(self, cmd: dict) -> dict:
        topic = self.state["topics"].get(cmd["name"])
        if topic is None:
            return {"error": TOPIC_NOT_FOUND, "message": f"Topic '{cmd['name']}' not found."}
        topic["configs"] = cmd["configs"]
        return {"ok": True}

    def _allocate_producer_id(self, cmd: dict) -> dict:
        pid = self.state["next_producer_id"]
        self.state["next_producer_id"] = pid + 1
        return {"ok": True, "producer_id": pid}

    def _group_generation(self, cmd: dict) -> dict:
        group = self.state["groups"].setdefault(cmd["group"], {"generation": 0, "offsets": {}})
        if cmd["generation"] <= group["generation"]:
            return {"error": STALE_GENERATION,
                    "message": f"Group '{cmd['group']}' is at generation {group['generation']} already."}
        group["generation"] = cmd["generation"]
        group["members"] = list(cmd.get("members", []))
        group["protocol_type"] = cmd.get("protocol_type")
        return {"ok": True}

    def _commit_offsets(self, cmd: dict) -> dict:
        group = self.state["groups"].setdefault(cmd["group"], {"generation": 0, "offsets": {}})
        generation, member, members = cmd.get("generation"), cmd.get("member"), group.get("members", [])
        if generation is not None and generation != group["generation"]:
            return {"error": STALE_GENERATION,
                    "message": f"Commit for generation {generation} of group '{cmd['group']}' rejected: "
                               f"the group is at generation {group['generation']}; rejoin the group."}
        if generation is not None and member is not None and members and member not in members:
            return {"error": STALE_GENERATION,
                    "message": f"Member '{member}' is not in generation {generation} of group '{cmd['group']}'."}
        if generation is None and members:
            return {"error": STALE_GENERATION,
                    "message": f"Group '{cmd['group']}' has active members (generation {group['generation']}); "
                               "commits must carry member_id and generation."}
        for key, offset in cmd["offsets"].items():
            topic, _, _ = key.rpartition("/")
            if topic not in self.state["topics"]:
                return {"error": TOPIC_NOT_FOUND, "message": f"Topic '{topic}' not found."}
        offsets = group["offsets"]
        if cmd.get("reset") or canary.enabled("commit-offset-lww"):
            offsets.update(cmd["offsets"])
        else:
            # Grow-only per partition: a late or duplicated commit never moves a group back.
            # An explicit seek-and-commit (reset=True) may.
            for key, offset in cmd["offsets"].items():
                offsets[key] = max(offset, offsets.get(key, offset))
        return {"ok": True}

    def _delete_group(self, cmd: dict) -> dict:
        self.state["groups"].pop(cmd["group"], None)
        return {"ok": True}

    def _register_incarnation(self, cmd: dict) -> dict:
        """Broker `broker` now runs on a new data directory: its old replicas are lost for good."""
        broker, previous = cmd["broker"], self.incarnation(cmd["broker"])
        if cmd["previous"] != previous:
            return {"error": STALE_GENERATION,
                    "message": f"Broker {broker} is registered at incarnation {previous}, not {cmd['previous']}."}
        if cmd["incarnation"] == previous or self.retired(broker, cmd["incarnation"]):
            return {"error": INVALID_REQUEST, "message": f"Incarnation {cmd['incarnation']} of broker {broker} "
                                                         "is current or retired."}
        entry = self.state.setdefault("brokers", {}).setdefault(str(broker), {"incarnation": 0, "retired": []})
        entry["retired"] = [*entry.get("retired", []), previous]
        entry["incarnation"] = cmd["incarnation"]
        return {"ok": True}

    def _register_listener(self, cmd: dict) -> dict:
        broker, name, address = cmd["broker"], cmd["name"], cmd["address"]
        if type(broker) is not int or type(name) is not str or type(address) is not str:
            return {"error": INVALID_REQUEST, "message": "register_listener needs broker (int), name and address"}
        self.state.setdefault("listeners", {}).setdefault(str(broker), {})[name] = address
        return {"ok": True}

    _ops = {
        "create_topic": _create_topic,
        "delete_topic": _delete_topic,
        "add_partitions": _add_partitions,
        "alter_configs": _alter_configs,
        "allocate_producer_id": _allocate_producer_id,
        "group_generation": _group_generation,
        "commit_offsets": _commit_offsets,
        "delete_group": _delete_group,
        "register_incarnation": _register_incarnation,
        "register_listener": _register_listener,
        **{op: (lambda fn: lambda self, cmd: fn(self.state, cmd))(fn) for op, fn in metadata_cluster.OPS.items()},
        **SECURITY_OPS,  # users and ACLs (raftka.node.security.state)
    }
    # ops after which brokers look again at what they host and who their peers are
    _topic_ops = frozenset({"create_topic", "delete_topic", "add_partitions", "alter_configs", "register_incarnation",
                            *metadata_cluster.OPS})

    # ----------------------------------------------------------- durability

    def _document(self) -> bytes:
        return orjson.dumps({"applied_index": self.applied_index, "applied_term": self.applied_term,
                             "state": self.state})

    def checkpoint(self) -> int:
        index, job = self.begin_checkpoint()
        job()
        return index

    def begin_checkpoint(self) -> tuple[int, Callable[[], None]]:
        """(applied index, the job writing the state as it is now): the job's write and fsyncs may run in a
        worker thread while entries are applied meanwhile."""
        index, document, installs = self.applied_index, self._document(), self._installs

        def job() -> None:
            with self._checkpoint_io:
                if installs == self._installs:  # else a snapshot install replaced the state: its checkpoint is newer
                    atomic_write(self.path, document)
        return index, job

    def close(self) -> None:
        pass

    def reopen(self) -> None:
        """After a storage failure: nothing to do, the state lives in memory and `apply` never writes."""

    # -------------------------------------------------------------- snapshot

    def begin_install(self) -> bytes:
        self._staged = None
        return b""

    def read_chunk(self, cursor: bytes) -> tuple[bytes, bool, int]:
        return self._document(), True, self.applied_index

    def install_chunk(self, data: bytes) -> bytes:
        self._staged = orjson.loads(data)
        return b""

    def finish_install(self, index: int, term: int) -> bool:
        staged, self._staged = self._staged, None
        if staged is None or staged["applied_index"] != index:
            return False
        self.state = staged["state"]
        self.applied_index, self.applied_term = index, term
        with self._checkpoint_io:
            self._installs += 1  # a checkpoint taken before, still in flight, must not overwrite this one's
            atomic_write(self.path, self._document())
        if self.on_change is not None:
            self.on_change("snapshot", {})
        return True
