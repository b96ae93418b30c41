"""The elastic cluster's CLI commands: brokers, decommission, rebalance, reassignments, replication factors.

`register` adds them to the ``raftka cluster`` and ``raftka topics`` groups of
`raftka.client.cli`.  Long jobs show a progress bar with ``--wait``: bytes copied of the
bytes to copy, and how many partitions are still moving.
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from raftka.client.admin_cluster import BrokerInfo, Decommission, Reassignment
from raftka.client.blocking import Admin
from raftka.client.cli_common import admin_client, stdout


def parse_broker_list(text: str) -> list[int]:
    """``"2,3,4"`` -> ``[2, 3, 4]`` (BadParameter otherwise)."""
    try:
        brokers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected broker ids like 2,3,4, got {text!r}", param_hint="--replicas") from None
    if not brokers:
        raise click.BadParameter("give at least one broker id", param_hint="--replicas")
    return brokers


def render_brokers(console: Console, brokers: list[BrokerInfo]) -> None:
    table = Table("Broker", "URL", "Rack", "Alive", "Membership", "Metadata", "Replicas", "Leaders")
    for b in brokers:
        alive = "[green]yes[/green]" if b.alive else "[red]no[/red]"
        membership = {"active": b.membership, "draining": "[yellow]draining[/yellow]"}.get(b.membership,
                                                                                          f"[dim]{b.membership}[/dim]")
        table.add_row(str(b.id), b.url or "-", b.rack or "-", alive, membership, b.metadata_role, str(b.replicas),
                      str(b.leaders))
    console.print(table)


def render_reassignments(console: Console, moves: list[Reassignment]) -> None:
    if not moves:
        console.print("No reassignments in progress.")
        return
    table = Table("Partition", "State", "Replicas", "Copied", "Reason")
    for r in moves:
        state = f"[red]stuck[/red]: {r.stuck_reason}" if r.state == "stuck" else r.state
        copied = f"{r.bytes_copied * 100 // r.bytes_total}%" if r.bytes_total else "-"
        table.add_row(f"{r.topic}/{r.partition}", state,
                      f"{','.join(map(str, r.before))} -> {','.join(map(str, r.target))}", copied, r.reason)
    console.print(table)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console, transient=False)


def _wait_moves(admin: Admin, console: Console, partitions: list[tuple[str, int]] | None, what: str) -> None:
    stuck_seen: set[tuple[str, int]] = set()
    with _progress(console) as bar:
        task = bar.add_task(what, total=None, note="")

        def show(moving: list[Reassignment]) -> None:
            total = sum(r.bytes_total for r in moving)
            copied = sum(r.bytes_copied for r in moving)
            bar.update(task, total=total or None, completed=copied,
                       note=f"{len(moving)} partition(s) moving" if moving else "done")
            for r in moving:
                if r.state == "stuck" and (r.topic, r.partition) not in stuck_seen:
                    stuck_seen.add((r.topic, r.partition))
                    console.print(f"[red]{r.topic}/{r.partition} is stuck:[/red] {r.stuck_reason}")

        admin.wait_reassignments(partitions, progress=show)


def register(topics: click.Group, cluster: click.Group) -> None:
    """Add the commands to the ``topics`` and ``cluster`` groups."""

    @cluster.command("brokers")
    @click.pass_context
    def cluster_brokers(ctx: click.Context) -> None:
        """Every broker: address, rack, alive, membership, metadata role, replicas and leaders."""
        with admin_client(ctx) as admin:
            render_brokers(stdout(), admin.describe_brokers())

    @cluster.command("reassignments")
    @click.pass_context
    def cluster_reassignments(ctx: click.Context) -> None:
        """Replica moves in progress, with their state and how much is copied."""
        with admin_client(ctx) as admin:
            render_reassignments(stdout(), admin.list_reassignments())

    @cluster.command("decommission")
    @click.argument("broker_id", type=click.IntRange(min=1))
    @click.option("--wait", is_flag=True, help="Show progress until the broker is drained.")
    @click.pass_context
    def cluster_decommission(ctx: click.Context, broker_id: int, wait: bool) -> None:
        """Move every replica (and a metadata voter seat) off BROKER_ID, keeping replication factors."""
        console = stdout()
        with admin_client(ctx) as admin:
            status = admin.decommission_broker(broker_id)
            console.print(f"Decommissioning broker {broker_id}: {status.partitions_remaining} partition(s) to move.")
            if wait:
                status = _wait_drain(admin, console, broker_id)
        if wait and status.done:
            console.print(f"Broker {broker_id} is decommissioned: it holds nothing; shut it down.")
        elif wait:
            console.print(f"Broker {broker_id} is {status.membership} (the drain was stopped).")

    @cluster.command("recommission")
    @click.argument("broker_id", type=click.IntRange(min=1))
    @click.pass_context
    def cluster_recommission(ctx: click.Context, broker_id: int) -> None:
        """Stop an unfinished decommission: BROKER_ID is active again; its moves still running go back."""
        with admin_client(ctx) as admin:
            status = admin.recommission_broker(broker_id)
        stdout().print(f"Broker {broker_id} is {status.membership} again.")

    @cluster.command("rebalance")
    @click.option("--dry-run", is_flag=True, help="Only show the plan.")
    @click.option("--wait", is_flag=True, help="Wait for the moves, then move leadership to preferred replicas.")
    @click.pass_context
    def cluster_rebalance(ctx: click.Context, dry_run: bool, wait: bool) -> None:
        """Spread replicas and preferred leaders evenly over the live brokers (racks respected)."""
        console = stdout()
        with admin_client(ctx) as admin:
            plan = admin.rebalance(dry_run=dry_run)
            table = Table("Broker", "Rack", "Replicas", "Preferred leaders")
            for b in plan.brokers:
                table.add_row(str(b["id"]), b.get("rack") or "-", f"{b['replicas_before']} -> {b['replicas_after']}",
                              f"{b['preferred_leaders_before']} -> {b['preferred_leaders_after']}")
            console.print(table)
            moving = [c for c in plan.changes if c["moves_data"]]
            verb = "would move" if dry_run else "moving"
            console.print(f"{verb} {len(moving)} partition(s); {len(plan.changes) - len(moving)} only change their "
                          "preferred leader.")
            if wait and not dry_run:
                _wait_moves(admin, console, [(c["topic"], c["partition"]) for c in moving], "rebalancing")
                transfers = admin.balance_leaders()
                console.print(f"Asked {len(transfers)} partition leader(s) to hand over to their preferred replica.")

    @cluster.command("balance-leaders")
    @click.pass_context
    def cluster_balance_leaders(ctx: click.Context) -> None:
        """Move each partition's leadership to its preferred (first) replica."""
        with admin_client(ctx) as admin:
            transfers = admin.balance_leaders()
        stdout().print(f"Asked {len(transfers)} partition leader(s) to hand over to their preferred replica.")

    @topics.command("reassign")
    @click.argument("topic")
    @click.option("--partition", "-p", type=click.IntRange(min=0), required=True)
    @click.option("--replicas", help="New replica list, preferred leader first: 2,3,4.")
    @click.option("--cancel", is_flag=True, help="Cancel the move in progress (back to the replicas it had).")
    @click.option("--wait", is_flag=True, help="Show progress until the move is done.")
    @click.pass_context
    def topics_reassign(ctx: click.Context, topic: str, partition: int, replicas: str | None, cancel: bool,
                        wait: bool) -> None:
        """Move one partition of TOPIC to other brokers (or cancel such a move)."""
        if cancel == (replicas is not None):
            raise click.UsageError("give either --replicas or --cancel")
        console = stdout()
        with admin_client(ctx) as admin:
            if cancel:
                move = admin.cancel_reassignment(topic, partition)
                console.print(f"Cancelling the move of {topic}/{partition}: back to {list(move.target)}.")
            else:
                move = admin.reassign_partition(topic, partition, parse_broker_list(replicas))
                if move.done:
                    console.print(f"{topic}/{partition}: nothing to copy (replicas {list(move.target)}).")
                    return
                console.print(f"Moving {topic}/{partition}: {list(move.before)} -> {list(move.target)}.")
            if wait:
                _wait_moves(admin, console, [(topic, partition)], f"{topic}/{partition}")
                console.print(f"{topic}/{partition} moved.")


def _wait_drain(admin: Admin, console: Console, broker_id: int) -> Decommission:
    with _progress(console) as bar:
        task = bar.add_task(f"draining broker {broker_id}", total=None, note="")
        stuck_seen: set[tuple[str, int]] = set()

        def show(status: Decommission) -> None:
            bar.update(task, total=status.bytes_total or None, completed=status.bytes_copied,
                       note=f"{status.partitions_remaining} of {status.partitions_total or 0} partition(s) left"
                            + (", metadata seat" if status.metadata_voter else ""))
            for r in status.reassignments:
                if r.state == "stuck" and (r.topic, r.partition) not in stuck_seen:
                    stuck_seen.add((r.topic, r.partition))
                    console.print(f"[red]{r.topic}/{r.partition} is stuck:[/red] {r.stuck_reason}")

        return admin.wait_decommission(broker_id, progress=show)


def wait_replication_factor(admin: Admin, console: Console, topic: str, moves: list[Reassignment]) -> None:
    """Used by ``raftka topics alter --replication-factor N --wait``."""
    _wait_moves(admin, console, [(m.topic, m.partition) for m in moves], f"{topic} replication")
