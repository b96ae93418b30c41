"""Broker configuration: command line > RAFTKA_* environment > TOML file > defaults -> BrokerConfig.

Every setting has a flag, an environment variable ``RAFTKA_<FLAG_IN_CAPS>``
(``--cluster-secret`` -> ``RAFTKA_CLUSTER_SECRET``; an empty variable counts as
unset) and a key in the TOML file given by ``--config``/``RAFTKA_CONFIG``
(the flag name without dashes, ``data-dir`` or ``data_dir``; ``peers`` may
also be a table ``{1 = "host:http_port:raft_port", ...}``). Unknown TOML
keys are errors, so typos do not pass silently.

``--peers 1=h1:8080:9090,2=h2:8080:9090,3=h3:8080:9090`` lists every broker,
this one included, by the addresses the others use to reach it; IPv6 hosts go
in brackets (``1=[::1]:8080:9090``). Without ``--peers`` the broker forms a
single-broker cluster whose only peer is itself at its listen addresses.
``--listen``/``--raft-listen`` are what this broker binds; they default to its
own peer entry (port 0, "any free port", is allowed there for tests).

``--join http://HOST:PORT`` instead of ``--peers`` adds this broker to a running
cluster through any live broker of it (same cluster secret): the broker
registers itself (id, incarnation, advertised addresses, ``--rack``) in the
metadata group and learns the other brokers' addresses from there. Its
advertised host is ``--advertised-host``, by default the ``--listen`` host
(or this machine's host name when that is a wildcard such as 0.0.0.0).
``--peers`` is only needed to bootstrap the first brokers; once a cluster has
formed, the brokers' addresses come from its metadata.

``--metadata-voters`` caps the metadata group's voters (``auto``: 3, or 5 once
the cluster has 5 brokers); the other brokers follow the metadata log as
learners. ``--reassignment-max-bytes-per-sec`` limits the catch-up traffic a
broker sends to replicas being added by a reassignment (0: unlimited).

The cluster secret (``--cluster-secret``, or ``--cluster-secret-file`` whose
surrounding whitespace is stripped) authenticates and encrypts Raft traffic.
Prefer the file or the environment: flags show up in ``ps``. A cluster of two
or more brokers refuses to start without one, and a secret must be at least 16
bytes. For the secret, the highest-precedence source that sets either form
wins; giving both forms in one source is an error. The secret is never
printed (``repr(BrokerConfig)`` hides it).

Client security (`raftka.node.security.settings`): ``--auth required|none``
(default: none when the client listeners bind only to loopback, else
required), ``--superusers``, ``--bootstrap-user-file`` (its users are created on
the cluster's first start and are superusers), ``--metrics-auth``, and TLS with
``--tls-cert``/``--tls-key`` (checked at start), ``--tls-client-ca`` (mutual
TLS) and ``--tls-ca`` (the peers' CA). With TLS the peers' URLs are https.

``load_config`` raises ``ConfigError`` whose message names the flag, where the
value came from and what is wrong with it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from raftka.node.cluster.topics import MAX_PARTITIONS, TopicConfig, parse_topic_configs, validate_replication_factor
from raftka.node.errors import ApiError
from raftka.node.security.acl import AclError, parse_principal
from raftka.node.security.settings import AUTH_MODES, DEFAULT_LOGIN_FAILURE_LIMIT, SecurityConfig, TlsFiles, \
    read_bootstrap_users
from raftka.node.security.tls import BrokerTls

__all__ = [
    "DEFAULT_ELECTION_TIMEOUT_MS",
    "DEFAULT_HEARTBEAT_MS",
    "DEFAULT_LISTEN",
    "DEFAULT_LOG_LEVEL",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PARTITIONS",
    "DEFAULT_RAFT_LISTEN",
    "MIN_SECRET_BYTES",
    "Address",
    "BrokerConfig",
    "ConfigError",
    "Peer",
    "build_parser",
    "load_config",
]

MIN_SECRET_BYTES = 16
DEFAULT_LISTEN = "127.0.0.1:8080"  # single-broker mode only; with --peers the own entry is the default
DEFAULT_RAFT_LISTEN = "127.0.0.1:9090"
DEFAULT_ELECTION_TIMEOUT_MS = 800
DEFAULT_HEARTBEAT_MS = 100
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_PARTITIONS = 1
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_REASSIGNMENT_BYTES_PER_SEC = 100 * 1024 * 1024
DEFAULT_INLINE_FSYNC_MAX_US = 1000
DEFAULT_LEADER_FSYNC_DELAY_MS = 50
MAX_METADATA_VOTERS = 7
_TOPIC_DEFAULTS = TopicConfig()
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)


class ConfigError(Exception):
    """The broker cannot start with this configuration; the message says why."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{_bracketed(self.host)}:{self.port}"


@dataclass(frozen=True)
class Peer:
    """A broker of the cluster as the others reach it."""

    broker_id: int
    host: str
    http_port: int
    raft_port: int
    scheme: str = "http"  # https when the brokers serve TLS

    @property
    def http_url(self) -> str:
        return f"{self.scheme}://{_bracketed(self.host)}:{self.http_port}"

    @property
    def raft_address(self) -> tuple[str, int]:
        return self.host, self.raft_port


@dataclass(frozen=True)
class BrokerConfig:
    broker_id: int
    data_dir: Path
    listen: Address  # HTTP API bind address
    raft_listen: Address  # Raft transport bind address (one port for all groups)
    peers: tuple[Peer, ...]  # every broker including this one, sorted by id
    cluster_secret: bytes | None = field(repr=False)
    election_timeout_ms: int  # base election timeout: a dead leader's first successor stands this long after it
    heartbeat_ms: int
    max_request_bytes: int  # HTTP request body limit
    default_partitions: int
    default_replication_factor: int
    topic_defaults: TopicConfig  # configs of new topics unless the create request overrides them
    log_level: str
    stop_when_fd_closes: int | None = None  # an inherited pipe's read end: stop when its writer (the parent) dies
    kafka_listen: Address | None = None  # Kafka wire protocol bind address; None: no Kafka listener
    kafka_advertise: Address | None = None  # what Kafka clients are told to connect to (default: kafka_listen)
    # low-disk watermark: below it partition replicas stop and produce gets 507; None = auto
    # (1 GiB or 5 % of the data dir's filesystem, whichever is smaller; raftka.raft.storage_health)
    min_free_bytes: int | None = None
    join: str | None = None  # URLs (comma-separated) of live brokers of the cluster to join (None: --peers)
    rack: str | None = None
    metadata_voters: int | None = None  # None: auto (3, or 5 from 5 brokers up)
    reassignment_max_bytes_per_sec: int = DEFAULT_REASSIGNMENT_BYTES_PER_SEC  # 0: unlimited
    inline_fsync_max_us: int = DEFAULT_INLINE_FSYNC_MAX_US  # a lone fsync this fast runs on the loop (0: never)
    leader_fsync_delay_ms: int = DEFAULT_LEADER_FSYNC_DELAY_MS  # while followers commit alone (0: fsync at once)
    security: SecurityConfig = SecurityConfig()  # TLS, authentication, superusers (raftka.node.security.settings)

    @property
    def self_peer(self) -> Peer:
        return self.peer(self.broker_id)

    def peer(self, broker_id: int) -> Peer:
        for peer in self.peers:
            if peer.broker_id == broker_id:
                return peer
        raise KeyError(broker_id)

    @property
    def join_urls(self) -> list[str]:
        """The --join URLs; one given without a scheme gets this broker's own (https when it serves TLS)."""
        urls = self.join.split(",") if self.join else []
        return [u if "://" in u else f"{self.security.scheme}://{u}" for u in urls]

    @property
    def peer_ids(self) -> tuple[int, ...]:
        return tuple(peer.broker_id for peer in self.peers)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# --- value parsers (raw value -> typed value, ValueError with the reason) -----------------


def _parse_int(low: int, high: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if type(raw) is int:
            number = raw
        elif isinstance(raw, str) and re.fullmatch(r"\s*-?[0-9]+\s*", raw):
            number = int(raw)
        else:
            raise ValueError("not an integer")
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return parse


def _parse_str(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {type(raw).__name__}")
    return raw


def _parse_topic_value(raw: Any) -> int | str:
    """Checked later against the topic config rules (raftka.node.cluster.topics)."""
    if type(raw) is not int and not isinstance(raw, str):
        raise ValueError("not an integer")
    return raw


def _parse_host(host: str) -> str:
    if not host:
        raise ValueError("the host is missing (use 0.0.0.0 or [::] to listen on all interfaces)")
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(f"'{host}' is not an IPv6 address") from None
    if ":" in host:
        raise ValueError("IPv6 addresses need brackets, e.g. [::1]:8080")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"'{host}' is not an IPv4 address") from None
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"'{host}' is not a valid host name or address")
    return host


def _parse_port(text: str, allow_zero: bool) -> int:
    low = 0 if allow_zero else 1
    if not text.isdecimal() or not low <= int(text) <= 65535:
        raise ValueError(f"port '{text}' must be a number from {low} to 65535")
    return int(text)


def _parse_address(raw: Any) -> Address:
    text = _parse_str(raw).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("expected HOST:PORT")
    return Address(_parse_host(host), _parse_port(port, allow_zero=True))


def _parse_peer_entry(broker_id: int, spec: str) -> Peer:
    parts = spec.strip().rsplit(":", 2)
    if len(parts) != 3:
        raise ValueError(f"broker {broker_id}: expected HOST:HTTP_PORT:RAFT_PORT, got '{spec}'")
    host, http_port, raft_port = parts
    try:
        return Peer(broker_id, _parse_host(host), _parse_port(http_port, False), _parse_port(raft_port, False))
    except ValueError as exc:
        raise ValueError(f"broker {broker_id}: {exc}") from None


_parse_broker_id = _parse_int(1, 2**31 - 1)


def _parse_peers(raw: Any) -> tuple[Peer, ...]:
    if isinstance(raw, Mapping):
        entries = [(str(key), value) for key, value in raw.items()]
    else:
        entries = []
        for item in _parse_str(raw).split(","):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"expected ID=HOST:HTTP_PORT:RAFT_PORT, got '{item.strip()}'")
            entries.append((key, value))
    if not entries:
        raise ValueError("no brokers listed")
    peers = []
    for key, value in entries:
        try:
            broker_id = _parse_broker_id(key)
        except ValueError as exc:
            raise ValueError(f"broker id '{key.strip()}' {exc}") from None
        peers.append(_parse_peer_entry(broker_id, _parse_str(value)))
    seen_ids: set[int] = set()
    seen_endpoints: dict[tuple[str, int], int] = {}
    for peer in peers:
        if peer.broker_id in seen_ids:
            raise ValueError(f"broker id {peer.broker_id} is listed twice")
        seen_ids.add(peer.broker_id)
        for port in (peer.http_port, peer.raft_port):
            endpoint = (peer.host.lower(), port)
            if endpoint in seen_endpoints:
                other = seen_endpoints[endpoint]
                whom = "itself" if other == peer.broker_id else f"broker {other}"
                raise ValueError(f"broker {peer.broker_id} uses {_bracketed(peer.host)}:{port}, already used by {whom}")
            seen_endpoints[endpoint] = peer.broker_id
    return tuple(sorted(peers, key=lambda p: p.broker_id))


def _parse_replication_factor(raw: Any) -> int | None:
    """``auto`` (None here) picks 3 with at least 3 brokers, else 1."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return None
    return _parse_int(1, 2**31 - 1)(raw)


def _parse_min_free_bytes(raw: Any) -> int | None:
    """Bytes, or ``auto`` (None here): 1 GiB or 5 % of the filesystem, whichever is smaller."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return None
    return _parse_int(0, 2**62)(raw)


def _parse_metadata_voters(raw: Any) -> int | None:
    """``auto`` (None here): 3, or 5 once the cluster has 5 brokers."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return None
    return _parse_int(1, MAX_METADATA_VOTERS)(raw)


def _parse_join_urls(raw: Any) -> str:
    """One or more comma-separated [http[s]://]HOST:PORT of live brokers (tried in turn), normalised (without a
    scheme: the one this broker serves, see `BrokerConfig.join_urls`)."""
    urls = []
    for item in _parse_str(raw).split(","):
        text = item.strip().rstrip("/")
        scheme, sep, rest = text.partition("://")
        if not sep:
            scheme, rest = "http", text
        host, sep, port = rest.rpartition(":")
        if scheme not in ("http", "https") or not sep or "/" in rest:
            raise ValueError("expected http[s]://HOST:PORT of a live broker (several: comma-separated)")
        _parse_host(host)
        _parse_port(port, allow_zero=False)
        urls.append(text)
    return ",".join(urls)


def _parse_rack(raw: Any) -> str:
    text = _parse_str(raw).strip()
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", text):
        raise ValueError("a rack is 1 to 64 of A-Z, a-z, 0-9, '.', '_', ':' and '-'")
    return text


def _parse_log_level(raw: Any) -> str:
    level = _parse_str(raw).strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return level


def _parse_path(raw: Any) -> Path:
    text = _parse_str(raw)
    if not text.strip():
        raise ValueError("must not be empty")
    return Path(text).expanduser().absolute()


def _parse_choice(*choices: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        value = _parse_str(raw).strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _parse_principals(raw: Any) -> frozenset[str]:
    items = raw if isinstance(raw, list) else _parse_str(raw).split(",")
    try:
        return frozenset(parse_principal(item.strip() if isinstance(item, str) else item) for item in items
                         if not isinstance(item, str) or item.strip())
    except AclError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class _Setting:
    flag: str
    parse: Callable[[Any], Any]
    help: str
    metavar: str | None = None
    secret: bool = False  # never echo the value in errors

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    @property
    def env(self) -> str:
        return "RAFTKA_" + self.dest.upper()


_SETTINGS = [
    _Setting("--id", _parse_broker_id, "this broker's id (a positive integer, listed in --peers)", "ID"),
    _Setting("--data-dir", _parse_path, "directory for this broker's logs and Raft state", "DIR"),
    _Setting(
        "--listen",
        _parse_address,
        f"HTTP API bind address (default: own --peers entry, or {DEFAULT_LISTEN} without --peers)",
        "HOST:PORT",
    ),
    _Setting(
        "--raft-listen",
        _parse_address,
        f"Raft bind address (default: own --peers entry, or {DEFAULT_RAFT_LISTEN} without --peers)",
        "HOST:PORT",
    ),
    _Setting("--peers", _parse_peers, "all brokers: ID=HOST:HTTP_PORT:RAFT_PORT,...", "PEERS"),
    _Setting("--join", _parse_join_urls, "join a running cluster through this broker, or the first of these that "
             "answers (comma-separated; instead of --peers)", "http[s]://HOST:PORT"),
    _Setting("--advertised-host", lambda raw: _parse_host(_parse_str(raw).strip()),
             "host name other brokers and clients reach this broker at (with --join; default: the --listen host, "
             "or this machine's host name when listening on a wildcard)", "HOST"),
    _Setting("--rack", _parse_rack, "this broker's rack or zone: replicas of a partition are spread over racks",
             "RACK"),
    _Setting("--metadata-voters", _parse_metadata_voters,
             "voters of the metadata group, 1 to 7 or auto (default auto: 3, or 5 from 5 brokers up); other "
             "brokers follow it as learners", "N"),
    _Setting("--reassignment-max-bytes-per-sec", _parse_int(0, 1 << 40),
             f"limit on catch-up traffic to replicas being added (default {DEFAULT_REASSIGNMENT_BYTES_PER_SEC}; "
             "0: unlimited)", "BYTES"),
    _Setting("--inline-fsync-max-us", _parse_int(0, 1_000_000),
             "a partition's only journal fsync of a round runs on the event loop once 32 in a row took less than "
             f"this, instead of in a worker thread (default {DEFAULT_INLINE_FSYNC_MAX_US}; 0: always in a thread)",
             "MICROSECONDS"),
    _Setting("--leader-fsync-delay-ms", _parse_int(0, 1000),
             "a Raft leader whose followers answer promptly enough to commit without it lets its own journal "
             "fsync wait up to this long, to cover more entries (its answers never wait for it; default "
             f"{DEFAULT_LEADER_FSYNC_DELAY_MS}; 0: every round)", "MILLISECONDS"),
    _Setting("--cluster-secret", _parse_str, "shared secret for Raft traffic (prefer the file or env)", "SECRET", True),
    _Setting("--cluster-secret-file", _parse_path, "file holding the cluster secret", "FILE"),
    _Setting(
        "--election-timeout-ms",
        _parse_int(50, 60_000),
        f"base Raft election timeout (default {DEFAULT_ELECTION_TIMEOUT_MS})",
        "MS",
    ),
    _Setting(
        "--heartbeat-ms", _parse_int(10, 10_000),
        f"Raft heartbeat interval (default {DEFAULT_HEARTBEAT_MS}; twice that while no group of the broker is active)",
        "MS",
    ),
    _Setting(
        "--max-request-bytes",
        _parse_int(1024, 1 << 30),
        f"HTTP request body limit (default {DEFAULT_MAX_REQUEST_BYTES})",
        "BYTES",
    ),
    _Setting(
        "--default-partitions",
        _parse_int(1, MAX_PARTITIONS),
        f"partitions of new topics (default {DEFAULT_PARTITIONS})",
        "N",
    ),
    _Setting(
        "--default-replication-factor",
        _parse_replication_factor,
        "replication factor of new topics, or auto (default auto: 3 with >= 3 brokers, else 1)",
        "RF",
    ),
    _Setting(
        "--default-retention-ms",
        _parse_topic_value,
        f"retention.ms of new topics (default {_TOPIC_DEFAULTS.retention_ms})",
        "MS",
    ),
    _Setting(
        "--default-retention-bytes",
        _parse_topic_value,
        f"retention.bytes of new topics (default {_TOPIC_DEFAULTS.retention_bytes})",
        "BYTES",
    ),
    _Setting(
        "--default-segment-bytes",
        _parse_topic_value,
        f"segment.bytes of new topics (default {_TOPIC_DEFAULTS.segment_bytes})",
        "BYTES",
    ),
    _Setting(
        "--default-max-message-bytes",
        _parse_topic_value,
        f"max.message.bytes of new topics (default {_TOPIC_DEFAULTS.max_message_bytes})",
        "BYTES",
    ),
    _Setting("--auth", _parse_choice(*AUTH_MODES), "client authentication: required or none (default: none when "
             "every client listener binds to loopback, else required)", "MODE"),
    _Setting("--superusers", _parse_principals, "principals allowed everything: User:admin,User:ops", "PRINCIPALS"),
    _Setting("--bootstrap-user-file", _parse_path, "name:password lines: superusers created on the cluster's "
             "first start", "FILE"),
    _Setting("--metrics-auth", _parse_choice(*AUTH_MODES), "whether /metrics and /raft need a user allowed to "
             "describe the cluster (default: as --auth)", "MODE"),
    _Setting("--tls-cert", _parse_path, "PEM certificate (chain) of the HTTP and Kafka listeners; enables TLS",
             "FILE"),
    _Setting("--tls-key", _parse_path, "PEM private key of --tls-cert", "FILE"),
    _Setting("--tls-client-ca", _parse_path, "CA for client certificates (mutual TLS; principal = subject CN)",
             "FILE"),
    _Setting("--tls-ca", _parse_path, "CA the other brokers' certificates chain to (default: the system's)",
             "FILE"),
    _Setting("--login-failure-limit", _parse_int(1, 1_000_000), "failed logins per source address per minute "
             f"before it is refused for the rest of the minute (default {DEFAULT_LOGIN_FAILURE_LIMIT})", "N"),
    _Setting(
        "--stop-when-fd-closes",
        _parse_int(0, 1 << 20),
        "stop gracefully (as on SIGTERM) when this inherited file descriptor, the read end of a pipe, reaches end "
        "of file: the process holding the write end (raftka dev, a test) has exited, even by kill -9",
        "FD",
    ),
    _Setting(
        "--kafka-listen",
        _parse_address,
        "Kafka wire protocol bind address (default: no Kafka listener)",
        "HOST:PORT",
    ),
    _Setting(
        "--kafka-advertise",
        _parse_address,
        "Kafka address given to clients in Metadata (default: --kafka-listen; needed when it is 0.0.0.0)",
        "HOST:PORT",
    ),
    _Setting(
        "--min-free-bytes",
        _parse_min_free_bytes,
        "low-disk watermark: below this much free space in the data dir the broker refuses produce (507) and "
        "its partition replicas stop until space is freed; 0 turns it off (default auto: 1 GiB or 5 %% of "
        "the filesystem, whichever is smaller)",
        "BYTES",
    ),
    _Setting(
        "--log-level",
        _parse_log_level,
        f"DEBUG, INFO, WARNING, ERROR or CRITICAL (default {DEFAULT_LOG_LEVEL})",
        "LEVEL",
    ),
]
_BY_DEST = {s.dest: s for s in _SETTINGS}
_TOPIC_DEFAULT_FLAGS = {
    "default_retention_ms": "retention.ms",
    "default_retention_bytes": "retention.bytes",
    "default_segment_bytes": "segment.bytes",
    "default_max_message_bytes": "max.message.bytes",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``raftka-node`` argument parser (values stay raw strings; ``load_config`` validates)."""
    parser = _Parser(
        prog="raftka-node",
        description="Run one raftka broker. Every flag can also be set as RAFTKA_<FLAG> "
        "(e.g. RAFTKA_CLUSTER_SECRET) or in the --config TOML file; flags win over the "
        "environment, which wins over the file.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--config", metavar="FILE.toml", help="TOML file with any of the settings below [RAFTKA_CONFIG]"
    )
    for setting in _SETTINGS:
        parser.add_argument(setting.flag, metavar=setting.metavar, help=f"{setting.help} [{setting.env}]")
    return parser


@dataclass(frozen=True)
class _Raw:
    value: Any
    origin: str  # "" for a flag, else " (from ...)"


def _read_toml(path_text: str, origin: str) -> dict[str, _Raw]:
    path = Path(path_text).expanduser()
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"--config{origin}: cannot read '{path}': {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config{origin}: '{path}' is not valid TOML: {exc}") from None
    values = {}
    for key, value in document.items():
        dest = key.replace("-", "_")
        if dest not in _BY_DEST:
            known = ", ".join(s.flag[2:] for s in _SETTINGS)
            raise ConfigError(f"--config: unknown key '{key}' in '{path}'; known keys: {known}")
        if dest in values:
            raise ConfigError(f"--config: '{path}' sets '{key}' twice (with '-' and '_')")
        values[dest] = _Raw(value, f" (from '{path}' key '{key}')")
    return values


def _layers(argv: Sequence[str], environ: Mapping[str, str]) -> list[dict[str, _Raw]]:
    """Raw settings per source, highest precedence first."""
    args = vars(build_parser().parse_args(list(argv)))
    flags = {dest: _Raw(value, "") for dest, value in args.items()}
    env = {s.dest: _Raw(environ[s.env], f" (from {s.env})") for s in _SETTINGS if environ.get(s.env)}
    config = flags.pop("config", None)
    if config is None and environ.get("RAFTKA_CONFIG"):
        config = _Raw(environ["RAFTKA_CONFIG"], " (from RAFTKA_CONFIG)")
    toml = {} if config is None else _read_toml(config.value, config.origin)
    return [flags, env, toml]


def _error(dest: str, raw: _Raw, reason: str) -> ConfigError:
    setting = _BY_DEST[dest]
    shown = "" if setting.secret or isinstance(raw.value, Mapping) else f" '{raw.value}'"
    return ConfigError(f"{setting.flag}{raw.origin}: invalid value{shown}: {reason}")


def _read_secret_file(raw: _Raw) -> bytes:
    try:
        path = _parse_path(raw.value)
    except ValueError as exc:
        raise _error("cluster_secret_file", raw, str(exc)) from None
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"--cluster-secret-file{raw.origin}: cannot read '{path}': {exc.strerror}") from None
    if not secret:
        raise ConfigError(f"--cluster-secret-file{raw.origin}: '{path}' is empty")
    return secret


def _resolve_secret(layers: list[dict[str, _Raw]]) -> bytes | None:
    for layer in layers:
        inline, file = layer.get("cluster_secret"), layer.get("cluster_secret_file")
        if inline is not None and file is not None:
            raise ConfigError(
                f"--cluster-secret{inline.origin} and --cluster-secret-file{file.origin}: give one, not both"
            )
        if inline is not None:
            if not isinstance(inline.value, str) or not inline.value:
                raise _error("cluster_secret", inline, "must be a non-empty string")
            secret = inline.value.encode()
            origin = f"--cluster-secret{inline.origin}"
        elif file is not None:
            secret = _read_secret_file(file)
            origin = f"--cluster-secret-file{file.origin}"
        else:
            continue
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"{origin}: the cluster secret is too short ({len(secret)} bytes); use at least "
                f"{MIN_SECRET_BYTES}, e.g. the output of `openssl rand -hex 32`"
            )
        return secret
    return None


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> BrokerConfig:
    """Build and validate the broker configuration from ``argv`` (default ``sys.argv[1:]``),
    ``environ`` (default ``os.environ``) and the TOML file they name."""
    layers = _layers(sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ)

    def get(dest: str, default: Any = None) -> Any:
        for layer in layers:
            raw = layer.get(dest)
            if raw is not None:
                try:
                    return _BY_DEST[dest].parse(raw.value)
                except ValueError as exc:
                    raise _error(dest, raw, str(exc)) from None
        return default

    def raw_of(dest: str) -> _Raw:  # the winning raw value of a setting known to be set
        return next(layer[dest] for layer in layers if dest in layer)

    broker_id = get("id")
    if broker_id is None:
        raise ConfigError("--id is required (or RAFTKA_ID, or 'id' in the --config file)")
    data_dir = get("data_dir")
    if data_dir is None:
        raise ConfigError("--data-dir is required (or RAFTKA_DATA_DIR, or 'data-dir' in the --config file)")
    listen, raft_listen, peers, join = get("listen"), get("raft_listen"), get("peers"), get("join")
    if join is not None and peers is not None:
        raise ConfigError(f"--join{raw_of('join').origin} and --peers{raw_of('peers').origin}: give one, not both "
                          "(--peers bootstraps a new cluster; --join adds this broker to a running one)")
    if join is not None:
        listen = listen or _parse_address(DEFAULT_LISTEN)
        raft_listen = raft_listen or _parse_address(DEFAULT_RAFT_LISTEN)
        if 0 in (listen.port, raft_listen.port):
            raise ConfigError("--join: --listen and --raft-listen need real ports (not 0): the cluster reaches this "
                              "broker at the ports it advertises")
        host = get("advertised_host") or _advertised_default(listen.host)
        peers = (Peer(broker_id, host, listen.port, raft_listen.port),)
    elif peers is None:
        listen = listen or _parse_address(DEFAULT_LISTEN)
        raft_listen = raft_listen or _parse_address(DEFAULT_RAFT_LISTEN)
        peers = (Peer(broker_id, listen.host, listen.port, raft_listen.port),)
    else:
        own = [p for p in peers if p.broker_id == broker_id]
        if not own:
            listed = ", ".join(str(p.broker_id) for p in peers)
            raise ConfigError(
                f"--id{raw_of('id').origin}: broker {broker_id} is not in "
                f"--peers{raw_of('peers').origin} (brokers {listed})"
            )
        listen = listen or Address(own[0].host, own[0].http_port)
        raft_listen = raft_listen or Address(own[0].host, own[0].raft_port)
    if (listen.host, listen.port) == (raft_listen.host, raft_listen.port) and listen.port != 0:
        raise ConfigError(f"--listen and --raft-listen are both {listen}; they need different ports")

    secret = _resolve_secret(layers)
    if secret is None and join is not None:
        raise ConfigError("refusing to join: a cluster secret is required (--cluster-secret or "
                          "RAFTKA_CLUSTER_SECRET, the same as the cluster's)")
    if secret is None and len(peers) > 1:
        raise ConfigError(
            "refusing to start: a cluster secret is required for a multi-broker cluster "
            "(--cluster-secret or RAFTKA_CLUSTER_SECRET)"
        )

    election_timeout_ms = get("election_timeout_ms", DEFAULT_ELECTION_TIMEOUT_MS)
    heartbeat_ms = get("heartbeat_ms", DEFAULT_HEARTBEAT_MS)
    if heartbeat_ms * 2 > election_timeout_ms:
        raise ConfigError(
            f"--heartbeat-ms ({heartbeat_ms}) must be at most half of --election-timeout-ms "
            f"({election_timeout_ms}), or followers start elections between heartbeats"
        )

    topic_overrides = {}
    for dest, name in _TOPIC_DEFAULT_FLAGS.items():
        value = get(dest)
        if value is not None:
            try:
                parse_topic_configs({name: value})
            except ApiError as exc:
                raise _error(dest, raw_of(dest), exc.message) from None
            topic_overrides[name] = value
    topic_defaults = parse_topic_configs(topic_overrides)

    max_request_bytes = get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)
    if max_request_bytes < topic_defaults.max_message_bytes:
        raise ConfigError(
            f"--max-request-bytes ({max_request_bytes}) is smaller than the default max.message.bytes "
            f"({topic_defaults.max_message_bytes}): a maximum-size record could not be produced"
        )

    replication_factor = get("default_replication_factor")
    if replication_factor is None:
        replication_factor = None if join is not None else 3 if len(peers) >= 3 else 1
    elif join is None:
        try:
            validate_replication_factor(replication_factor, len(peers))
        except ApiError as exc:
            raise ConfigError(
                f"--default-replication-factor{raw_of('default_replication_factor').origin}: {exc.message}"
            ) from None

    kafka_listen, kafka_advertise = get("kafka_listen"), get("kafka_advertise")
    if kafka_advertise is not None and kafka_listen is None:
        raise ConfigError(f"--kafka-advertise{raw_of('kafka_advertise').origin}: needs --kafka-listen")
    if kafka_listen is not None:
        taken = {(listen.host, listen.port), (raft_listen.host, raft_listen.port)}
        if (kafka_listen.host, kafka_listen.port) in taken and kafka_listen.port != 0:
            raise ConfigError(f"--kafka-listen{raw_of('kafka_listen').origin}: {kafka_listen} is already the HTTP "
                              "or Raft address")
        kafka_advertise = kafka_advertise or kafka_listen
        if kafka_advertise.port == 0 or kafka_advertise.host in ("0.0.0.0", "::"):
            raise ConfigError(f"--kafka-advertise: clients cannot connect to {kafka_advertise}; give the address "
                              "they should use (HOST:PORT, port not 0)")
    security = _security_config(get, raw_of, [listen] + ([kafka_listen] if kafka_listen is not None else []))
    peers = tuple(replace(peer, scheme=security.scheme) for peer in peers)

    return BrokerConfig(
        broker_id=broker_id,
        data_dir=data_dir,
        listen=listen,
        raft_listen=raft_listen,
        peers=peers,
        cluster_secret=secret,
        election_timeout_ms=election_timeout_ms,
        heartbeat_ms=heartbeat_ms,
        max_request_bytes=max_request_bytes,
        default_partitions=get("default_partitions", DEFAULT_PARTITIONS),
        default_replication_factor=replication_factor,
        topic_defaults=topic_defaults,
        log_level=get("log_level", DEFAULT_LOG_LEVEL),
        stop_when_fd_closes=get("stop_when_fd_closes"),
        kafka_listen=kafka_listen,
        kafka_advertise=kafka_advertise,
        min_free_bytes=get("min_free_bytes"),
        join=join,
        rack=get("rack"),
        metadata_voters=get("metadata_voters"),
        reassignment_max_bytes_per_sec=get("reassignment_max_bytes_per_sec", DEFAULT_REASSIGNMENT_BYTES_PER_SEC),
        inline_fsync_max_us=get("inline_fsync_max_us", DEFAULT_INLINE_FSYNC_MAX_US),
        leader_fsync_delay_ms=get("leader_fsync_delay_ms", DEFAULT_LEADER_FSYNC_DELAY_MS),
        security=security,
    )


def _advertised_default(listen_host: str) -> str:
    """The listen host, unless it is a wildcard: then this machine's host name."""
    if listen_host in ("0.0.0.0", "::"):
        import socket
        return socket.gethostname()
    return listen_host


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _security_config(get: Callable[..., Any], raw_of: Callable[[str], _Raw], listeners: list[Address]) -> \
        SecurityConfig:
    cert, key, client_ca, peer_ca = get("tls_cert"), get("tls_key"), get("tls_client_ca"), get("tls_ca")
    tls = None
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together (TLS needs both)")
    if cert is None:
        for dest in ("tls_client_ca", "tls_ca"):
            if get(dest) is not None:
                raise ConfigError(f"{_BY_DEST[dest].flag}{raw_of(dest).origin}: needs --tls-cert and --tls-key")
    else:
        tls = TlsFiles(cert, key, client_ca, peer_ca)
        try:
            BrokerTls.check(tls)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-cert/--tls-key/--tls-client-ca/--tls-ca: cannot use these files: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
    exposed = [str(a) for a in listeners if not _loopback(a.host)]
    auth = get("auth")
    warning = None
    if auth is None:
        auth = "required" if exposed else "none"
    elif auth == "none" and exposed:
        warning = (f"authentication is off (--auth none) although clients can reach {', '.join(exposed)}: anyone "
                   "who can connect may read, write and delete every topic")
    if auth == "required" and exposed and tls is None:
        warning = (f"authentication without TLS on {', '.join(exposed)}: passwords cross the network in the clear "
                   "(give --tls-cert and --tls-key)")
    superusers = get("superusers", frozenset())
    users_file = get("bootstrap_user_file")
    if users_file is not None:
        try:
            names = read_bootstrap_users(users_file)
        except ValueError as exc:
            raise ConfigError(f"--bootstrap-user-file{raw_of('bootstrap_user_file').origin}: {exc}") from None
        superusers = superusers | {f"User:{name}" for name in names}
    return SecurityConfig(auth=auth, superusers=superusers, bootstrap_user_file=users_file,
                          metrics_auth=get("metrics_auth", auth), tls=tls,
                          login_failure_limit=get("login_failure_limit", DEFAULT_LOGIN_FAILURE_LIMIT),
                          auth_warning=warning)
