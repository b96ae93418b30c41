"""Security on the Kafka listener, with real Kafka clients: SASL (PLAIN, SCRAM-SHA-256/512) over TLS and
plaintext, Kafka's authorization errors, ACLs and SCRAM users through Kafka's admin APIs (the same ones as over
HTTP), admin writes relayed to the metadata leader as the client that sent them, and malformed SASL exchanges.

Two clusters: 3 brokers with TLS and authentication (confluent-kafka over SASL_SSL with SCRAM-SHA-512), and one
broker with authentication but no TLS (kafka-python over SASL_PLAINTEXT with PLAIN, and raw frames).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka_support import receive_response

from raftka.client import Acl, Admin
from raftka.client.devcerts import CertificateAuthority, DevSecurity
from raftka.client.devcluster import LocalCluster
from raftka.node.security.scram import client_final_message

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,  # noqa: E402
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType, ScramCredentialInfo,
                                   ScramMechanism, UserScramCredentialUpsertion)
from kafka.protocol.metadata import MetadataRequest  # noqa: E402
from kafka.protocol.sasl import (SaslAuthenticateRequest, SaslAuthenticateResponse,  # noqa: E402
                                 SaslHandshakeRequest, SaslHandshakeResponse)

pytestmark = pytest.mark.timeout(240)
PASSWORDS: set[str] = set()
TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED = 29, 30
UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 33, 34, 58


def secret(name: str) -> str:
    value = f"pw-{name}-{os.urandom(5).hex()}"
    PASSWORDS.add(value)
    return value


def start(root: Path, brokers: int, tls: bool) -> LocalCluster:
    security = DevSecurity(root, tls=tls)
    client_ca = ["--tls-client-ca", str(security.ca_file)] if tls else []  # client certificates too (optional)
    cluster = LocalCluster(brokers, root, security=security, election_timeout_ms=300,
                           extra_args=["--login-failure-limit", "1000", *client_ca])
    try:
        cluster.start(timeout=60)
        cluster.wait_kafka_registered()
    except BaseException:
        cluster.close()
        raise
    PASSWORDS.add(security.admin_password)
    return cluster


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    cluster = start(tmp_path_factory.mktemp("kafka-tls"), 3, tls=True)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    cluster = start(tmp_path_factory.mktemp("kafka-sasl-plaintext"), 1, tls=False)
    yield cluster
    cluster.close()


def sasl_ssl(cluster: LocalCluster, user: str = "admin", password: str | None = None,
             mechanism: str = "SCRAM-SHA-512", bootstrap: str | None = None) -> dict:
    return {"bootstrap.servers": bootstrap or cluster.kafka_bootstrap, "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism, "sasl.username": user,
            "sasl.password": password or cluster.security.admin_password,
            "ssl.ca.location": str(cluster.security.ca_file)}


def deliver(producer, topic: str, values: list[bytes]) -> list:
    outcomes: list = []
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda err, msg: outcomes.append((err, msg)))
    producer.flush(60)
    assert len(outcomes) == len(values)
    return outcomes


def admin_http(cluster: LocalCluster) -> Admin:
    return Admin(cluster.bootstrap, **cluster.client_kwargs())


# ---------------------------------------------------------------------------- SASL_SSL, confluent-kafka

def test_confluent_kafka_over_sasl_ssl_with_scram_sha_512(secured):
    admin = AdminClient(sasl_ssl(secured))
    for future in admin.create_topics([NewTopic("orders", 2, 3)]).values():
        assert future.result(30) is None
    producer = confluent_kafka.Producer({**sasl_ssl(secured), "enable.idempotence": True})
    outcomes = deliver(producer, "orders", [f"order-{i}".encode() for i in range(20)])
    assert all(err is None for err, _ in outcomes)
    consumer = confluent_kafka.Consumer({**sasl_ssl(secured), "group.id": "billing", "auto.offset.reset": "earliest"})
    consumer.subscribe(["orders"])
    seen: set[bytes] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 20 and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            seen.add(message.value())
    consumer.close()
    assert seen == {f"order-{i}".encode() for i in range(20)}


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (Debian package kcat)")
def test_kcat_an_older_librdkafka_over_sasl_ssl(secured):
    """Debian's kcat links librdkafka 2.0, whose SCRAM client sends its nonce twice (Kafka accepts that too)."""
    settings = ["-b", secured.kafka_bootstrap, "-X", "security.protocol=SASL_SSL", "-X",
                "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=admin", "-X",
                f"sasl.password={secured.security.admin_password}", "-X", f"ssl.ca.location={secured.security.ca_file}"]
    produced = subprocess.run(["kcat", *settings, "-P", "-t", "orders"], input=b"from kcat\n", capture_output=True,
                              timeout=60)
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(["kcat", *settings, "-C", "-t", "orders", "-o", "beginning", "-e"],
                              capture_output=True, timeout=60)
    assert consumed.returncode == 0 and b"from kcat" in consumed.stdout, consumed.stderr


def test_users_and_acls_made_over_kafka_are_the_ones_http_sees_and_the_reverse(secured):
    admin = AdminClient(sasl_ssl(secured))
    bob = secret("bob")
    upsert = UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                          bob.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        assert future.result(30) is None
    binding = AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:bob", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    for future in admin.create_acls([binding]).values():
        assert future.result(30) is None
    with admin_http(secured) as http:
        assert ("SCRAM-SHA-256", 4096) in http.list_users()["bob"]
        assert Acl("User:bob", "topic", "orders", "read") in http.list_acls(principal="User:bob")
        http.create_acls([Acl("User:bob", "group", "bob-", "read", pattern_type="prefixed")])
    with Admin(secured.bootstrap, **secured.security.client_kwargs("bob", bob)) as as_bob:  # HTTP Basic
        assert as_bob.whoami()["principal"] == "User:bob"
    described = admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:bob",
                                                     None, AclOperation.ANY, AclPermissionType.ANY)).result(30)
    assert {(b.restype, b.name, b.resource_pattern_type) for b in described} == {
        (ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL),
        (ResourceType.GROUP, "bob-", ResourcePatternType.PREFIXED)}
    users = admin.describe_user_scram_credentials(["bob"])
    users = users.result(30) if hasattr(users, "result") else {u: f.result(30) for u, f in users.items()}
    assert [i.mechanism for i in users["bob"].scram_credential_infos] == [ScramMechanism.SCRAM_SHA_256]


def test_kafka_authorization_errors_follow_the_acls(secured):
    bob = secret("bob2")
    with admin_http(secured) as http:
        http.create_user("bob2", bob)
        http.create_topic("salaries", partitions=1, replication_factor=3)
        http.create_acls([Acl("User:bob2", "topic", "orders", "read")])
    config = sasl_ssl(secured, "bob2", bob, mechanism="SCRAM-SHA-256")
    errors = deliver(confluent_kafka.Producer(config), "orders", [b"not allowed"])
    assert errors[0][0].code() == confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED
    listed = AdminClient(config).list_topics(timeout=30).topics
    assert "orders" in listed and "salaries" not in listed  # Metadata lists only what bob may describe
    consumer = confluent_kafka.Consumer({**config, "group.id": "not-bobs", "auto.offset.reset": "earliest"})
    consumer.subscribe(["orders"])
    codes = set()
    deadline = time.monotonic() + 30
    while not codes and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is not None:
            codes.add(message.error().code())
    consumer.close()
    assert confluent_kafka.KafkaError.GROUP_AUTHORIZATION_FAILED in codes


def test_admin_writes_relayed_to_the_metadata_leader_run_as_the_client(secured):
    leader = secured.http_json(secured.url(1) + "/health")["metadata_leader"]
    other = next(b for b in secured.ids if b != leader)
    carol = secret("carol")
    with admin_http(secured) as http:
        http.create_user("carol", carol)
        http.create_acls([Acl("User:carol", "topic", "carol-", "create", pattern_type="prefixed")])
    admin = AdminClient(sasl_ssl(secured, "carol", carol, bootstrap=secured.kafka_address(other)))
    assert admin.create_topics([NewTopic("carol-t", 1, 3)])["carol-t"].result(30) is None
    with pytest.raises(confluent_kafka.KafkaException) as refused:
        admin.create_topics([NewTopic("payroll", 1, 3)])["payroll"].result(30)
    assert refused.value.args[0].code() == confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_client_certificate_logs_a_kafka_connection_in_as_its_cn(secured, tmp_path):
    ca = CertificateAuthority.load(secured.security.directory)
    cert, key = ca.write_issued(tmp_path, "frank", "frank")
    with admin_http(secured) as http:
        http.create_acls([Acl("User:frank", "topic", "orders", "describe")])
    context = ssl.create_default_context(cafile=str(secured.security.ca_file))
    context.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", secured.kafka_ports[1]), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:  # no SASL: the certificate is the login
        sock.sendall(frame(MetadataRequest(version=1, topics=None), 1))
        answer = receive_response(sock, kafka.protocol.metadata.MetadataResponse, 1)
    assert [t.name for t in answer.topics] == ["orders"]


# ------------------------------------------------------------------ SASL_PLAINTEXT, kafka-python, raw frames

def test_kafka_python_over_sasl_plaintext_with_plain(plain):
    from kafka import KafkaConsumer, KafkaProducer

    dave = secret("dave")
    with admin_http(plain) as http:
        http.create_user("dave", dave)
        http.create_topic("events", partitions=1, replication_factor=1)
        http.create_acls([Acl("User:dave", "topic", "events", "write"), Acl("User:dave", "topic", "events", "read")])
    common = {"bootstrap_servers": plain.kafka_bootstrap, "security_protocol": "SASL_PLAINTEXT",
              "sasl_mechanism": "PLAIN", "sasl_plain_username": "dave", "sasl_plain_password": dave}
    producer = KafkaProducer(**common)
    for i in range(5):
        producer.send("events", f"e{i}".encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer("events", auto_offset_reset="earliest", consumer_timeout_ms=20_000, **common)
    values = []
    for message in consumer:
        values.append(message.value)
        if len(values) == 5:
            break
    consumer.close()
    assert values == [f"e{i}".encode() for i in range(5)]


def metrics(cluster: LocalCluster) -> str:
    request = urllib.request.Request(cluster.url(1) + "/metrics",
                                     headers={"Authorization": cluster.security.authorization()})
    return urllib.request.urlopen(request, timeout=10).read().decode()


def frame(message, correlation_id: int) -> bytes:
    message.with_header(correlation_id=correlation_id, client_id="sasl-test")
    return bytes(message.encode(header=True, framed=True))


def connect(cluster: LocalCluster, tls: bool = False) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", cluster.kafka_ports[1]), timeout=10)
    if tls:
        sock = ssl.create_default_context(cafile=str(cluster.security.ca_file)).wrap_socket(
            sock, server_hostname="127.0.0.1")
    sock.settimeout(10)
    return sock




def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


def handshake(sock: socket.socket, mechanism: str):
    sock.sendall(frame(SaslHandshakeRequest(version=1, mechanism=mechanism), 1))
    return receive_response(sock, SaslHandshakeResponse, 1)


def authenticate(sock: socket.socket, token: bytes):
    sock.sendall(frame(SaslAuthenticateRequest(version=1, auth_bytes=token), 2))
    return receive_response(sock, SaslAuthenticateResponse, 1)


def request_before_a_login(cluster: LocalCluster) -> None:
    with connect(cluster) as sock:  # anything but ApiVersions and SASL before a login closes the connection
        sock.sendall(frame(MetadataRequest(version=1, topics=None), 1))
        assert closed(sock)


def log_in_with_a_wrong_password(cluster: LocalCluster, user: str = "admin", password: str = "wrong") -> None:
    with connect(cluster) as sock:
        assert handshake(sock, "PLAIN").error_code == 0
        answer = authenticate(sock, b"\0" + user.encode() + b"\0" + password.encode())
        assert (answer.error_code, answer.error_message) == (SASL_AUTHENTICATION_FAILED,
                                                             "Authentication failed: invalid credentials")
        assert closed(sock)


def send_a_forged_relayed_request(cluster: LocalCluster) -> None:
    marked = MetadataRequest(version=1, topics=None)
    marked.with_header(correlation_id=1, client_id="raftka-relay:User%3Aadmin|127.0.0.1|1.1.ffff:x")
    with connect(cluster) as sock:
        sock.sendall(bytes(marked.encode(header=True, framed=True)))
        assert closed(sock)  # counted with the malformed frames (see the last test)


def test_requests_before_a_login_and_bad_sasl_requests_are_refused(plain, secured):
    request_before_a_login(plain)
    with connect(secured, tls=True) as sock:
        answer = handshake(sock, "GSSAPI")
        assert answer.error_code == UNSUPPORTED_SASL_MECHANISM
        assert set(answer.mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
    with connect(plain) as sock:
        assert authenticate(sock, b"\0admin\0x").error_code == ILLEGAL_SASL_STATE  # no handshake first
        assert closed(sock)
    erin = secret("erin")
    with admin_http(plain) as http:
        http.create_user("erin", erin)
    for user, password in (("admin", "wrong"), ("nobody", "x")):
        log_in_with_a_wrong_password(plain, user, password)
    with connect(plain) as sock:
        assert handshake(sock, "PLAIN").error_code == 0
        assert authenticate(sock, b"\0erin\0" + erin.encode()).error_code == 0
        sock.sendall(frame(MetadataRequest(version=1, topics=None), 3))
        assert receive_response(sock, kafka.protocol.metadata.MetadataResponse, 1).brokers
    with admin_http(plain) as http:
        http.delete_user("erin")
    deadline = time.monotonic() + 10
    while True:  # a deleted user cannot log in (once the broker applied the deletion: at once here, one broker)
        with connect(plain) as sock:
            assert handshake(sock, "SCRAM-SHA-256").error_code == 0
            first = authenticate(sock, b"n,,n=erin,r=abcdefgh")  # the exchange goes on: users are not revealed
            client_final, _ = client_final_message("SCRAM-SHA-256", erin, "n=erin,r=abcdefgh",
                                                   first.auth_bytes.decode())
            if authenticate(sock, client_final.encode()).error_code == SASL_AUTHENTICATION_FAILED:
                break
        assert time.monotonic() < deadline


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(mechanism=st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
       tokens=st.lists(st.binary(max_size=300), min_size=1, max_size=2))
def test_malformed_sasl_tokens_fail_the_login_and_nothing_else(plain, mechanism, tokens):
    with connect(plain) as sock:
        assert handshake(sock, mechanism).error_code == 0
        for token in tokens:
            answer = authenticate(sock, token)
            if answer.error_code != 0:
                assert answer.error_code == SASL_AUTHENTICATION_FAILED
                assert plain.security.admin_password not in (answer.error_message or "")
                assert closed(sock)
                break
        else:
            assert mechanism != "PLAIN"  # a SCRAM client-first message may be well formed: the server answers
    with connect(plain) as sock:  # the broker is unaffected: a real login works
        assert handshake(sock, "PLAIN").error_code == 0
        assert authenticate(sock, b"\0admin\0" + plain.security.admin_password.encode()).error_code == 0


def test_a_forged_relayed_request_is_refused(plain):
    send_a_forged_relayed_request(plain)


def test_failed_sasl_logins_are_counted_and_no_password_is_logged(plain, secured):
    request_before_a_login(plain)  # this test's own failures: it does not rely on the tests before it
    log_in_with_a_wrong_password(plain)
    send_a_forged_relayed_request(plain)
    text = metrics(plain)
    failures = [line for line in text.splitlines() if line.startswith('raftka_auth_failures_total{listener="kafka"}')]
    assert failures and float(failures[0].rsplit(" ", 1)[1]) >= 1
    assert 'reason="unauthenticated"' in text and 'reason="bad_relay_signature"' in text
    for cluster in (plain, secured):
        for log in Path(cluster.root).glob("broker-*.log"):
            content = log.read_text(errors="replace")
            assert not [p for p in PASSWORDS if p in content], f"a password appears in {log}"
