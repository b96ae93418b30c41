"""Data-directory identity (raftka.node.cluster.identity): broker.json creation, checks, durability."""

import os

import orjson
import pytest

from raftka.node.cluster.identity import (
    IDENTITY_FILE,
    BrokerIdentity,
    IdentityError,
    claim_data_dir,
    bootstrap_identity,
    derive_cluster_id,
    ensure_identity,
    secret_check,
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
    cluster_id = derive_cluster_id([1, 2, 3], SECRET.encode())
    assert identity == BrokerIdentity(1, cluster_id, (1, 2, 3), 0, secret_check(cluster_id, SECRET.encode()))
    raw = (data_dir / IDENTITY_FILE).read_bytes()
    assert orjson.loads(raw) == {"version": 3, "broker_id": 1, "cluster_id": identity.cluster_id, "peer_ids": [1, 2, 3],
                                 "incarnation": 0, "secret_check": identity.secret_check}
    assert SECRET.encode() not in raw
    assert not [p for p in os.listdir(data_dir) if p != IDENTITY_FILE]  # no temporary file left behind


def test_restart_with_same_identity_is_accepted(tmp_path):
    first = ensure_identity(config(tmp_path))
    assert ensure_identity(config(tmp_path)) == first
    assert ensure_identity(config(tmp_path, peers="3=x:1:2,1=y:1:2,2=z:1:2")) == first  # addresses may change
    # The cluster id was made at bootstrap: a changed peer list (brokers joined or left) keeps it.
    assert ensure_identity(config(tmp_path, peers=PEERS + ",4=b4:8080:9090")) == first
    assert ensure_identity(config(tmp_path, peers="1=b1:8080:9090")) == first


def test_other_broker_id_is_refused(tmp_path):
    ensure_identity(config(tmp_path, broker_id=1))
    with pytest.raises(IdentityError) as info:
        ensure_identity(config(tmp_path, broker_id=2))
    assert f"data directory '{tmp_path}' belongs to broker 1, not broker 2" in str(info.value)


@pytest.mark.parametrize("version", [2, 3])
def test_another_secret_is_refused(tmp_path, version):
    identity = ensure_identity(config(tmp_path))
    if version == 2:  # written before brokers could join: checked by re-deriving the cluster id
        (tmp_path / IDENTITY_FILE).write_bytes(orjson.dumps({"version": 2, "broker_id": 1, "peer_ids": [1, 2, 3],
                                                             "cluster_id": identity.cluster_id, "incarnation": 0}))
        assert ensure_identity(config(tmp_path)).cluster_id == identity.cluster_id
    with pytest.raises(IdentityError) as info:
        ensure_identity(config(tmp_path, secret="another-secret-0123456789"))
    message = str(info.value)
    assert "refusing to start" in message and f"belongs to cluster {identity.cluster_id}" in message
    assert "another cluster secret" in message and SECRET not in message and "empty data dir" not in message


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
    expected = bootstrap_identity(config(tmp_path))
    assert claim_data_dir(tmp_path, expected, SECRET.encode()) == expected
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
