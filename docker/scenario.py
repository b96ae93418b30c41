"""One docker fault scenario against a compose cluster, from the host through the published HTTP ports.

Used by docker/test.sh (which builds the image and starts the engine); standard library only.

  python3 docker/scenario.py --compose-file docker/compose.yml --ports 9091,9092,9093 \
      --replication-factor 3 --kill 1
  python3 docker/scenario.py --compose-file docker/compose.yml --ports 9091,9092,9093,9094 --elastic

Steps: `compose up -d --no-build`; every broker healthy; create a topic (1 partition, the given
replication factor); produce through one port and consume through another; `docker kill` the
partition leader (and with --kill 2 also the metadata leader or another broker); produce through a
survivor, retrying while the cluster elects new leaders; `docker start` the killed brokers; wait
until each has caught up (the group leaders report its lag 0 and it applied up to their commit
index); produce through a restarted broker and read everything back through it. Always
`compose down -v` at the end. Exits non-zero with a message on the first failed expectation.

With --elastic instead: up the three brokers; create a topic (4 partitions, replication factor 3)
and produce to it; add broker4 (the compose profile `elastic`: it starts with --join); rebalance
and wait until the moves are done and broker4 holds replicas; produce again; decommission broker1
and wait until it is drained (its replicas and its metadata seat moved); produce once more, then
read every partition back through broker4 and check that every acknowledged record is there, at
its offset, exactly once.

The compose project, image and secret come from the environment of docker/test.sh
(COMPOSE_PROJECT_NAME, RAFTKA_IMAGE, RAFTKA_CLUSTER_SECRET); the compose command from
RAFTKA_COMPOSE (default: docker-compose if installed, else "docker compose"). The compose files run
with TLS and authentication: requests go over https, trusting $RAFTKA_TLS_DIR/ca.pem (written by the
tls-init service), as the bootstrap user admin with $RAFTKA_ADMIN_PASSWORD.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import shlex
import base64
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

TOPIC = "docker-test"
METADATA_GROUP = "__metadata"  # raftka.node.cluster.metadata.METADATA_GROUP; every other Raft group is a partition
JSON_V2 = "application/vnd.kafka.json.v2+json"
RETRIABLE_STATUS = {408, 429, 502, 503, 504}
REQUEST_TIMED_OUT = 50003  # HTTP 500, outcome unknown: retried like Kafka's producers do


def retriable(status: int | None, body: object) -> bool:
    """No answer, an unavailable/not-leader answer or a timeout (see notes/http_api.md)."""
    if status is None or status in RETRIABLE_STATUS:
        return True
    return isinstance(body, dict) and body.get("error_code") == REQUEST_TIMED_OUT


class ScenarioFailed(Exception):
    pass


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- HTTP


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Trust the CA the tls-init service wrote (it may appear only once the cluster is up)."""
    return ssl.create_default_context(cafile=os.path.join(os.environ.get("RAFTKA_TLS_DIR", "docker/tls"), "ca.pem"))


def credentials() -> str:
    token = f"admin:{os.environ['RAFTKA_ADMIN_PASSWORD']}".encode()
    return "Basic " + base64.b64encode(token).decode()


def call(method: str, url: str, body: object = None, *, content_type: str = "application/json",
         accept: str = "application/json", timeout: float = 15.0) -> tuple[int | None, object]:
    """(status, decoded JSON body or text); status None when the broker could not be reached."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Accept": accept, "Authorization": credentials()})
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=tls_context()) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
        return None, repr(exc)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def until(what: str, timeout_s: float, attempt):
    """Call attempt() until it returns a non-None value; fail after timeout_s with the last reason."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            result = attempt()
        except ScenarioFailed as exc:
            result, last = None, str(exc)
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"timed out after {timeout_s:.0f}s waiting for {what}: {last}")
        time.sleep(0.5)


# --------------------------------------------------------------------------------- cluster


class Cluster:
    def __init__(self, compose: list[str], compose_file: str, ports: list[int]):
        self.compose = compose + ["-f", compose_file]
        self.ports = ports
        self.ids = list(range(1, len(ports) + 1))

    def url(self, broker: int) -> str:
        return f"https://127.0.0.1:{self.ports[broker - 1]}"

    def run(self, *args: str, check: bool = True) -> str:
        command = [*self.compose, *args]
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise ScenarioFailed(f"{shlex.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def container(self, broker: int) -> str:
        container_id = self.run("ps", "-q", f"broker{broker}").strip()
        if not container_id:
            raise ScenarioFailed(f"no container for broker{broker}")
        return container_id

    def docker(self, *args: str) -> None:
        result = subprocess.run(["docker", *args], check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise ScenarioFailed(f"docker {shlex.join(args)} failed: {result.stderr.strip()}")

    def wait_healthy(self, brokers: list[int], timeout_s: float = 120) -> None:
        def attempt():
            for broker in brokers:
                status, body = call("GET", self.url(broker) + "/health", timeout=3)
                if status != 200:
                    raise ScenarioFailed(f"broker {broker} /health: {status} {body}")
            return True

        until(f"/health 200 on brokers {brokers}", timeout_s, attempt)

    def wait_docker_healthy(self, timeout_s: float = 60) -> None:
        """The image's HEALTHCHECK (python urllib on /health) reports every container healthy."""
        containers = [self.container(broker) for broker in self.ids]

        def attempt():
            result = subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", *containers],
                                    check=False, capture_output=True, text=True)
            states = result.stdout.split()
            if result.returncode != 0 or states != ["healthy"] * len(containers):
                raise ScenarioFailed(f"docker health: {states or result.stderr.strip()}")
            return True

        until("docker's health check to report healthy", timeout_s, attempt)

    def raft(self, broker: int) -> dict:
        status, body = call("GET", self.url(broker) + "/raft", timeout=5)
        if status != 200:
            raise ScenarioFailed(f"GET /raft on broker {broker}: {status} {body}")
        return {group["group"]: group for group in body["groups"]}

    def leaders(self, brokers: list[int]) -> dict[str, tuple[int, int]]:
        """Raft group -> (leader, term) as the given brokers' /raft report it (highest term wins)."""
        found: dict[str, tuple[int, int]] = {}
        for broker in brokers:
            for name, group in self.raft(broker).items():
                if group["role"] == "leader" and (name not in found or found[name][1] < group["term"]):
                    found[name] = (broker, group["term"])
        return found

    def partition_leader(self, brokers: list[int]) -> tuple[str, int, int] | None:
        """(group name, leader, term) of the test topic's partition 0, None while it has no leader."""
        groups = {name for broker in brokers for name in self.raft(broker) if name != METADATA_GROUP}
        if len(groups) != 1:
            raise ScenarioFailed(f"expected the one partition group of {TOPIC}, found {sorted(groups)}")
        (name,) = groups
        leader = self.leaders(brokers).get(name)
        return None if leader is None else (name, *leader)


# ----------------------------------------------------------------------------- the steps


def create_topic(cluster: Cluster, partitions: int, replication_factor: int) -> None:
    def attempt():
        status, body = call("POST", cluster.url(1) + "/topics",
                            {"name": TOPIC, "partitions": partitions, "replication_factor": replication_factor})
        if status in (200, 201, 409):  # 409: created by an earlier attempt whose answer was lost
            return body
        if not retriable(status, body):
            raise RuntimeError(f"create topic: {status} {body}")
        raise ScenarioFailed(f"create topic: {status} {body}")

    until("topic creation", 30, attempt)


def produce_one(cluster: Cluster, via: int, value: dict) -> int | None:
    """Offset of the record on success; ScenarioFailed if retriable, RuntimeError if not."""
    status, body = call("POST", f"{cluster.url(via)}/topics/{TOPIC}",
                        {"records": [{"value": value, "partition": 0}]}, content_type=JSON_V2)
    if status == 200:
        result = body["offsets"][0]
        if result.get("error_code") is None:
            return result["offset"]
        if not retriable(result["error_code"] // 100, result):
            raise RuntimeError(f"produce of {value}: not retriable: {result}")
    elif not retriable(status, body):
        raise RuntimeError(f"produce of {value} via broker {via}: not retriable: {status} {body}")
    raise ScenarioFailed(f"produce via broker {via}: {status} {body}")


def produce(cluster: Cluster, via: int, values: list[dict], retry_s: float) -> float:
    """Produce each value as its own request, retrying retriable failures; seconds until the first success."""
    started = time.monotonic()
    first_ok = None
    for value in values:
        until(f"producing {value} via broker {via}", retry_s, functools.partial(produce_one, cluster, via, value))
        if first_ok is None:
            first_ok = time.monotonic() - started
    return first_ok or 0.0


def consume_all(cluster: Cluster, via: int, expected_count: int | None, timeout_s: float = 30,
                partition: int = 0) -> list[dict]:
    """Every record of a partition from offset 0, read through broker `via`: up to expected_count, or (None) until a
    fetch comes back empty."""
    records: list[dict] = []

    def attempt():
        status, body = call("GET", f"{cluster.url(via)}/topics/{TOPIC}/partitions/{partition}/records"
                                   f"?offset={len(records)}&timeout_ms=1000", accept=JSON_V2)
        if status != 200:
            raise ScenarioFailed(f"fetch of partition {partition} via broker {via}: {status} {body}")
        for record in body:
            if record["offset"] != len(records):
                raise RuntimeError(f"fetch via broker {via}: offset {record['offset']}, expected {len(records)}")
            records.append(record)
        done = not body if expected_count is None else len(records) >= expected_count
        return records if done else None

    return until(f"{expected_count or 'all'} records of partition {partition} via broker {via}", timeout_s, attempt)


def check_values(records: list[dict], expected: list[dict], where: str) -> None:
    """Exactly the produced values in order, allowing a value to repeat only right after itself
    (a produce retried after its outcome was unknown)."""
    got = [record["value"] for record in records]
    deduplicated = [v for i, v in enumerate(got) if i == 0 or v != got[i - 1]]
    if deduplicated != expected:
        raise RuntimeError(f"{where}: read {got}, expected {expected}")
    if len(got) != len(expected):
        log(f"{where}: {len(got) - len(expected)} duplicate(s) from retried produce requests")


def caught_up(cluster: Cluster, restarted: list[int], alive: list[int]) -> bool | None:
    """True when, for every Raft group, its leader reports lag 0 for each restarted broker and the
    restarted broker applied up to the leader's commit index."""
    statuses = {broker: cluster.raft(broker) for broker in alive}
    leaders: dict[str, dict] = {}  # group -> its leader's status (highest term wins)
    for groups in statuses.values():
        for name, group in groups.items():
            if group["role"] == "leader" and (name not in leaders or leaders[name]["term"] < group["term"]):
                leaders[name] = group
    groups_of_restarted = {name for broker in restarted for name in statuses[broker]}
    missing = groups_of_restarted - set(leaders)
    if missing:
        raise ScenarioFailed(f"groups without a leader: {sorted(missing)}")
    for broker in restarted:
        for name in statuses[broker]:
            leader = leaders[name]
            follower = leader["followers"].get(str(broker))
            if follower is None:
                continue  # the restarted broker leads this group itself
            mine = statuses[broker][name]
            if follower["lag"] != 0 or mine["applied_index"] < leader["commit_index"]:
                raise ScenarioFailed(
                    f"broker {broker} group {name}: lag {follower['lag']}, applied {mine['applied_index']} "
                    f"< leader commit {leader['commit_index']}")
    return True


# --------------------------------------------------------------------------- elastic cluster

ELASTIC_PARTITIONS = 4


def produce_batch(cluster: Cluster, via: int, partition: int, values: list[dict]) -> list[tuple[int, int, dict]]:
    """Produce values to one partition in one request, retrying retriable failures (a retry of a request
    whose outcome was unknown may store the values twice: the read-back check allows only that);
    (partition, offset, value) of each."""
    def attempt():
        status, body = call("POST", f"{cluster.url(via)}/topics/{TOPIC}/partitions/{partition}",
                            {"records": [{"value": v} for v in values]}, content_type=JSON_V2)
        if status == 200:
            return [(partition, o["offset"], v) for o, v in zip(body["offsets"], values)]
        if not retriable(status, body):
            raise RuntimeError(f"produce to partition {partition} via broker {via}: {status} {body}")
        raise ScenarioFailed(f"produce via broker {via}: {status} {body}")

    return until(f"producing to partition {partition} via broker {via}", 60, attempt)


def wait_moves(cluster: Cluster, via: int, what: str, timeout_s: float = 180) -> None:
    def attempt():
        status, body = call("GET", cluster.url(via) + "/reassignments")
        if status != 200:
            raise ScenarioFailed(f"GET /reassignments: {status} {body}")
        moving = body["reassignments"]
        if moving:
            raise ScenarioFailed(f"{len(moving)} moving: " + ", ".join(
                f"{m['topic']}/{m['partition']} {m['state']}" for m in moving[:4]))
        return True

    until(what, timeout_s, attempt)


def brokers_view(cluster: Cluster, via: int) -> dict[int, dict]:
    status, body = call("GET", cluster.url(via) + "/brokers")
    if status != 200:
        raise ScenarioFailed(f"GET /brokers: {status} {body}")
    return {d["id"]: d for d in body["details"]}


def run_elastic(cluster: Cluster) -> None:
    t0 = time.monotonic()
    bootstrap = [1, 2, 3]
    log(f"compose up brokers {bootstrap} (ports {cluster.ports})")
    cluster.run("up", "-d", "--no-build", *(f"broker{b}" for b in bootstrap))
    cluster.wait_healthy(bootstrap)

    create_topic(cluster, ELASTIC_PARTITIONS, 3)
    acked: list[tuple[int, int, dict]] = []

    def produce_round(phase: str, via: int) -> None:
        for p in range(ELASTIC_PARTITIONS):
            acked.extend(produce_batch(cluster, via, p, [{"phase": phase, "p": p, "n": n} for n in range(20)]))
        log(f"{phase}: produced 20 records to each partition via broker {via}")

    produce_round("three-brokers", 2)
    cluster.run("--profile", "elastic", "up", "-d", "--no-build", "broker4")
    cluster.wait_healthy([4])
    until("broker4 in the broker registry", 30,
          lambda: True if brokers_view(cluster, 2).get(4, {}).get("membership") == "active" else None)
    log(f"broker4 joined after {time.monotonic() - t0:.1f}s")
    produce_round("joined", 4)
    status, body = call("POST", cluster.url(2) + "/cluster/rebalance")
    if status not in (200, 202):
        raise RuntimeError(f"rebalance: {status} {body}")
    moved = [c for c in body["changes"] if c["moves_data"]]
    if not moved:
        raise RuntimeError(f"the rebalance moved nothing onto broker4: {body}")
    log(f"rebalance: moving {len(moved)} partition(s)")
    produce_round("rebalancing", 3)
    wait_moves(cluster, 2, "the rebalance")
    held = brokers_view(cluster, 2)[4]["replicas"]
    if held == 0:
        raise RuntimeError("broker4 holds no replica after the rebalance")
    log(f"rebalanced: broker4 holds {held} replicas")

    status, body = call("POST", cluster.url(3) + "/brokers/1/decommission")
    if status != 202:
        raise RuntimeError(f"decommission broker 1: {status} {body}")
    produce_round("draining", 4)

    def drained():
        status, body = call("GET", cluster.url(2) + "/brokers/1/decommission")
        if status != 200:
            raise ScenarioFailed(f"GET /brokers/1/decommission: {status} {body}")
        if not body["done"]:
            raise ScenarioFailed(f"{body['partitions_remaining']} partition(s) left, metadata voter: "
                                 f"{body['metadata_voter']}")
        return True

    until("broker1 to drain", 180, drained)
    view = brokers_view(cluster, 2)
    if view[1]["membership"] != "decommissioned" or view[1]["replicas"] or view[1]["metadata_role"] != "none":
        raise RuntimeError(f"broker1 after its drain: {view[1]}")
    log(f"broker1 decommissioned after {time.monotonic() - t0:.1f}s; stopping its container")
    cluster.run("stop", "broker1")
    produce_round("without-broker1", 4)

    for p in range(ELASTIC_PARTITIONS):
        records = consume_all(cluster, 4, None, 60, partition=p)
        by_offset = {r["offset"]: r["value"] for r in records}
        values = [r["value"] for r in records]
        for partition, offset, value in (a for a in acked if a[0] == p):
            if by_offset.get(offset) != value:
                raise RuntimeError(f"partition {p}: acknowledged {value} at offset {offset}, read "
                                   f"{by_offset.get(offset)}")
        repeated = [v for v in values if values.count(v) > 1]
        if repeated:
            log(f"partition {p}: {len(repeated)} record(s) stored twice by retried produce requests")
    log(f"read back all {len(acked)} acknowledged records through broker4; elastic scenario passed "
        f"in {time.monotonic() - t0:.1f}s")


def run(cluster: Cluster, replication_factor: int, kill: int) -> None:
    t0 = time.monotonic()
    log(f"compose up ({len(cluster.ids)} brokers, ports {cluster.ports})")
    cluster.run("up", "-d", "--no-build")
    cluster.wait_healthy(cluster.ids)
    log(f"all brokers answer /health after {time.monotonic() - t0:.1f}s")
    cluster.wait_docker_healthy()
    log(f"docker reports all containers healthy after {time.monotonic() - t0:.1f}s")

    create_topic(cluster, 1, replication_factor)
    group, leader, term = until("a partition leader", 30, lambda: cluster.partition_leader(cluster.ids))
    log(f"topic {TOPIC} R={replication_factor}: partition 0 (Raft group {group}) leader is broker {leader}")

    before = [{"phase": "before", "n": n} for n in range(10)]
    produce(cluster, 1, before, retry_s=20)
    check_values(consume_all(cluster, 2, len(before)), before, "before the kill, read via broker 2")
    log("produced 10 records via broker 1 and read them back via broker 2")

    leaders = cluster.leaders(cluster.ids)  # now, right before the kill
    leader, term = leaders[group]
    victims = [leader]
    if kill > 1:
        metadata_leader = leaders[METADATA_GROUP][0]
        others = [b for b in cluster.ids if b != leader]
        victims.append(metadata_leader if metadata_leader in others else others[0])
        victims += [b for b in others if b not in victims][: kill - 2]
    survivors = [b for b in cluster.ids if b not in victims]
    containers = [cluster.container(broker) for broker in victims]
    killed_at = time.monotonic()
    for container in containers:
        cluster.docker("kill", container)
    log(f"docker kill brokers {victims} (partition leader {leader} in term {term}, metadata leader "
        f"{leaders[METADATA_GROUP][0]}); producing via broker {survivors[0]}")

    after_kill = [{"phase": "after-kill", "n": n} for n in range(10)]
    first = produce(cluster, survivors[0], after_kill, retry_s=30)
    _, new_leader, new_term = until("the new partition leader", 10, lambda: cluster.partition_leader(survivors))
    if new_leader in victims or new_term <= term:
        raise RuntimeError(f"partition leader after the kill: broker {new_leader} term {new_term}")
    log(f"first produce after the kill succeeded {first:.1f}s after it; all 10 within "
        f"{time.monotonic() - killed_at:.1f}s; new partition leader broker {new_leader} in term {new_term}")
    check_values(consume_all(cluster, survivors[-1], 20), before + after_kill,
                 f"after the kill, read via broker {survivors[-1]}")

    started_at = time.monotonic()
    for container in containers:
        cluster.docker("start", container)
    cluster.wait_healthy(victims, timeout_s=60)
    until(f"brokers {victims} catching up", 60, lambda: caught_up(cluster, victims, cluster.ids))
    log(f"docker start {victims}: healthy and caught up (lag 0, applied = leader commit) "
        f"{time.monotonic() - started_at:.1f}s after the start")

    restarted = victims[0]
    after_restart = [{"phase": "after-restart", "n": n} for n in range(5)]
    produce(cluster, restarted, after_restart, retry_s=20)
    until(f"brokers {victims} catching up", 30, lambda: caught_up(cluster, victims, cluster.ids))
    check_values(consume_all(cluster, restarted, 25), before + after_kill + after_restart,
                 f"after the restart, read via broker {restarted}")
    log(f"produced and read back via restarted broker {restarted}; scenario passed "
        f"in {time.monotonic() - t0:.1f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compose-file", required=True)
    parser.add_argument("--ports", required=True, help="published HTTP ports of broker1..N, comma-separated")
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--kill", type=int, default=1, help="brokers to kill at once")
    parser.add_argument("--elastic", action="store_true",
                        help="the elastic scenario instead: add broker4, rebalance, decommission broker1")
    args = parser.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    compose = shlex.split(os.environ.get("RAFTKA_COMPOSE", "")) or (
        ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"])
    env_ports = {f"RAFTKA_HTTP_PORT_{i}": str(port) for i, port in enumerate(ports, 1)}
    os.environ.update(env_ports)
    cluster = Cluster(compose, args.compose_file, ports)
    ok = False
    try:
        if args.elastic:
            run_elastic(cluster)
        else:
            run(cluster, args.replication_factor, args.kill)
        ok = True
    except (ScenarioFailed, RuntimeError, KeyError, TypeError) as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        if not ok:
            log("last broker logs:")
            print(cluster.run("logs", "--no-color", "--tail", "40", check=False), file=sys.stderr)
        cluster.run("--profile", "elastic", "down", "-v", "--remove-orphans", check=False)  # broker4 too
        log("compose down -v done")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
