"""After a run: the brokers' own evidence for the checker (check_cluster.py formats).

* ``wait_replicas_converged``: while the brokers still run, wait until every
  partition group's members are the replicas that run (a broker back from a
  disk loss has replaced its old replica), each has applied all the leader
  holds (``GET /raft``, see raft_state.py), and nothing changes any more, so
  that comparing replica logs afterwards is fair.
* ``read_replicas``: once the brokers are stopped, every replica's partition
  log read from its data directory with ``raftka.storage.PartitionLog``, from
  a copy (the evidence is never touched), from its log start to its log end:
  a partition log holds only applied, hence committed, batches, so its end
  is that replica's high watermark. Values are decoded from their JSON
  encoding (the workload sends JSON integers).
* ``leader_observations``: every ``raft group G: leader is replica L in term
  T`` line of every broker's log (``raftka.raft.host``), with the observing
  broker; partition groups (``<topic id>/<p>``) are named ``<topic>/<p>``; the
  leader is a broker id (its first incarnation) or ``"<broker>.<incarnation>"``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from raftka.node.cluster.topics import topic_directory_label
from raftka.storage import PartitionLog

from . import raft_state
from .api import BrokerApi
from .check_cluster import LeaderObservation, ReplicaLogs
from .client import scalar_value

LEADER_LINE = re.compile(r"raft group (\S+): leader is (?:broker|replica) (\d+(?:\.[0-9a-f]+)?) in term (\d+)")
READ_CHUNK_RECORDS = 10_000


def wait_replicas_converged(api: BrokerApi, timeout_s: float, poll_s: float = 0.5) -> dict[str, Any]:
    """Until every partition group's replication is settled (raft_state.replication_problem: one
    leader, no learner, every voter running as that replica, each replica applied all the leader
    holds) and the same in two samples poll_s apart (a produce still pending somewhere may commit
    late: the view must be stable). Returns {"converged": bool, "waited_s": s, "problems":
    group -> what is still unsettled (None: some broker did not answer)}."""
    started = time.monotonic()
    previous = None
    while True:
        states = raft_state.group_states(api)
        found = None if states is None else raft_state.problems(states, raft_state.replication_problem,
                                                                 partitions_only=True)
        view = None if states is None else {
            group: {node: (e["id"], e["applied_index"]) for node, e in by_node.items()}
            for group, by_node in states.items() if group != raft_state.METADATA_GROUP}
        waited = round(time.monotonic() - started, 3)
        if found == {} and view == previous:
            return {"converged": True, "waited_s": waited, "problems": found}
        if waited > timeout_s:
            return {"converged": False, "waited_s": waited, "problems": found}
        previous = view
        time.sleep(poll_s)


def _partition_dirs(data_dir: Path) -> Iterator[tuple[str, int, str, Path]]:
    """(topic, partition, topic id, directory) of each partition a broker hosts
    (directories are named ``<topic label>-<partition>-<topic id>``, see ``partition_directory_name``; topics may
    contain '-'). The topic is given as its label (the name itself unless longer than 200 characters)."""
    root = data_dir / "partitions"
    if not root.is_dir():
        return
    for d in sorted(root.iterdir()):
        parts = d.name.rsplit("-", 2)
        if len(parts) == 3 and parts[1].isdigit():
            yield parts[0], int(parts[1]), parts[2], d


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return scalar_value(orjson.loads(value))
    except orjson.JSONDecodeError:
        return value.decode(errors="replace")


def read_log(log_dir: Path) -> list[list]:
    """[[offset, value], ...] of one partition log, read from a copy of its directory."""
    with tempfile.TemporaryDirectory(prefix="raftka-replica-") as tmp:
        copy = Path(tmp) / "log"
        shutil.copytree(log_dir, copy)
        with PartitionLog.open(copy) as log:
            out, offset, end = [], log.log_start_offset, log.log_end_offset
            while offset < end:
                records = log.read_records(offset, max_records=READ_CHUNK_RECORDS, max_bytes=64 << 20)
                if not records:
                    break
                out.extend([r.offset, _decode(r.value)] for r in records)
                offset = records[-1].offset + 1
    return out


def read_replicas(data_dirs: dict[int, Path], topic: str) -> ReplicaLogs:
    """node -> "topic/p" -> [[offset, value], ...] for every replica of topic (brokers stopped)."""
    replicas: ReplicaLogs = {}
    for node, data_dir in sorted(data_dirs.items()):
        logs = replicas.setdefault(str(node), {})
        for label, partition, _, directory in _partition_dirs(data_dir):
            if label == topic_directory_label(topic) and (directory / "log").is_dir():
                logs[f"{topic}/{partition}"] = read_log(directory / "log")
    return replicas


def topic_names(data_dirs: dict[int, Path]) -> dict[str, str]:
    """topic id -> topic label (the name itself unless longer than 200 characters), from the partition directories."""
    return {topic_id: name for d in data_dirs.values() for name, _, topic_id, _ in _partition_dirs(d)}


def leader_observations(logs: dict[int, Path], names: dict[str, str]) -> list[LeaderObservation]:
    """Every leader announcement in the broker logs (node -> log path)."""
    observations = []
    for node, path in sorted(logs.items()):
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        for match in LEADER_LINE.finditer(text):
            group, leader, term = match.group(1), match.group(2), int(match.group(3))
            leader = int(leader) if leader.isdigit() else leader
            topic_id, sep, partition = group.rpartition("/")
            if sep and topic_id in names:
                group = f"{names[topic_id]}/{partition}"
            observations.append(LeaderObservation(group, term, leader, observer=node))
    return observations
