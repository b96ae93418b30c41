"""Rich tables and record formatting for the ``raftka`` CLI (presentation only, no I/O besides printing)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from raftka.client.admin import ClusterDescription, GroupDescription, GroupSummary, RaftStatus, TopicDescription
from raftka.client.structs import ConsumerRecord

__all__ = [
    "format_record",
    "render_cluster",
    "render_group",
    "render_groups",
    "render_raft",
    "render_topic",
    "render_topics",
]


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def render_topics(console: Console, overview: dict[str, tuple[int, int]]) -> None:
    if not overview:
        console.print("No topics. Create one with: raftka topics create NAME --partitions N")
        return
    table = Table("Topic", "Partitions", "Replication")
    for name, (partitions, replication) in overview.items():
        table.add_row(name, str(partitions), str(replication))
    console.print(table)


def render_topic(console: Console, topic: TopicDescription) -> None:
    console.print(
        f"[bold]{topic.name}[/bold]: {len(topic.partitions)} partition(s), "
        f"replication factor {topic.replication_factor}"
    )
    if topic.configs:
        configs = Table("Config", "Value")
        for key, value in sorted(topic.configs.items()):
            configs.add_row(key, str(value))
        console.print(configs)
    table = Table("Partition", "Leader", "Replicas", "In sync", "Log start", "High watermark")
    for p in topic.partitions:
        table.add_row(
            str(p.partition),
            _dash(p.leader) if p.leader is not None else "[red]none[/red]",
            ",".join(map(str, p.replicas)),
            "?" if p.in_sync is None else ",".join(map(str, p.in_sync)),
            _dash(p.log_start_offset),
            _dash(p.high_watermark),
        )
    console.print(table)


def render_groups(console: Console, groups: list[GroupSummary]) -> None:
    if not groups:
        console.print("No consumer groups.")
        return
    table = Table("Group", "State", "Generation", "Members")
    for g in groups:
        table.add_row(g.group, g.state, _dash(g.generation), str(g.members))
    console.print(table)


def render_group(console: Console, group: GroupDescription) -> None:
    console.print(
        f"[bold]{group.group}[/bold]: state {group.state}, generation {_dash(group.generation)}, "
        f"{len(group.members)} member(s), total lag {group.total_lag}"
    )
    members = Table("Member", "Assigned partitions")
    for m in group.members:
        assigned = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(m.assignment)) or "(idle)"
        members.add_row(m.member_id, assigned)
    if group.members:
        console.print(members)
    offsets = Table("Topic", "Partition", "Committed", "End", "Lag")
    for o in group.offsets:
        offsets.add_row(o.topic, str(o.partition), str(o.offset), _dash(o.end_offset), _dash(o.lag))
    if group.offsets:
        console.print(offsets)
    else:
        console.print("No committed offsets.")


def render_cluster(console: Console, cluster: ClusterDescription, raft: list[RaftStatus]) -> None:
    """Brokers; "Alive" is the broker's own report if it gives one, else whether it answered GET /raft."""
    answered = {status.broker: status.error is None for status in raft}
    table = Table("Broker", "URL", "Alive", "Role", "Partitions led")
    for b in cluster.brokers:
        alive = b.alive if b.alive is not None else answered.get(b.id)
        alive = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "?"}[alive]
        role = "metadata leader" if b.id == cluster.metadata_leader else ""
        table.add_row(str(b.id), _dash(b.url), alive, role, str(cluster.partitions_led.get(b.id, 0)))
    console.print(table)
    if cluster.metadata_leader is None:
        console.print("[red]No metadata leader: the cluster has no quorum right now.[/red]")
    if cluster.leaderless:
        console.print(f"[red]{cluster.leaderless} partition(s) have no leader.[/red]")


_BROKER_MASK = (1 << 31) - 1  # a Raft replica id is incarnation << 31 | broker id


def _broker(replica: object) -> object:
    """The broker of a replica id as /raft reports it (a later incarnation of a broker is still that broker)."""
    try:
        return int(replica) & _BROKER_MASK
    except (TypeError, ValueError):
        return replica


def _group_order(name: str) -> tuple:
    if name == "metadata":
        return (0, "", 0)
    topic, _, partition = name.rpartition("/")
    return (1, topic, int(partition)) if partition.isdigit() else (2, name, 0)


def render_raft(console: Console, statuses: list[RaftStatus]) -> None:
    """One row per Raft group, named by its topic and partition (or "(metadata)"), as its leader (the replica
    claiming leadership in the highest term) reports it: term, commit index, and each follower's lag."""
    groups: dict[str, dict | None] = {}
    for status in statuses:
        for g in status.groups if status.error is None else ():
            name = g.get("partition") or ("metadata" if g.get("group") == "__metadata" else str(g.get("group")))
            best = groups.get(name)
            if g.get("role") == "leader" and (best is None or g.get("term", 0) > best.get("term", 0)):
                groups[name] = g
            else:
                groups.setdefault(name, None)
    table = Table("Topic", "Partition", "Leader", "Term", "Commit", "Follower lag",
                  title="Raft groups, as their leaders report them")
    table.columns[0].overflow = "ellipsis"  # a topic name too long for the terminal is cut, not folded
    for column in table.columns[1:]:  # only the topic column gives way on a narrow terminal
        column.no_wrap = True
    for name in sorted(groups, key=_group_order):
        topic, _, partition = ("(metadata)", "", "") if name == "metadata" else name.rpartition("/")
        lead = groups[name]
        if lead is None:
            table.add_row(topic, partition, "[red]none[/red]", "", "", "")
            continue
        followers = lead.get("followers") or {}
        lag = " ".join(f"{_broker(r)}:{(f or {}).get('lag', '?')}"
                       for r, f in sorted(followers.items(), key=lambda item: str(_broker(item[0]))))
        table.add_row(topic, partition, _dash(_broker(lead.get("leader"))), _dash(lead.get("term")),
                      _dash(lead.get("commit_index")), lag)
    console.print(table)
    for status in statuses:
        if status.error is not None:
            console.print(f"[red]Broker {status.broker} did not report its Raft state: {status.error}[/red]")


def _text(data: bytes | None) -> Any:
    """UTF-8 text, or {"base64": ...} for bytes that are not UTF-8 (JSON output)."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def format_record(record: ConsumerRecord, fmt: str, key_sep: str | None) -> str:
    """One output line for a consumed record: JSON object, or the value as text (``key_sep``: key first)."""
    if fmt == "json":
        return orjson.dumps(
            {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp": record.timestamp,
                "key": _text(record.key),
                "value": _text(record.value),
                "headers": [{"key": k, "value": _text(v)} for k, v in record.headers],
            }
        ).decode()
    value = "" if record.value is None else record.value.decode("utf-8", "replace")
    if key_sep is None:
        return value
    key = "" if record.key is None else record.key.decode("utf-8", "replace")
    return f"{key}{key_sep}{value}"
