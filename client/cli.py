"""The ``raftka`` command line: topics, produce, consume, groups, cluster status, dev cluster.

``--bootstrap`` (or ``RAFTKA_BOOTSTRAP``; default http://127.0.0.1:9091) is a
comma-separated list of broker URLs; any one reachable broker is enough. For a
secured cluster: ``--user``/``--password`` (``RAFTKA_USER``/``RAFTKA_PASSWORD``;
the password is asked for when only the user is given), ``--ca-file``
(``RAFTKA_CA_FILE``) to trust the brokers' certificates, ``--cert-file``/
``--key-file`` for a client certificate. Users and ACLs: ``raftka users``,
``raftka acl`` (`cli_security`). Growing and shrinking the cluster: ``raftka cluster
brokers|decommission|rebalance|…`` and ``topics alter --replication-factor`` (`cli_cluster`).
Client errors are reported in one readable paragraph (which addresses were
tried when the cluster cannot be reached; similar topic names when a topic
does not exist) with exit status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import signal
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import orjson
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from raftka.client.blocking import Admin, Consumer, Producer
from raftka.client.cli_cluster import register as register_cluster_commands, wait_replication_factor
from raftka.client.cli_common import ErrorsGroup, Settings, admin_client, explain, stderr, stdout
from raftka.client.cli_render import (
    format_record,
    render_cluster,
    render_group,
    render_groups,
    render_raft,
    render_topic,
    render_topics,
)
from raftka.client.cli_security import acl, users
from raftka.client.connection import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP
from raftka.client.errors import RaftkaError, TopicNotFoundError
from raftka.client.structs import TopicPartition

__all__ = ["encode_key", "main", "parse_configs", "split_key"]

KEY_FORMATS = ("string", "json", "base64")


def parse_configs(values: tuple[str, ...]) -> dict[str, str]:
    """``("retention.ms=1000", ...)`` -> ``{"retention.ms": "1000"}`` (BadParameter on a missing '=')."""
    configs = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--config")
        configs[name.strip()] = value.strip()
    return configs


def split_key(line: bytes, key_sep: bytes | None, line_number: int) -> tuple[bytes | None, bytes]:
    """(key, value) of an input line: with a separator the key is what precedes its first occurrence."""
    if key_sep is None:
        return None, line
    key, sep, value = line.partition(key_sep)
    if not sep:
        raise click.ClickException(f"line {line_number} has no key separator {key_sep.decode()!r}: {line[:80]!r}")
    return key, value


def encode_key(key: bytes, key_format: str, line_number: int) -> bytes:
    """The key bytes to store (and hash to pick the partition), as the REST Proxy would store them:
    ``string``: the text itself (UTF-8); ``json``: the text is a JSON value, stored as compact JSON (the json
    embedded format: ``"user-1"`` keeps its quotes); ``base64``: the decoded bytes (the binary embedded format)."""
    if key_format == "json":
        try:
            return orjson.dumps(orjson.loads(key))
        except orjson.JSONDecodeError as exc:
            raise click.ClickException(
                f"line {line_number}: the key {key[:80]!r} is not JSON ({exc}); with --key-format json a string "
                'key is written in quotes, e.g. "user-1"') from None
    if key_format == "base64":
        try:
            return base64.b64decode(key, validate=True)
        except binascii.Error as exc:
            raise click.ClickException(f"line {line_number}: the key {key[:80]!r} is not base64 ({exc})") from None
    return key


def _require_topic(admin: Admin, topic: str) -> int:
    """Number of partitions of an existing topic (TopicNotFoundError with suggestions otherwise)."""
    overview = admin.topics_overview()
    if topic not in overview:
        near = difflib.get_close_matches(topic, list(overview), n=3, cutoff=0.6)
        raise TopicNotFoundError(f"Topic '{topic}' not found.", details={"topic": topic, "suggestions": near})
    return overview[topic][0]


@click.group(cls=ErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--bootstrap",
    "-b",
    envvar=BOOTSTRAP_ENV,
    default=DEFAULT_BOOTSTRAP,
    show_default=True,
    help=f"Comma-separated broker URLs (env {BOOTSTRAP_ENV}).",
)
@click.option("--user", "-u", envvar="RAFTKA_USER",
              help="User name for a cluster with authentication (env RAFTKA_USER).")
@click.option("--password", envvar="RAFTKA_PASSWORD",
              help="Password (env RAFTKA_PASSWORD; asked for when only --user is given).")
@click.option("--ca-file", envvar="RAFTKA_CA_FILE", type=click.Path(exists=True, dir_okay=False),
              help="CA certificate the brokers' TLS certificates chain to (env RAFTKA_CA_FILE).")
@click.option("--cert-file", envvar="RAFTKA_CERT_FILE", type=click.Path(exists=True, dir_okay=False),
              help="Client certificate for mutual TLS (env RAFTKA_CERT_FILE).")
@click.option("--key-file", envvar="RAFTKA_KEY_FILE", type=click.Path(exists=True, dir_okay=False),
              help="Key of --cert-file (env RAFTKA_KEY_FILE).")
@click.pass_context
def main(ctx: click.Context, bootstrap: str, user: str | None, password: str | None, ca_file: str | None,
         cert_file: str | None, key_file: str | None) -> None:
    """raftka: a Kafka-style distributed log replicated with Raft."""
    if user is not None and password is None and ctx.invoked_subcommand != "dev":
        password = click.prompt(f"Password for {user}", hide_input=True, err=True)
    ctx.obj = Settings(bootstrap, {"username": user, "password": password, "ssl_cafile": ca_file,
                                    "ssl_certfile": cert_file, "ssl_keyfile": key_file})


# -- topics ------------------------------------------------------------------------------


@main.group(cls=ErrorsGroup)
def topics() -> None:
    """Create, list, describe, alter and delete topics."""


@topics.command("create")
@click.argument("name")
@click.option("--partitions", "-p", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--replication-factor", "-r", type=click.IntRange(min=1), help="Default: min(3, brokers).")
@click.option("--config", "-c", "configs", multiple=True, metavar="NAME=VALUE", help="Topic config; repeatable.")
@click.pass_context
def topics_create(ctx: click.Context, name: str, partitions: int, replication_factor: int | None, configs: tuple[str, ...]) -> None:
    """Create topic NAME."""
    parsed = parse_configs(configs)
    with admin_client(ctx) as admin:
        created = admin.create_topic(name, partitions, replication_factor, parsed)
    rf = created.get("replication_factor", replication_factor)
    stdout().print(f"Created topic {name} ({partitions} partition(s), replication factor {rf}).")


@topics.command("list")
@click.pass_context
def topics_list(ctx: click.Context) -> None:
    """List topics with partition counts."""
    with admin_client(ctx) as admin:
        render_topics(stdout(), admin.topics_overview())


@topics.command("describe")
@click.argument("name")
@click.pass_context
def topics_describe(ctx: click.Context, name: str) -> None:
    """Show configs, leaders, replicas and offsets of topic NAME."""
    with admin_client(ctx) as admin:
        render_topic(stdout(), admin.describe_topic(name))


@topics.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def topics_delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete topic NAME and all its records."""
    if not yes:
        click.confirm(f"Delete topic {name} and all its records?", abort=True)
    with admin_client(ctx) as admin:
        admin.delete_topic(name)
    stdout().print(f"Deleted topic {name}.")


@topics.command("alter")
@click.argument("name")
@click.option("--partitions", "-p", type=click.IntRange(min=1), help="New total partition count (grow only).")
@click.option("--config", "-c", "configs", multiple=True, metavar="NAME=VALUE", help="Config to set; repeatable.")
@click.option("--replication-factor", "-r", type=click.IntRange(min=1),
              help="New replication factor (replicas are added or removed by reassignments).")
@click.option("--wait", is_flag=True, help="With --replication-factor: show progress until the moves are done.")
@click.pass_context
def topics_alter(ctx: click.Context, name: str, partitions: int | None, configs: tuple[str, ...],
                 replication_factor: int | None, wait: bool) -> None:
    """Add partitions to topic NAME, change its configs or its replication factor."""
    parsed = parse_configs(configs)
    if partitions is None and not parsed and replication_factor is None:
        raise click.UsageError("nothing to alter: give --partitions, --config and/or --replication-factor")
    console = stdout()
    with admin_client(ctx) as admin:
        if partitions is not None:
            admin.add_partitions(name, partitions)
        if parsed:
            admin.alter_configs(name, parsed)
        if replication_factor is not None:
            moves = admin.alter_replication_factor(name, replication_factor)
            console.print(f"Replication factor of {name} -> {replication_factor}: {len(moves)} partition(s) moving.")
            if wait and moves:
                wait_replication_factor(admin, console, name, moves)
    console.print(f"Altered topic {name}.")


@topics.command("delete-records")
@click.argument("name")
@click.option("--partition", "-p", type=click.IntRange(min=0), required=True, help="Partition number.")
@click.option("--before", "before_offset", type=click.IntRange(min=-1), required=True,
              help="Delete the records before this offset (-1: every record committed so far).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def topics_delete_records(ctx: click.Context, name: str, partition: int, before_offset: int, yes: bool) -> None:
    """Delete the oldest records of one partition of topic NAME (Kafka's DeleteRecords)."""
    if not yes:
        what = "every record" if before_offset == -1 else f"the records before offset {before_offset}"
        click.confirm(f"Delete {what} of {name} partition {partition}?", abort=True)
    with admin_client(ctx) as admin:
        start = admin.delete_records(name, partition, before_offset)
    stdout().print(f"Partition {partition} of {name} now begins at offset {start}.")


# -- produce / consume ---------------------------------------------------------------------


def _lines(stream: IO[bytes], progress: Progress | None, task: Any) -> Iterator[bytes]:
    for raw in stream:
        if progress is not None:
            progress.advance(task, len(raw))
        yield raw.rstrip(b"\r\n")


@main.command()
@click.argument("topic")
@click.option("--file", "-f", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Read lines from a file instead of stdin.")
@click.option("--key-sep", "-k", help="Each line is KEY<SEP>VALUE (split at the first separator).")
@click.option("--key-format", type=click.Choice(KEY_FORMATS), default="string", show_default=True,
              help="How the key text becomes the key bytes (which also pick the partition): string = as typed; "
                   'json = a JSON value, stored as JSON like the REST Proxy\'s json format ("user-1" with quotes); '
                   "base64 = decoded, like its binary format.")
@click.option("--partition", "-p", type=click.IntRange(min=0), help="Send every record to this partition.")
@click.option("--header", "-H", "headers", multiple=True, metavar="NAME=VALUE", help="Header added to every record; repeatable.")
@click.option("--linger-ms", type=click.IntRange(min=0), default=5, show_default=True)
@click.pass_context
def produce(
    ctx: click.Context,
    topic: str,
    path: Path | None,
    key_sep: str | None,
    key_format: str,
    partition: int | None,
    headers: tuple[str, ...],
    linger_ms: int,
) -> None:
    """Produce one record per input line to TOPIC (empty lines are skipped).

    A keyed record goes to the partition of murmur2 of its key bytes (as with Kafka's Java client and the REST
    Proxy), so the same key bytes always land on the same partition, whichever tool sent them."""
    if key_sep == "":
        raise click.BadParameter("must not be empty", param_hint="--key-sep")
    if key_format != "string" and key_sep is None:
        raise click.BadParameter("needs --key-sep (the lines have no keys otherwise)", param_hint="--key-format")
    header_list = [(k, v.encode()) for k, v in parse_configs(headers).items()]
    sep = key_sep.encode() if key_sep is not None else None
    settings = ctx.find_object(Settings)
    with admin_client(ctx) as admin:
        _require_topic(admin, topic)
    err_console = stderr()
    sent = failed = 0
    first_error: BaseException | None = None
    unconfirmed: deque[Any] = deque()  # futures in send order; they complete roughly in that order

    def settle(everything: bool) -> None:
        nonlocal failed, first_error
        while unconfirmed and (everything or unconfirmed[0].done()):
            error = unconfirmed.popleft().exception()
            if error is not None:
                failed += 1
                first_error = first_error or error

    with Producer(settings.bootstrap, linger_ms=linger_ms, **settings.security) as producer:
        progress: Progress | None = None
        stream: IO[bytes]
        if path is not None:
            stream = path.open("rb")
            progress = Progress(
                TextColumn("[bold]producing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            progress.start()
            task = progress.add_task("produce", total=path.stat().st_size)
        else:
            stream, task = sys.stdin.buffer, None
        try:
            for number, line in enumerate(_lines(stream, progress, task), start=1):
                if not line:
                    continue
                key, value = split_key(line, sep, number)
                if key is not None:
                    key = encode_key(key, key_format, number)
                unconfirmed.append(producer.send(topic, value, key=key, headers=header_list, partition=partition))
                sent += 1
                settle(everything=False)
            producer.flush()
            settle(everything=True)
        finally:
            if progress is not None:
                progress.stop()
            if path is not None:
                stream.close()
    if failed:
        reason = explain(first_error) if isinstance(first_error, RaftkaError) else first_error
        raise click.ClickException(f"{failed} of {sent} record(s) failed; first error: {reason}")
    err_console.print(f"Produced {sent} record(s) to {topic}.")


@main.command()
@click.argument("topic")
@click.option("--group", "-g", help="Consume as a member of this consumer group (commits offsets).")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset when nothing is committed.")
@click.option("--max", "-n", "max_records", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--key-sep", help="Text format: print KEY<SEP>VALUE.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop after this many seconds without a record.")
@click.pass_context
def consume(
    ctx: click.Context,
    topic: str,
    group: str | None,
    from_beginning: bool,
    max_records: int | None,
    fmt: str,
    key_sep: str | None,
    timeout: float | None,
) -> None:
    """Print records of TOPIC as they arrive (Ctrl-C to stop)."""
    settings = ctx.find_object(Settings)
    with admin_client(ctx) as admin:
        partitions = _require_topic(admin, topic)
    consumer = Consumer(
        group_id=group,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest" if from_beginning else "latest",
        consumer_timeout_ms=None if timeout is None else int(timeout * 1000),
        **settings.security,
    )
    if group is not None:
        consumer.subscribe([topic])
    else:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    count = 0
    out = sys.stdout
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C: commit and leave cleanly
    try:
        for record in consumer:
            out.write(format_record(record, fmt, key_sep) + "\n")
            count += 1
            if max_records is not None and count >= max_records:
                break
        out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        consumer.close()
    stderr().print(f"Consumed {count} record(s).")


# -- groups / cluster ----------------------------------------------------------------------


@main.group(cls=ErrorsGroup)
def groups() -> None:
    """Inspect consumer groups."""


@groups.command("list")
@click.pass_context
def groups_list(ctx: click.Context) -> None:
    """List consumer groups."""
    with admin_client(ctx) as admin:
        render_groups(stdout(), admin.list_groups())


@groups.command("describe")
@click.argument("group")
@click.pass_context
def groups_describe(ctx: click.Context, group: str) -> None:
    """Members, assignment, committed offsets and lag of GROUP."""
    with admin_client(ctx) as admin:
        render_group(stdout(), admin.describe_group(group))


@main.group(cls=ErrorsGroup)
def cluster() -> None:
    """Inspect the cluster, and change its shape: decommission brokers, rebalance."""


@cluster.command("status")
@click.pass_context
def cluster_status(ctx: click.Context) -> None:
    """Brokers, partition leadership and the Raft state of every group on every broker."""
    console = stdout()
    with admin_client(ctx) as admin:
        cluster_description, raft = admin.describe_cluster(), admin.raft_status()
    render_cluster(console, cluster_description, raft)
    render_raft(console, raft)


@cluster.command("replace-disk")
@click.argument("broker_id", type=click.IntRange(min=1))
@click.pass_context
def cluster_replace_disk(ctx: click.Context, broker_id: int) -> None:
    """Make BROKER_ID's current data directory replace its old one in every group.

    A broker that comes back with an empty data directory is replaced automatically; this is for when the
    cluster heard two directories under one id and will not choose (stop the wrong one first)."""
    with admin_client(ctx) as admin:
        doc = admin.replace_broker_disk(broker_id)
    stdout().print(f"Broker {doc['broker']}: incarnation {doc['incarnation']} replaces {doc['previous_incarnation']};"
                    " every group now swaps in its new replicas.")


register_cluster_commands(topics, cluster)


@main.command()
@click.option("--brokers", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".raftka-data"), show_default=True)
@click.option("--base-port", type=click.IntRange(1, 55_000), default=9091, show_default=True,
              help="HTTP port of broker 1 (broker N listens on base+N-1, Raft on base+100+N-1, "
                   "Kafka on base+10000+N-1).")
@click.option("--tls", is_flag=True, help="TLS with a throwaway CA, authentication required, an admin user.")
def dev(brokers: int, data_dir: Path, base_port: int, tls: bool) -> None:
    """Run a local cluster in the foreground (Ctrl-C stops it)."""
    try:
        from raftka.client.devcluster import run_dev
    except ImportError as exc:
        raise click.ClickException(f"`raftka dev` is not available in this installation: {exc}") from exc
    run_dev(brokers, str(data_dir), base_port=base_port, tls=tls)


main.add_command(users)
main.add_command(acl)

if __name__ == "__main__":  # pragma: no cover - `python -m raftka.client.cli`
    sys.exit(main())
