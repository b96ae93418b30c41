"""The elastic cluster with TLS and authentication on (real broker processes): a broker joins knowing only the
cluster secret (no user), Kafka clients see it in Metadata and DescribeCluster, and moving replicas or draining
a broker takes ALTER on the cluster while watching the moves takes DESCRIBE on it."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from cluster import wait_until
from raftka.client.blocking import Admin
from raftka.client.cli import main as cli_main
from raftka.client.devcerts import DevSecurity
from raftka.client.devcluster import LocalCluster

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient  # noqa: E402

pytestmark = pytest.mark.timeout(240)

TOPIC = "guarded"
ALICE = ("alice", "pw-alice-elastic")


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    root = tmp_path_factory.mktemp("elastic-tls")
    cluster = LocalCluster(3, root, security=DevSecurity(root), election_timeout_ms=300,
                           extra_args=["--login-failure-limit", "1000"])
    try:
        cluster.start(timeout=60)
        cluster.create_topic(TOPIC, 2, 3)
        with Admin(cluster.bootstrap, **cluster.client_kwargs()) as admin:
            admin.create_user(*ALICE)
        for broker in cluster.ids:
            wait_until(lambda: call(cluster, "/whoami", broker=broker)[0] == 200, 30, f"alice to log in at {broker}")
        yield cluster
    finally:
        cluster.close()


def call(cluster: LocalCluster, path: str, method: str = "GET", body: dict | None = None,
         user: tuple[str, str] | None = ALICE, broker: int = 1) -> tuple[int, dict]:
    """(status, document) of one request over https, as `user` (None: no credentials)."""
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = cluster.security.authorization(*user)
    request = urllib.request.Request(cluster.url(broker) + path, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    context = ssl.create_default_context(cafile=str(cluster.security.ca_file))
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def kafka_admin(cluster: LocalCluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.kafka_address(1), "security.protocol": "SASL_SSL",
                        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin",
                        "sasl.password": cluster.security.admin_password,
                        "ssl.ca.location": str(cluster.security.ca_file)})


def test_a_broker_joins_with_the_secret_alone_and_kafka_clients_see_it(secured):
    status, body = call(secured, "/brokers", "POST", {"id": 9}, user=None)
    assert status == 401 and body["error_code"] == 40101  # no user, no signature: not even looked at
    status, body = call(secured, "/brokers", "POST", {"id": 9})
    assert status == 403 and body["error_code"] == 40303  # a user needs CLUSTER_ACTION to register a broker

    joined = secured.add_broker()  # its command line has TLS but no user: it signs with the cluster secret
    status, body = call(secured, "/brokers", user=None)
    assert status == 401
    details = {d["id"]: d for d in call(secured, "/brokers", user=("admin", secured.security.admin_password))[1]
               ["details"]}
    assert details[joined]["membership"] == "active" and details[joined]["url"].startswith("https://")

    admin = kafka_admin(secured)

    def kafka_sees_it() -> bool:
        brokers = admin.list_topics(timeout=10).brokers
        described = admin.describe_cluster(request_timeout=10).result()
        return joined in brokers and joined in {node.id for node in described.nodes}

    wait_until(kafka_sees_it, 30, f"Kafka Metadata and DescribeCluster to list broker {joined}")


def test_moving_replicas_and_draining_take_alter_on_the_cluster(secured):
    moves = [("POST", f"/topics/{TOPIC}/partitions/0/reassignment", {"replicas": [2, 3, 1]}),
             ("PATCH", f"/topics/{TOPIC}", {"replication_factor": 2}),
             ("POST", "/brokers/3/decommission", None),
             ("POST", "/cluster/rebalance?dry_run=true", None)]
    for method, path, body in moves:
        status, answer = call(secured, path, method, body)
        assert status == 403 and answer["error_code"] == 40303, (method, path, status, answer)
    for path in ("/reassignments", "/brokers/3/decommission", "/cluster"):
        status, answer = call(secured, path)
        assert status == 403 and answer["error_code"] == 40303, (path, status, answer)

    result = CliRunner().invoke(cli_main, [  # as the README tells an operator
        "--bootstrap", ",".join(secured.bootstrap), "--user", "admin", "--password", secured.security.admin_password,
        "--ca-file", str(secured.security.ca_file),
        "acl", "add", "--allow", "User:alice", "--operation", "alter", "--operation", "describe", "--cluster"])
    assert result.exit_code == 0, result.output

    newest = max(secured.ids)  # 4 once the other test added it: the move then copies the partition over
    target = [newest, 1, 2]

    def reassigned() -> bool:
        status, answer = call(secured, f"/topics/{TOPIC}/partitions/0/reassignment", "POST", {"replicas": target})
        return status in (200, 202)

    wait_until(reassigned, 30, "alice's reassignment to be accepted once every broker applied her ACLs")
    wait_until(lambda: call(secured, "/reassignments")[1]["reassignments"] == [], 60, "the move to finish")
    admin_user = ("admin", secured.security.admin_password)

    def replicas_are_the_target():  # the job ends in the metadata group; the answering broker may apply it a moment later
        partitions = call(secured, f"/topics/{TOPIC}/partitions", user=admin_user)[1]
        return sorted(r["broker"] for r in partitions[0]["replicas"]) == sorted(target)
    wait_until(replicas_are_the_target, 10, f"partition 0's replicas to be {target}")
    status, plan = call(secured, "/cluster/rebalance?dry_run=true", "POST")
    assert status == 200 and "changes" in plan
    status, answer = call(secured, "/topics/guarded", "DELETE")
    assert status == 403 and answer["error_code"] == 40301  # ALTER on the cluster is not DELETE on a topic
