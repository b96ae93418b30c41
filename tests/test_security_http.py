"""Security on the HTTP listener, end to end: real brokers with TLS and authentication, curl, the Python client,
the CLI; the authorization matrix against the reference model; certificates rotated under load with SIGHUP.

One 3-broker cluster (TLS, mutual TLS optional, bootstrap admin) serves the module; a single broker with a low
failed-login limit serves the rate-limit test. The last test greps every broker log of the module for the
passwords the tests used.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from cluster import wait_until
from security_model import NAMES, USERS, acls_strategy, model_allows

from raftka.client import Admin, Consumer, Producer
from raftka.client.cli import main as cli
from raftka.client.devcerts import CertificateAuthority, DevSecurity
from raftka.client.devcluster import LocalCluster
from raftka.client.errors import AuthenticationError, TopicAuthorizationError

PASSWORDS: set[str] = set()  # every password used here: none may appear in a broker log
UNAUTHENTICATED = {"error_code": 40101, "message": "Authentication required."}
EXISTING_TOPICS = ("orders", "payments")


def password(name: str) -> str:
    secret = f"pw-{name}-{os.urandom(6).hex()}"
    PASSWORDS.add(secret)
    return secret


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    root = tmp_path_factory.mktemp("secured")
    security = DevSecurity(root).prepare()
    PASSWORDS.add(security.admin_password)
    cluster = LocalCluster(3, root, security=security, election_timeout_ms=300,
                           extra_args=["--tls-client-ca", str(security.ca_file),
                                       "--login-failure-limit", "1000"])  # the limit has a test of its own
    try:
        cluster.start(timeout=60)
        for topic in EXISTING_TOPICS:
            cluster.create_topic(topic, partitions=2)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def users(secured):
    """alice and bob, with their passwords."""
    made = {name: password(name) for name in USERS}
    with Admin(secured.bootstrap, **secured.client_kwargs()) as admin:
        for name, secret in made.items():
            admin.create_user(name, secret)
    return made


def curl(cluster: LocalCluster, path: str, *args: str, broker: int = 1, user: str | None = None,
         secret: str | None = None, ca: bool = True) -> tuple[int, dict | list | str | None]:
    """(HTTP status, parsed body) of one curl request; status 0 with curl's exit code when TLS failed."""
    command = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20"]
    if ca:
        command += ["--cacert", str(cluster.security.ca_file)]
    if user is not None:
        command += ["-u", f"{user}:{secret}"]
    done = subprocess.run([*command, *args, cluster.url(broker) + path], capture_output=True, text=True)
    if done.returncode != 0:
        return 0, done.returncode
    body, _, status = done.stdout.rpartition("\n")
    try:
        return int(status), json.loads(body) if body else None
    except json.JSONDecodeError:
        return int(status), body


def admin_call(cluster: LocalCluster, path: str, *args: str, broker: int = 1):
    return curl(cluster, path, *args, broker=broker, user="admin", secret=cluster.security.admin_password)


def metadata_leader(cluster: LocalCluster) -> int:
    return cluster.http_json(cluster.bootstrap[0] + "/health")["metadata_leader"]


# ------------------------------------------------------------------------------------------ authentication


def test_curl_over_tls_with_and_without_credentials(secured):
    status, topics = admin_call(secured, "/topics")
    assert status == 200 and set(EXISTING_TOPICS) <= set(topics)
    for user, secret in ((None, None), ("admin", "wrong"), ("nobody", "x")):
        status, body = curl(secured, "/topics", user=user, secret=secret)
        assert (status, body) == (401, UNAUTHENTICATED)
    done = subprocess.run(["curl", "-sS", "-i", "--cacert", str(secured.security.ca_file), secured.url(2) + "/topics"],
                          capture_output=True, text=True)
    assert "WWW-Authenticate: Basic" in done.stdout
    assert curl(secured, "/topics", ca=False, user="admin", secret="x") == (0, 60)  # curl: peer cert not trusted
    assert curl(secured, "/health")[0] == 200  # open


def test_unauthenticated_requests_learn_nothing(secured):
    """Existing or not, any route, any method: the same 401 body, naming nothing."""
    for method, path in [("GET", "/topics/orders"), ("GET", "/topics/no-such-topic"), ("GET", "/no/such/route"),
                         ("POST", "/topics/orders"), ("DELETE", "/topics/payments"), ("GET", "/metrics"),
                         ("GET", "/raft"), ("GET", "/acls"), ("GET", "/brokers/2/metrics")]:
        assert curl(secured, path, "-X", method) == (401, UNAUTHENTICATED), (method, path)


@pytest.mark.parametrize("header", [
    "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer abc", "Basic",
    "Basic " + base64.b64encode(b"admin:" + b"x" * 5000).decode(), "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
])
def test_malformed_authorization_headers_are_401(secured, header):
    assert curl(secured, "/topics", "-H", f"Authorization: {header}", broker=2) == (401, UNAUTHENTICATED)
    assert admin_call(secured, "/topics", broker=2)[0] == 200  # the broker is unaffected


def test_a_client_cannot_forge_a_peer_principal(secured):
    for headers in (["-H", "X-Raftka-Principal: Broker:1"],
                    ["-H", "X-Raftka-Principal: User:admin", "-H", "X-Raftka-Client-Host: 127.0.0.1",
                     "-H", f"X-Raftka-Peer-Signature: v1 1 {int(time.time() * 1000)} {'0' * 64}"]):
        assert curl(secured, "/acls", *headers) == (401, UNAUTHENTICATED)


def test_users_work_on_every_broker_at_once_and_a_deleted_user_is_refused(secured):
    secret = password("carol")
    status, doc = admin_call(secured, "/users", "-X", "POST", "-H", "Content-Type: application/json",
                             "-d", json.dumps({"name": "carol", "password": secret}), broker=3)
    assert (status, doc["created"]) == (201, True) and secret not in json.dumps(doc)
    for broker in secured.ids:  # just created through broker 3: every broker knows her at once
        status, me = curl(secured, "/whoami", broker=broker, user="carol", secret=secret)
        assert (status, me["principal"], me["superuser"]) == (200, "User:carol", False)
    listed = admin_call(secured, "/users", broker=2)[1]["users"]
    carol = next(u for u in listed if u["name"] == "carol")
    assert {m["mechanism"] for m in carol["mechanisms"]} == {"SCRAM-SHA-256", "SCRAM-SHA-512"}
    assert "stored_key" not in json.dumps(listed) and "salt" not in json.dumps(listed)
    assert admin_call(secured, "/users/carol", "-X", "DELETE", broker=2)[0] == 204
    for broker in secured.ids:  # a deletion takes effect on each broker once it applies it (milliseconds)
        wait_until(lambda: curl(secured, "/whoami", broker=broker, user="carol", secret=secret)[0] == 401, 10,
                   f"broker {broker} still lets a deleted user in")
        assert curl(secured, "/whoami", broker=broker, user="carol", secret=secret) == (401, UNAUTHENTICATED)
    assert admin_call(secured, "/users/carol", "-X", "DELETE")[1]["error_code"] == 40407


def test_mutual_tls_principal_is_the_certificate_cn_and_an_expired_one_is_refused(secured, tmp_path):
    ca = CertificateAuthority.load(secured.security.directory)
    cert, key = ca.write_issued(tmp_path, "dave", "dave")
    status, me = curl(secured, "/whoami", "--cert", str(cert), "--key", str(key))
    assert (status, me["principal"]) == (200, "User:dave")
    assert curl(secured, "/topics/orders", "--cert", str(cert), "--key", str(key))[1]["error_code"] == 40301
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)
    expired, expired_key = ca.write_issued(tmp_path, "expired", "dave", valid_from=old, days=2)
    status, curl_exit = curl(secured, "/whoami", "--cert", str(expired), "--key", str(expired_key))
    assert status == 0 and curl_exit in (35, 52, 56)  # the TLS handshake is refused (52: TLS 1.3 alert)
    stranger = CertificateAuthority.create("another CA")
    foreign, foreign_key = stranger.write_issued(tmp_path, "foreign", "admin")
    assert curl(secured, "/whoami", "--cert", str(foreign), "--key", str(foreign_key))[0] == 0
    assert admin_call(secured, "/topics")[0] == 200


# ----------------------------------------------------------------------------------------------- authorization


def acl(principal: str, resource_type: str, name: str, operation: str, permission: str = "allow", **extra) -> dict:
    return {"principal": principal, "resource_type": resource_type, "resource_name": name, "operation": operation,
            "permission": permission, **extra}


def set_acls(cluster: LocalCluster, docs: list[dict], broker: int) -> None:
    assert admin_call(cluster, "/acls", "-X", "DELETE", "-H", "Content-Type: application/json", "-d", "{}",
                      broker=broker)[0] == 200
    if docs:
        status, _ = admin_call(cluster, "/acls", "-X", "POST", "-H", "Content-Type: application/json",
                               "-d", json.dumps({"acls": docs}), broker=broker)
        assert status == 201


JSON = ("-H", "Content-Type: application/json")
# (operation, resource type, whether the name must not exist) -> curl arguments for a request needing exactly that
REQUESTS = {
    ("describe", "topic", False): lambda t: ("GET", f"/topics/{t}", ()),
    ("read", "topic", False): lambda t: ("GET", f"/topics/{t}/partitions/0/records?offset=-5", ()),
    ("write", "topic", False): lambda t: ("POST", f"/topics/{t}", (*JSON, "-d", "{}")),
    ("describe_configs", "topic", False): lambda t: ("GET", f"/topics/{t}/configs", ()),
    ("alter_configs", "topic", False): lambda t: ("PUT", f"/topics/{t}/configs", (*JSON, "-d", "[]")),
    ("delete", "topic", True): lambda t: ("DELETE", f"/topics/{t}", ()),
    ("alter", "topic", True): lambda t: ("POST", f"/topics/{t}/partitions", (*JSON, "-d", '{"partitions": 0}')),
    ("read", "group", False): lambda g: ("POST", f"/groups/{g}/heartbeat", (*JSON, "-d", "{}")),
    ("describe", "group", False): lambda g: ("GET", f"/groups/{g}", ()),
    ("describe", "cluster", False): lambda _: ("GET", "/acls", ()),
    ("alter", "cluster", False): lambda _: ("POST", "/acls", (*JSON, "-d", "{}")),
}
ABSENT = [n for n in NAMES if n not in EXISTING_TOPICS]


def allowed_by_model(acls, principal, operation, resource_type, name) -> bool:
    return model_allows(acls, {"User:admin"}, principal, "127.0.0.1", operation, resource_type, name)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), acls=acls_strategy(hosts=("*", "127.0.0.1", "10.9.9.9"), max_size=10))
def test_authorization_matrix_equals_the_reference_model(secured, users, data, acls):
    """Random ACL sets, random requests: the broker refuses (403) exactly what the model refuses."""
    leader = metadata_leader(secured)  # applies the ACLs before answering: no waiting for replication
    set_acls(secured, [a.doc() for a in acls], leader)
    for _ in range(8):
        (operation, resource_type, must_be_absent), make = data.draw(st.sampled_from(sorted(REQUESTS.items())))
        name = "kafka-cluster" if resource_type == "cluster" else data.draw(
            st.sampled_from(ABSENT if must_be_absent else NAMES))
        user = data.draw(st.sampled_from(["alice", "bob", "admin"]))
        secret = secured.security.admin_password if user == "admin" else users[user]
        method, path, extra = make(name)
        status, body = curl(secured, path, "-X", method, *extra, broker=leader, user=user, secret=secret)
        expected = allowed_by_model(acls, f"User:{user}", operation, resource_type, name)
        assert status != 0 and (status != 403) == expected, (user, method, path, status, body, acls)
        if status == 403:
            assert body["error_code"] == {"topic": 40301, "group": 40302, "cluster": 40303}[resource_type]


def test_topic_creation_needs_create_on_the_cluster_or_on_the_topic(secured, users):
    leader = metadata_leader(secured)
    set_acls(secured, [acl("User:alice", "topic", "alice-", "create", pattern_type="prefixed")], leader)
    alice = {"user": "alice", "secret": users["alice"], "broker": leader}
    create = ("-X", "POST", *JSON, "-d")
    assert curl(secured, "/topics", *create, '{"name": "alice-t1", "partitions": 0}', **alice)[0] == 422
    assert curl(secured, "/topics", *create, '{"name": "bob-t1", "partitions": 0}', **alice)[1]["error_code"] == 40301
    set_acls(secured, [], leader)


def test_listings_show_only_what_the_user_may_describe(secured, users):
    leader = metadata_leader(secured)
    set_acls(secured, [acl("User:bob", "topic", "orders", "read")], leader)
    bob = {"user": "bob", "secret": users["bob"]}
    for broker in secured.ids:
        assert curl(secured, "/topics", broker=broker, **bob) == (200, ["orders"])
        status, metadata = curl(secured, "/metadata", broker=broker, **bob)
        assert status == 200 and list(metadata["topics"]) == ["orders"]
    assert curl(secured, "/topics/payments", **bob)[1]["error_code"] == 40301
    assert curl(secured, "/topics/orders/", **bob)[0] == 200  # routes with a trailing slash follow the same rule
    assert curl(secured, "/metrics", **bob)[1]["error_code"] == 40303  # --metrics-auth follows --auth
    set_acls(secured, [acl("User:bob", "cluster", "kafka-cluster", "describe")], leader)
    status, text = curl(secured, "/metrics", **bob)
    assert status == 200 and "raftka_auth_failures_total" in text
    set_acls(secured, [], leader)


def test_python_client_with_credentials_produces_and_consumes_through_any_broker(secured, users):
    leader = metadata_leader(secured)
    set_acls(secured, [acl("User:alice", "topic", "orders", "write"), acl("User:alice", "topic", "orders", "read"),
                       acl("User:alice", "group", "alice-", "read", pattern_type="prefixed")], leader)
    alice = secured.security.client_kwargs("alice", users["alice"])
    with Producer(secured.bootstrap, **alice) as producer:
        sent = [producer.send("orders", f"v{i}".encode(), key=b"k").result(timeout=30) for i in range(20)]
        with pytest.raises(TopicAuthorizationError):
            producer.send("payments", b"nope").result(timeout=30)
    wanted = {(m.partition, m.offset) for m in sent}
    with Consumer("orders", group_id="alice-group", bootstrap_servers=secured.bootstrap, auto_offset_reset="earliest",
                  consumer_timeout_ms=20_000, **alice) as consumer:
        values = {}
        for record in consumer:
            if (record.partition, record.offset) in wanted:
                values[record.offset] = record.value
                if len(values) == len(wanted):
                    break
        consumer.commit()
    assert [values[m.offset] for m in sent] == [f"v{i}".encode() for i in range(20)]
    wrong = secured.security.client_kwargs("alice", "not-her-password")
    with Admin(secured.bootstrap, **wrong) as admin, pytest.raises(AuthenticationError):
        admin.list_topics()
    set_acls(secured, [], leader)


def test_rest_consumer_instances_serve_only_their_creator_and_readable_topics(secured, users):
    leader = metadata_leader(secured)
    set_acls(secured, [acl("User:*", "group", "shared", "read"), acl("User:*", "topic", "orders", "read")], leader)
    alice, bob = {"user": "alice", "secret": users["alice"]}, {"user": "bob", "secret": users["bob"]}
    status, created = curl(secured, "/consumers/shared", "-X", "POST", "-H",
                           "Content-Type: application/vnd.kafka.v2+json", "-d", '{"name": "mine"}', broker=2, **alice)
    assert status == 200
    instance = f"/consumers/shared/instances/{created['instance_id']}"
    kafka_json = ("-H", "Content-Type: application/vnd.kafka.v2+json")
    assert curl(secured, instance + "/subscription", "-X", "POST", *kafka_json, "-d", '{"topic_pattern": ".*"}',
                broker=3, **alice)[0] == 204  # forwarded to its broker
    assert curl(secured, instance + "/subscription", broker=1, **alice) == (200, {"topics": ["orders"]})
    assert curl(secured, instance + "/subscription", "-X", "POST", *kafka_json, "-d", '{"topics": ["payments"]}',
                broker=2, **alice)[1]["error_code"] == 40301
    assert curl(secured, instance + "/subscription", broker=3, **bob)[1]["error_code"] == 40403
    assert curl(secured, instance, "-X", "DELETE", broker=2, **bob)[1]["error_code"] == 40403
    assert curl(secured, instance, "-X", "DELETE", broker=2, **alice)[0] == 204
    set_acls(secured, [], leader)


def test_cli_manages_users_and_acls(secured):
    env = {"RAFTKA_BOOTSTRAP": ",".join(secured.bootstrap), "RAFTKA_USER": "admin",
           "RAFTKA_PASSWORD": secured.security.admin_password, "RAFTKA_CA_FILE": str(secured.security.ca_file)}
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None):
        result = runner.invoke(cli, list(args), env=env, input=stdin)
        assert result.exit_code == 0, result.output
        return result.output

    secret = password("erin")
    assert "Created user erin" in run("users", "create", "erin", stdin=f"{secret}\n{secret}\n")
    assert "erin" in run("users", "list")
    assert "Added 2 ACL(s)" in run("acl", "add", "--allow", "User:erin", "--operation", "read", "--operation",
                                   "describe", "--topic", "orders")
    assert "User:erin" in run("acl", "list", "--topic", "orders", "--match")
    assert "Removed 2 ACL(s)" in run("acl", "remove", "--principal", "User:erin")
    assert "Deleted user erin" in run("users", "delete", "erin")
    failed = runner.invoke(cli, ["--password", "wrong", "topics", "list"], env=env)
    assert failed.exit_code == 1 and "Authentication required" in failed.output and "wrong" not in failed.output


# --------------------------------------------------------------------------------- certificates under load


def served_serial(cluster: LocalCluster, broker: int) -> int:
    context = ssl.create_default_context(cafile=str(cluster.security.ca_file))
    import socket
    with socket.create_connection(("127.0.0.1", cluster.http_ports[broker]), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    from cryptography import x509
    return x509.load_der_x509_certificate(der).serial_number


def test_certificates_rotated_with_sighup_under_load_lose_no_request(secured):
    security = secured.security
    ca = CertificateAuthority.load(security.directory)
    directory = security.directory
    errors: list[BaseException] = []
    acknowledged: list[tuple[int, int]] = []
    stop = threading.Event()

    def produce() -> None:
        try:
            with Producer(secured.bootstrap, linger_ms=1, **secured.client_kwargs()) as producer:
                i = 0
                while not stop.is_set():
                    meta = producer.send("payments", f"r{i}".encode()).result(timeout=60)
                    acknowledged.append((meta.partition, meta.offset))
                    i += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        time.sleep(1)
        for broker in secured.ids:  # one certificate for all brokers: every broker re-reads the new one
            before = served_serial(secured, broker)
            cert, key = ca.issue("raftka broker", ("localhost", "127.0.0.1", "::1"))
            (directory / "broker.pem.new").write_bytes(cert)
            (directory / "broker.key.new").write_bytes(key)
            os.replace(directory / "broker.key.new", directory / "broker.key")
            os.replace(directory / "broker.pem.new", directory / "broker.pem")
            for b in secured.ids:
                os.kill(secured.procs[b].pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while served_serial(secured, broker) == before:
                assert time.monotonic() < deadline, f"broker {broker} still serves the old certificate"
                time.sleep(0.1)
            time.sleep(0.5)
        broken = directory / "broker.pem"
        good = broken.read_bytes()
        broken.write_bytes(b"not a certificate")
        os.kill(secured.procs[1].pid, signal.SIGHUP)
        time.sleep(0.5)
        broken.write_bytes(good)
        assert admin_call(secured, "/health")[0] == 200  # a broken file leaves the running certificate in place
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors
    assert len(acknowledged) > 20
    log = (secured.root / "broker-1.log").read_text()
    assert "TLS certificates reloaded" in log and "certificates not reloaded" in log
    with Admin(secured.bootstrap, **secured.client_kwargs()) as admin:
        ends = {p: admin.partition_offsets("payments", p)[1] for p in (0, 1)}
    assert all(offset < ends[partition] for partition, offset in acknowledged)


# ------------------------------------------------------------------------------ rate limit, auth none, logs


def test_failed_logins_are_rate_limited_per_address_and_counted(tmp_path):
    security = DevSecurity(tmp_path, tls=False).prepare()
    PASSWORDS.add(security.admin_password)
    with LocalCluster(1, tmp_path, security=security, extra_args=["--login-failure-limit", "3"]) as single:
        url = single.url(1)
        good = f"admin:{security.admin_password}"

        def status(credentials: str, interface: str) -> int:
            done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", interface,
                                   "-u", credentials, url + "/topics"], capture_output=True, text=True)
            return int(done.stdout)

        def counters() -> tuple[float, float]:
            text = subprocess.run(["curl", "-s", "--interface", "127.0.0.2", "-u", good, url + "/metrics"],
                                  capture_output=True, text=True).stdout
            values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("raftka_auth_"))
            return (float(values.get('raftka_auth_failures_total{listener="http"}', 0)),
                    float(values.get('raftka_auth_rate_limited_total{listener="http"}', 0)))

        before = counters()
        assert [status("admin:wrong", "127.0.0.3") for _ in range(3)] == [401, 401, 401]
        assert status(good, "127.0.0.3") == 429  # refused unchecked, even with the right password
        assert status(good, "127.0.0.2") == 200  # another address is not affected
        after = counters()
        assert (after[0] - before[0], after[1] - before[1]) == (3, 1)
        logs = single.root / "broker-1.log"
    assert security.admin_password not in logs.read_text()


def test_auth_none_beyond_loopback_warns_in_the_log_and_health(tmp_path):
    cluster = LocalCluster(1, tmp_path, extra_args=["--auth", "none"])
    port = cluster.http_ports[1]
    cluster.extra_args += ["--listen", f"0.0.0.0:{port}"]
    with cluster:
        health = cluster.http_json(cluster.url(1) + "/health")
    assert "authentication is off" in health["warnings"][0]
    assert "authentication is off" in (tmp_path / "broker-1.log").read_text()


def test_no_password_appears_in_any_broker_log(secured, tmp_path_factory):
    """Runs last in the module: every log of every broker started here, against every password used."""
    logs = [p for p in Path(tmp_path_factory.getbasetemp()).rglob("broker-*.log")]
    assert logs and PASSWORDS
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in PASSWORDS:
            assert secret not in text, f"a password appears in {log}"
