"""Data-directory identity: ``<data-dir>/broker.json`` binds a data directory to one broker of one cluster.

On first start the broker writes ``{"version": 1, "broker_id": .., "cluster_id": ..,
"peer_ids": [..]}`` atomically and durably (``raftka.storage.atomic_write``:
tmp file, fsync, rename, directory fsync; it also feeds the test-mode fsync
ledger). On every later start the file must name the same broker id and
cluster id, or the broker refuses to start: pointing broker 2 at broker 1's
directory, or a broker at a directory of another cluster, would corrupt both.

The cluster id is derived, so every broker computes the same one without
talking to the others: 16 bytes of SHA-256 over the sorted peer ids and an
scrypt hash of the cluster secret (the secret itself is never written; scrypt
makes guessing a weak secret from broker.json expensive), written as 22
URL-safe base64 characters like Kafka's cluster ids. It therefore changes
when the broker set or the secret changes: today's cluster membership is
static, and a directory of the old membership is refused.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from raftka.node.config import BrokerConfig
from raftka.storage import atomic_write
from raftka.storage.fsutil import fsync_dir

__all__ = [
    "IDENTITY_FILE",
    "BrokerIdentity",
    "IdentityError",
    "claim_data_dir",
    "derive_cluster_id",
    "ensure_identity",
    "expected_identity",
]

IDENTITY_FILE = "broker.json"
_FORMAT_VERSION = 1
_KDF_SALT = b"raftka cluster secret v1"


class IdentityError(Exception):
    """The data directory cannot be used by this broker; the message says why."""


@dataclass(frozen=True)
class BrokerIdentity:
    broker_id: int
    cluster_id: str
    peer_ids: tuple[int, ...]


def derive_cluster_id(peer_ids: Iterable[int], secret: bytes | None) -> str:
    """The cluster id every broker of the same peer set and secret computes."""
    ids = ",".join(str(i) for i in sorted(set(peer_ids)))
    secret_hash = (
        b"no secret" if secret is None else hashlib.scrypt(secret, salt=_KDF_SALT, n=2**14, r=8, p=1, dklen=32)
    )
    digest = hashlib.sha256(b"raftka cluster id v1\0" + ids.encode() + b"\0" + secret_hash).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def expected_identity(config: BrokerConfig) -> BrokerIdentity:
    return BrokerIdentity(config.broker_id, derive_cluster_id(config.peer_ids, config.cluster_secret), config.peer_ids)


def _read_identity(path: Path) -> BrokerIdentity:
    try:
        doc = orjson.loads(path.read_bytes())
        if doc["version"] != _FORMAT_VERSION:
            raise ValueError(f"unsupported version {doc['version']!r}")
        identity = BrokerIdentity(int(doc["broker_id"]), str(doc["cluster_id"]), tuple(int(i) for i in doc["peer_ids"]))
    except OSError as exc:
        raise IdentityError(f"refusing to start: cannot read '{path}': {exc.strerror}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise IdentityError(
            f"refusing to start: '{path}' is damaged ({type(exc).__name__}: {exc}); it records which broker "
            "and cluster the data directory belongs to - restore it, or use an empty data directory"
        ) from None
    return identity


def claim_data_dir(data_dir: Path, expected: BrokerIdentity) -> BrokerIdentity:
    """Create ``data_dir`` and its identity file, or check that an existing one matches ``expected``."""
    data_dir = Path(data_dir)
    path = data_dir / IDENTITY_FILE
    try:
        if not data_dir.is_dir():
            data_dir.mkdir(parents=True)
            fsync_dir(str(data_dir.parent.absolute()))
        if not path.exists():
            document = {
                "version": _FORMAT_VERSION,
                "broker_id": expected.broker_id,
                "cluster_id": expected.cluster_id,
                "peer_ids": list(expected.peer_ids),
            }
            atomic_write(path, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
            return expected
    except OSError as exc:
        raise IdentityError(f"refusing to start: cannot use data directory '{data_dir}': {exc}") from None
    found = _read_identity(path)
    if found.broker_id != expected.broker_id:
        raise IdentityError(
            f"refusing to start: data directory '{data_dir}' belongs to broker {found.broker_id}, "
            f"not broker {expected.broker_id}; check --id and --data-dir"
        )
    if found.cluster_id != expected.cluster_id:
        raise IdentityError(
            f"refusing to start: data directory '{data_dir}' belongs to another cluster "
            f"(cluster id {found.cluster_id}, brokers {list(found.peer_ids)}); this broker is configured for "
            f"cluster {expected.cluster_id} (brokers {list(expected.peer_ids)}). Check --peers and the cluster "
            "secret, or use an empty data directory"
        )
    return found


def ensure_identity(config: BrokerConfig) -> BrokerIdentity:
    """``claim_data_dir`` for a loaded configuration; call before opening any log."""
    return claim_data_dir(config.data_dir, expected_identity(config))
