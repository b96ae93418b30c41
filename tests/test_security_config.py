"""Security settings (raftka.node.config, .security.settings), the login limiter and peer request signatures."""

import os

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from raftka.client.devcerts import CertificateAuthority, write_dev_certificates
from raftka.node.config import ConfigError, load_config
from raftka.node.security.limiter import LoginLimiter
from raftka.node.security.peer import PeerSignatureError, PeerSigner

SECRET = "s3cret-s3cret-s3cret"


def load(*argv: str, env: dict | None = None):
    return load_config(["--id", "1", "--data-dir", "/srv/d", *argv], env or {})


def error_of(*argv: str, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(*argv, env=env)
    return str(info.value)


def test_loopback_runs_without_auth_elsewhere_auth_is_required():
    assert load().security.auth == "none" and load("--listen", "[::1]:8080").security.auth == "none"
    exposed = load("--listen", "0.0.0.0:8080")
    assert exposed.security.auth == "required" and exposed.security.metrics_auth == "required"
    assert "passwords cross the network in the clear" in exposed.security.auth_warning


def test_auth_none_beyond_loopback_must_be_explicit_and_warns():
    cfg = load("--listen", "10.1.2.3:8080", "--auth", "none")
    assert cfg.security.auth == "none" and "10.1.2.3:8080" in cfg.security.auth_warning
    assert load("--auth", "none").security.auth_warning is None


def test_bootstrap_users_become_superusers_and_the_file_is_checked(tmp_path):
    users = tmp_path / "users"
    users.write_text("# admins\nadmin:pa:ss:word\n\nops:x\n")
    cfg = load("--bootstrap-user-file", str(users), "--superusers", "User:root")
    assert cfg.security.superusers == {"User:admin", "User:ops", "User:root"}
    assert "pa:ss" not in repr(cfg)
    users.write_text("admin:secret-one\nnot a user:secret-two\n")
    message = error_of("--bootstrap-user-file", str(users))
    assert "line 2" in message and "secret" not in message
    users.write_text("admin\n")
    assert "name:password" in error_of("--bootstrap-user-file", str(users))
    assert "cannot read" in error_of(env={"RAFTKA_BOOTSTRAP_USER_FILE": str(tmp_path / "missing")})
    assert "User:<name>" in error_of("--superusers", "admin")


def test_tls_files_are_checked_at_start(tmp_path):
    certs = write_dev_certificates(tmp_path)
    cfg = load("--tls-cert", str(certs.broker_cert), "--tls-key", str(certs.broker_key),
               "--tls-client-ca", str(certs.ca_cert))
    assert cfg.security.tls.client_ca == certs.ca_cert and cfg.peers[0].http_url == "https://127.0.0.1:8080"
    assert "go together" in error_of("--tls-cert", str(certs.broker_cert))
    assert "needs --tls-cert" in error_of("--tls-client-ca", str(certs.ca_cert))
    _, other_key = CertificateAuthority.create().write_issued(tmp_path / "other", "x", "x")
    assert "cannot use these files" in error_of("--tls-cert", str(certs.broker_cert), "--tls-key", str(other_key))
    assert "cannot use these files" in error_of("--tls-cert", str(tmp_path / "nope.pem"),
                                                "--tls-key", str(certs.broker_key))


def test_login_limiter_refuses_an_address_for_the_rest_of_the_minute():
    now = [0.0]
    limiter = LoginLimiter(3, clock=lambda: now[0])
    for _ in range(3):
        assert not limiter.blocked("10.0.0.1")
        limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") and not limiter.blocked("10.0.0.2")
    now[0] = 59.0
    assert limiter.blocked("10.0.0.1")
    now[0] = 60.5
    assert not limiter.blocked("10.0.0.1")


def headers(**values) -> CIMultiDictProxy:
    return CIMultiDictProxy(CIMultiDict(values))


def test_peer_signatures_cannot_be_forged_altered_or_replayed_late():
    now = [1000.0]
    a, b = PeerSigner(1, SECRET.encode(), clock=lambda: now[0]), PeerSigner(2, SECRET.encode(), clock=lambda: now[0])
    signed = a.headers("User:alice", "10.0.0.9", "GET", "/topics/orders?x=1")
    assert b.verify(headers(**signed), "GET", "/topics/orders?x=1") == ("User:alice", "10.0.0.9")
    assert b.verify(headers(), "GET", "/") is None
    tampered = [
        {**signed, "X-Raftka-Principal": "User:admin"},
        {**signed, "X-Raftka-Client-Host": "127.0.0.1"},
        {k: v for k, v in signed.items() if k != "X-Raftka-Peer-Signature"},
        {"X-Raftka-Principal": "User:admin"},
        {**signed, "X-Raftka-Peer-Signature": "v1 1 x y"},
    ]
    for forged in tampered:
        with pytest.raises(PeerSignatureError):
            b.verify(headers(**forged), "GET", "/topics/orders?x=1")
    with pytest.raises(PeerSignatureError):
        b.verify(headers(**signed), "DELETE", "/topics/orders?x=1")
    other_cluster = PeerSigner(2, os.urandom(20), clock=lambda: now[0])
    with pytest.raises(PeerSignatureError):
        other_cluster.verify(headers(**signed), "GET", "/topics/orders?x=1")
    now[0] += 61
    with pytest.raises(PeerSignatureError, match="stale"):
        b.verify(headers(**signed), "GET", "/topics/orders?x=1")


def test_every_route_has_an_access_rule():
    """A route without a rule is refused to all but superusers: each one in the API must have its own entry."""
    from raftka.node.http.access import RULES
    from raftka.node.http.openapi import openapi_spec

    routes = {(method.upper(), path) for path, item in openapi_spec()["paths"].items() for method in item
              if method != "parameters"}
    assert routes - set(RULES) == set()
    assert set(RULES) - routes == set()
