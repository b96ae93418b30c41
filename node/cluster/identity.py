"""Data-directory identity: ``<data-dir>/broker.json`` binds a data directory to one broker of one cluster.

The broker writes ``{"version": 3, "broker_id": .., "cluster_id": .., "peer_ids": [..],
"incarnation": .., "secret_check": ..}`` atomically and durably
(``raftka.storage.atomic_write``: tmp file, fsync, rename, directory fsync; it
also feeds the test-mode fsync ledger) before it writes anything else. On
every later start the file must name the same broker id, and the cluster
secret must be the one the directory was created with, or the broker refuses
to start: pointing broker 2 at broker 1's directory, or a broker at a
directory of another cluster, would corrupt both. (Version 1 and 2 files,
written before brokers could join, read as incarnation 0 and are checked by
re-deriving their cluster id.)

**The cluster id** is made once, when the cluster bootstraps, and never
changes afterwards: brokers join and leave without touching it. The brokers
that bootstrap a cluster together (``--peers``) compute the same id without
talking to each other: 16 bytes of SHA-256 over the sorted bootstrap peer ids
and an scrypt hash of the cluster secret, written as 22 URL-safe base64
characters like Kafka's cluster ids. A broker that joins later (``--join``)
or comes back with an empty disk takes the id from the cluster; the first
metadata leader records it in the metadata group. The secret itself is never
written: ``secret_check`` is an scrypt hash of it salted with the cluster id
(scrypt makes guessing a weak secret from broker.json expensive).

**Incarnation** (see `raftka.raft.replica`): 0 for the directories the cluster
bootstrapped with, a random number for a directory created afterwards. An
empty directory cannot tell by itself whether its broker is new or lost its
disk, so it asks its peers — every broker heartbeat announces the sender's
incarnation and whether the cluster has formed (`RaftHost.announce`) — and
`decide_incarnation` takes their word: if any peer says the cluster formed,
this broker lost its state and comes back as a new incarnation (it must not
vote as the replicas it was); if every peer is still without a formed
cluster, it bootstraps at 0. Until every peer has answered it waits: a peer
that is down might be the one that knows.  Likewise a broker at incarnation 0
whose cluster has not formed starts its Raft groups only once every peer has
claimed an incarnation, so a broker that starts a little late is never taken
for one that lost its disk. Hence a new cluster forms once every broker in
``--peers`` has started; from then on a majority suffices.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from raftka.node.config import BrokerConfig
from raftka.raft.host import Announcement
from raftka.raft.replica import incarnation_for_empty_data_dir
from raftka.storage import atomic_write
from raftka.storage.fsutil import fsync_dir

__all__ = [
    "IDENTITY_FILE",
    "BrokerIdentity",
    "IdentityError",
    "check_data_dir",
    "claim_data_dir",
    "bootstrap_identity",
    "decide_incarnation",
    "derive_cluster_id",
    "ensure_identity",
    "secret_check",
]

IDENTITY_FILE = "broker.json"
_FORMAT_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)
_IGNORED_ENTRIES = {"lost+found", IDENTITY_FILE + ".tmp"}  # a fresh filesystem's; a crash during the first claim
_KDF_SALT = b"raftka cluster secret v1"


class IdentityError(Exception):
    """The data directory cannot be used by this broker; the message says why."""


@dataclass(frozen=True)
class BrokerIdentity:
    broker_id: int
    cluster_id: str
    peer_ids: tuple[int, ...]  # the brokers the cluster bootstrapped with; () for a broker that joined later
    incarnation: int = 0
    secret_check: str | None = None  # None in files written before version 3


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def derive_cluster_id(peer_ids: Iterable[int], secret: bytes | None) -> str:
    """The cluster id every broker bootstrapping with the same peer set and secret computes."""
    ids = ",".join(str(i) for i in sorted(set(peer_ids)))
    secret_hash = (
        b"no secret" if secret is None else hashlib.scrypt(secret, salt=_KDF_SALT, n=2**14, r=8, p=1, dklen=32)
    )
    return _b64(hashlib.sha256(b"raftka cluster id v1\0" + ids.encode() + b"\0" + secret_hash).digest())


def secret_check(cluster_id: str, secret: bytes | None) -> str:
    """What broker.json keeps to recognise the cluster secret later (not the secret, nor enough to guess it cheaply)."""
    if secret is None:
        return "no secret"
    salt = b"raftka secret check v1\0" + cluster_id.encode()
    return _b64(hashlib.scrypt(secret, salt=salt, n=2**14, r=8, p=1, dklen=32))


def bootstrap_identity(config: BrokerConfig) -> BrokerIdentity:
    """The identity an empty data directory takes when its broker bootstraps a new cluster with ``--peers``."""
    cluster_id = derive_cluster_id(config.peer_ids, config.cluster_secret)
    return BrokerIdentity(config.broker_id, cluster_id, config.peer_ids, 0,
                          secret_check(cluster_id, config.cluster_secret))


def _read_identity(path: Path) -> BrokerIdentity:
    try:
        doc = orjson.loads(path.read_bytes())
        if doc["version"] not in _READABLE_VERSIONS:
            raise ValueError(f"unsupported version {doc['version']!r}")
        identity = BrokerIdentity(int(doc["broker_id"]), str(doc["cluster_id"]), tuple(int(i) for i in doc["peer_ids"]),
                                  int(doc["incarnation"]) if doc["version"] >= 2 else 0,
                                  str(doc["secret_check"]) if doc["version"] >= 3 else None)
    except OSError as exc:
        raise IdentityError(f"refusing to start: cannot read '{path}': {exc.strerror}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise IdentityError(
            f"refusing to start: '{path}' is damaged ({type(exc).__name__}: {exc}); it records which broker "
            "and cluster the data directory belongs to - restore it, or use an empty data directory"
        ) from None
    return identity


def check_data_dir(data_dir: Path, broker_id: int, secret: bytes | None) -> BrokerIdentity | None:
    """The identity of an existing data directory (checked: this broker's, made with this secret), or None when it
    is empty.

    A directory that holds data but no identity file is refused: it is damaged,
    and taking it for an empty one would throw its state away.
    """
    data_dir = Path(data_dir)
    path = data_dir / IDENTITY_FILE
    try:
        if not data_dir.exists():
            return None
        if not data_dir.is_dir():
            raise IdentityError(f"refusing to start: cannot use data directory '{data_dir}': not a directory")
        if not path.exists():
            leftovers = sorted(p.name for p in data_dir.iterdir() if p.name not in _IGNORED_ENTRIES)
            if leftovers:
                raise IdentityError(
                    f"refusing to start: data directory '{data_dir}' holds data ({', '.join(leftovers[:5])}) but no "
                    f"{IDENTITY_FILE}; restore it, or empty the directory to rejoin as a new incarnation")
            return None
    except OSError as exc:
        raise IdentityError(f"refusing to start: cannot use data directory '{data_dir}': {exc}") from None
    found = _read_identity(path)
    if found.broker_id != broker_id:
        raise IdentityError(
            f"refusing to start: data directory '{data_dir}' belongs to broker {found.broker_id}, "
            f"not broker {broker_id}; check --id and --data-dir"
        )
    same_secret = (found.secret_check == secret_check(found.cluster_id, secret) if found.secret_check is not None
                   else found.cluster_id == derive_cluster_id(found.peer_ids, secret))
    if not same_secret:
        raise IdentityError(
            f"refusing to start: data directory '{data_dir}' belongs to cluster {found.cluster_id}, which uses "
            "another cluster secret than the one given; check --cluster-secret (or --cluster-secret-file)"
        )
    return found


def claim_data_dir(data_dir: Path, identity: BrokerIdentity, secret: bytes | None = None) -> BrokerIdentity:
    """Check an existing identity (made with `secret`), or create the directory and write `identity`."""
    data_dir = Path(data_dir)
    found = check_data_dir(data_dir, identity.broker_id, secret)
    if found is not None:
        return found
    try:
        if not data_dir.is_dir():
            data_dir.mkdir(parents=True)
            fsync_dir(str(data_dir.parent.absolute()))
        document = {
            "version": _FORMAT_VERSION,
            "broker_id": identity.broker_id,
            "cluster_id": identity.cluster_id,
            "peer_ids": list(identity.peer_ids),
            "incarnation": identity.incarnation,
            "secret_check": identity.secret_check,
        }
        atomic_write(data_dir / IDENTITY_FILE, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as exc:
        raise IdentityError(f"refusing to start: cannot use data directory '{data_dir}': {exc}") from None
    return identity


def decide_incarnation(peer_ids: Iterable[int], own_id: int, announced: Mapping[int, Announcement],
                       rng: random.Random | None = None) -> int | None:
    """The incarnation an empty data directory takes, from what the peers announced (None: wait)."""
    others = [p for p in peer_ids if p != own_id]
    if any(a.formed for p, a in announced.items() if p in others):
        return incarnation_for_empty_data_dir(cluster_formed=True, rng=rng)
    if all(p in announced for p in others):
        return incarnation_for_empty_data_dir(cluster_formed=False)
    return None


def ensure_identity(config: BrokerConfig) -> BrokerIdentity:
    """``claim_data_dir`` of a bootstrapping broker's identity for a loaded configuration."""
    return claim_data_dir(config.data_dir, bootstrap_identity(config), config.cluster_secret)
