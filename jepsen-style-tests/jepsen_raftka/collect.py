"""After a run: the brokers' own evidence for the checker (check_cluster.py formats).

* ``wait_replicas_converged``: while the brokers still run, wait until every
  replica of every partition group has applied the same index (``GET /raft``),
  and nothing changes any more, so that comparing replica logs afterwards is fair.
* ``read_replicas``: once the brokers are stopped, every replica's partition
  log read from its data directory with ``raftka.storage.PartitionLog``, from
  a copy (the evidence is never touched), from its log start to its log end:
  a partition log holds only applied, hence committed, batches, so its end
  is that replica's high watermark. Values are decoded from their JSON
  encoding (the workload sends JSON integers).
* ``leader_observations``: every ``raft group G: leader is broker L in term
  T`` line of every broker's log (``raftka.raft.host``), with the observing
  broker; partition groups (``<topic id>/<p>``) are named ``<topic>/<p>``.
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

from .api import BrokerApi, NoAnswer, NotDelivered
from .check_cluster import LeaderObservation, ReplicaLogs
from .client import scalar_value

METADATA_GROUP = "__metadata"
LEADER_LINE = re.compile(r"raft group (\S+): leader is broker (\d+) in term (\d+)")
READ_CHUNK_RECORDS = 10_000


def _applied(api: BrokerApi, timeout_s: float) -> dict[str, dict[int, int]] | None:
    """group -> node -> applied index of every partition group; None if a broker did not answer."""
    applied: dict[str, dict[int, int]] = {}
    for node in api.nodes:
        try:
            reply = api.request(node, "GET", "/raft", timeout_s=timeout_s)
        except (NotDelivered, NoAnswer):
            return None
        if reply.status != 200 or not isinstance(reply.doc, dict):
            return None
        for group in reply.doc.get("groups", []):
            if group.get("group") != METADATA_GROUP:
                applied.setdefault(group["group"], {})[node] = group["applied_index"]
    return applied


def wait_replicas_converged(api: BrokerApi, timeout_s: float, poll_s: float = 0.5) -> dict[str, Any]:
    """Until every partition group's replicas report the same applied index in two samples
    poll_s apart (a produce still pending somewhere may commit late: the view must be stable).
    Returns {"converged": bool, "waited_s": s, "lagging": group -> node -> applied index of the
    groups whose replicas differ (None: some broker did not answer)}."""
    started = time.monotonic()
    previous = None
    while True:
        applied = _applied(api, timeout_s=2.0)
        lagging = None if applied is None else {
            group: by_node for group, by_node in applied.items() if len(set(by_node.values())) > 1}
        waited = round(time.monotonic() - started, 3)
        if lagging == {} and applied == previous:
            return {"converged": True, "waited_s": waited, "lagging": lagging}
        if waited > timeout_s:
            return {"converged": False, "waited_s": waited, "lagging": lagging}
        previous = applied
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
            group, leader, term = match.group(1), int(match.group(2)), int(match.group(3))
            topic_id, sep, partition = group.rpartition("/")
            if sep and topic_id in names:
                group = f"{names[topic_id]}/{partition}"
            observations.append(LeaderObservation(group, term, leader, observer=node))
    return observations
