"""Data-directory identity (raftka.node.cluster.identity): broker.json creation, checks, durability."""

import os

import orjson
import pytest

from raftka.node.cluster.identity import (
    IDENTITY_FILE,
    BrokerIdentity,
    IdentityError,
    claim_data_dir,
    derive_cluster_id,
    ensure_identity,
    expected_identity,
)
from raftka.node.config import load_config
from raftka.storage import LEDGER_ENV
from raftka.storage.powerloss import apply_ledger

SECRET = "cluster-secret-0123456789"
PEERS = "1=b1:8080:9090,2=b2:8080:9090,3=b3:8080:9090"


def config(data_dir, broker_id=1, peers=PEERS, secret=SECRET):
    argv = ["--id", str(broker_id), "--data-dir", str(data_dir), "--peers", peers]
    if secret is not None:
        argv += ["--cluster-secret", secret]
    return load_config(argv, {})


def test_cluster_id_is_deterministic_and_depends_on_peers_and_secret():
    a = derive_cluster_id([3, 1, 2], b"x" * 16)
    assert a == derive_cluster_id([1, 2, 3], b"x" * 16)
    assert len(a) == 22 and "=" not in a
    assert a != derive_cluster_id([1, 2, 3], b"y" * 16)
    assert a != derive_cluster_id([1, 2, 4], b"x" * 16)
    assert derive_cluster_id([1], None) != derive_cluster_id([1], b"x" * 16)


def test_first_start_writes_broker_json_without_the_secret(tmp_path):
    data_dir = tmp_path / "nested" / "data"
    identity = ensure_identity(config(data_dir))
    assert identity == BrokerIdentity(1, derive_cluster_id([1, 2, 3], SECRET.encode()), (1, 2, 3))
    raw = (data_dir / IDENTITY_FILE).read_bytes()
    assert orjson.loads(raw) == {"version": 2, "broker_id": 1, "cluster_id": identity.cluster_id, "peer_ids": [1, 2, 3],
                                 "incarnation": 0}
    assert SECRET.encode() not in raw
    assert not [p for p in os.listdir(data_dir) if p != IDENTITY_FILE]  # no temporary file left behind


def test_restart_with_same_identity_is_accepted(tmp_path):
    first = ensure_identity(config(tmp_path))
    assert ensure_identity(config(tmp_path)) == first
    assert ensure_identity(config(tmp_path, peers="3=x:1:2,1=y:1:2,2=z:1:2")) == first  # addresses may change


def test_other_broker_id_is_refused(tmp_path):
    ensure_identity(config(tmp_path, broker_id=1))
    with pytest.raises(IdentityError) as info:
        ensure_identity(config(tmp_path, broker_id=2))
    assert f"data directory '{tmp_path}' belongs to broker 1, not broker 2" in str(info.value)


@pytest.mark.parametrize(
    ("peers", "secret"),
    [(PEERS, "another-secret-0123456789"), ("1=b1:8080:9090,2=b2:8080:9090", SECRET)],
)
def test_other_cluster_is_refused(tmp_path, peers, secret):
    ensure_identity(config(tmp_path))
    with pytest.raises(IdentityError) as info:
        ensure_identity(config(tmp_path, peers=peers, secret=secret))
    message = str(info.value)
    assert "refusing to start" in message and "belongs to another cluster" in message
    assert "brokers [1, 2, 3]" in message and SECRET not in message


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"[]",
        b'{"version": 1}',
        b'{"version": 2, "broker_id": 1, "cluster_id": "c", "peer_ids": [1]}',
        b'{"version": 1, "broker_id": "one", "cluster_id": "c", "peer_ids": [1]}',
    ],
)
def test_damaged_identity_file_is_refused_not_overwritten(tmp_path, content):
    (tmp_path / IDENTITY_FILE).write_bytes(content)
    with pytest.raises(IdentityError, match="is damaged"):
        ensure_identity(config(tmp_path))
    assert (tmp_path / IDENTITY_FILE).read_bytes() == content


def test_unusable_data_dir(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(IdentityError, match="cannot use data directory"):
        ensure_identity(config(not_a_dir))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / IDENTITY_FILE).mkdir()
    with pytest.raises(IdentityError, match="cannot read"):
        ensure_identity(config(tmp_path / "d"))


def test_leftover_temporary_file_from_a_crash_is_harmless(tmp_path):
    (tmp_path / (IDENTITY_FILE + ".tmp")).write_bytes(b'{"half": ')
    expected = expected_identity(config(tmp_path))
    assert claim_data_dir(tmp_path, expected) == expected
    assert orjson.loads((tmp_path / IDENTITY_FILE).read_bytes())["broker_id"] == 1


def test_identity_survives_simulated_power_loss(tmp_path, monkeypatch):
    ledger = tmp_path / "ledger"
    data_dir = tmp_path / "data"
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    identity = ensure_identity(config(data_dir))
    (data_dir / "never-synced").write_bytes(b"lost")
    report = apply_ledger(ledger, data_dir)
    assert report.deleted == [str(data_dir / "never-synced")]
    assert ensure_identity(config(data_dir)) == identity
