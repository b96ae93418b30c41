"""The `raftka` CLI end to end against a real 3-broker cluster (and `raftka dev` as a process)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from client_ports import free_dev_base_port
from click.testing import CliRunner

from raftka.client.cli import main

devcluster = pytest.importorskip("raftka.client.devcluster", reason="raftka.client.devcluster (LocalCluster) is not written yet")

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with devcluster.LocalCluster(brokers=3, data_dir=tmp_path_factory.mktemp("cli-cluster"), election_timeout_ms=300) as c:
        yield c


@pytest.fixture
def raftka(cluster):
    runner = CliRunner()

    def run(*args: str, input: str | None = None, code: int = 0):
        result = runner.invoke(main, ["--bootstrap", ",".join(cluster.bootstrap), *args], input=input,
                               env={"COLUMNS": "200"})
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return run


def test_topics_produce_consume_groups_cluster(raftka, cluster, tmp_path):
    assert "Created topic demo (3 partition(s), replication factor 3)" in raftka(
        "topics", "create", "demo", "-p", "3", "-c", "retention.ms=600000"
    ).output
    listing = raftka("topics", "list").stdout
    assert "demo" in listing and "3" in listing
    described = raftka("topics", "describe", "demo").stdout
    assert "retention.ms" in described and "600000" in described and "High watermark" in described

    produced = raftka("produce", "demo", "--key-sep", ":", input="user-1:hello\nuser-2:world\n\nuser-1:again\n")
    assert "Produced 3 record(s) to demo" in produced.output
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"line {i}\n" for i in range(200)))
    assert "Produced 200 record(s)" in raftka("produce", "demo", "--file", str(lines)).output

    out = raftka("consume", "demo", "--from-beginning", "--max", "203", "--format", "json").stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 203
    user1 = [r["value"] for r in sorted(records, key=lambda r: r["offset"]) if r["key"] == "user-1"]
    assert user1 == ["hello", "again"]  # same key, same partition, in order
    assert {r["value"] for r in records if r["key"] is None} == {f"line {i}" for i in range(200)}

    text = raftka("consume", "demo", "--group", "cli-group", "--from-beginning", "--timeout", "4").stdout
    assert sorted(text.splitlines()) == sorted(["hello", "world", "again"] + [f"line {i}" for i in range(200)])
    assert "cli-group" in raftka("groups", "list").stdout
    group = raftka("groups", "describe", "cli-group").stdout
    assert "total lag 0" in group and "demo" in group

    status = raftka("cluster", "status").stdout
    assert "metadata leader" in status and "(metadata)" in status
    assert status.count("yes") == 3  # every broker answered
    narrow = CliRunner().invoke(main, ["--bootstrap", ",".join(cluster.bootstrap), "cluster", "status"],
                                env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    rows = narrow.stdout.splitlines()
    assert max(map(len, rows)) <= 80, narrow.stdout  # nothing wraps on an 80-column terminal
    assert [row.split()[1:4] for row in rows if row.startswith("│ demo ")] == [["demo", "│", str(p)] for p in range(3)]
    assert not re.search(r"[0-9a-f]{12}/[0-9]", narrow.stdout), "groups are named by topic and partition"

    [user_partition] = {r["partition"] for r in records if r["key"] == "user-1"}
    deleted = raftka("topics", "delete-records", "demo", "-p", str(user_partition), "--before", "1", "--yes").output
    assert f"Partition {user_partition} of demo now begins at offset 1." in deleted
    again = raftka("topics", "delete-records", "demo", "-p", str(user_partition), "--before", "0", "--yes").output
    assert "begins at offset 1." in again  # never moves back
    assert "out of range" in raftka("topics", "delete-records", "demo", "-p", str(user_partition), "--before",
                                    "100000", "--yes", code=1).output
    assert "Altered topic demo" in raftka("topics", "alter", "demo", "--partitions", "4", "-c", "retention.ms=1200000").output
    assert "1200000" in raftka("topics", "describe", "demo").stdout
    assert "Deleted topic demo" in raftka("topics", "delete", "demo", "--yes").output


def test_the_cli_puts_a_key_where_curl_does_with_the_matching_key_format(raftka, cluster):
    """Issue 12 item 14: keys are hashed as the bytes stored, which depend on the format the key was given in."""
    raftka("topics", "create", "keyed-like-curl", "-p", "6")
    url = cluster.bootstrap[0] + "/topics/keyed-like-curl"

    def curl_partition(content_type: str, key: str) -> int:
        body = json.dumps({"records": [{"key": key, "value": None}]}).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())["offsets"][0]["partition"]

    as_json = curl_partition("application/vnd.kafka.json.v2+json", "manol")  # stores "manol" with its quotes
    as_binary = curl_partition("application/vnd.kafka.binary.v2+json", base64.b64encode(b"manol").decode())
    assert as_json != as_binary  # for this key and 6 partitions: what makes the test able to fail
    lines = {"json": '"manol"\tfrom-cli-json\n', "base64": "bWFub2w=\tfrom-cli-base64\n",
             "string": "manol\tfrom-cli-string\n"}
    for key_format, line in lines.items():
        raftka("produce", "keyed-like-curl", "--key-sep", "\t", "--key-format", key_format, input=line)
    out = raftka("consume", "keyed-like-curl", "--from-beginning", "--max", "5", "--format", "json").stdout
    where = {r["value"]: (r["partition"], r["key"]) for r in map(json.loads, out.splitlines()) if r["value"]}
    assert where == {"from-cli-json": (as_json, '"manol"'), "from-cli-base64": (as_binary, "manol"),
                     "from-cli-string": (as_binary, "manol")}


def test_unknown_topic_suggests_near_names(raftka):
    raftka("topics", "create", "inventory")
    for args in (["consume", "inventroy", "--max", "1"], ["produce", "inventroy"], ["topics", "describe", "inventory2"]):
        result = raftka(*args, input="x\n", code=1)
        assert "not found" in result.output and "Did you mean: inventory" in result.output


def test_duplicate_topic_and_bad_replication_factor_are_clear_errors(raftka):
    raftka("topics", "create", "dup")
    assert "already exists" in raftka("topics", "create", "dup", code=1).output
    assert "replication" in raftka("topics", "create", "rf5", "-r", "5", code=1).output.lower()


@contextlib.contextmanager
def raftka_dev(tmp_path, brokers: int):
    """`raftka dev` in a subprocess, up and serving: yields (process, base port, output so far, broker processes).
    However the test ends, `raftka dev` is killed and none of its brokers is left running."""
    port = free_dev_base_port(brokers)
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftka.client.cli", "dev", "--brokers", str(brokers), "--data-dir",
         str(tmp_path / "dev"), "--base-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    output, children = b"", []
    try:
        deadline = time.monotonic() + 60
        while b"Press Ctrl-C" not in output:
            assert time.monotonic() < deadline and proc.poll() is None, output.decode()
            if select.select([proc.stdout], [], [], 0.5)[0]:
                output += os.read(proc.stdout.fileno(), 65536)
        children = psutil.Process(proc.pid).children()
        assert len(children) == brokers, children
        yield proc, port, output.decode(), children
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for child in children:  # only if the test already failed: the brokers must stop by themselves
            if child.is_running():
                child.kill()


def ports_free(port: int, brokers: int) -> bool:
    """Could a new broker listen on the brokers' HTTP and Raft ports (connections may linger in TIME_WAIT)?"""
    for p in [port + i for i in range(brokers)] + [port + 100 + i for i in range(brokers)]:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def test_raftka_dev_starts_a_cluster_and_stops_on_ctrl_c(tmp_path):
    with raftka_dev(tmp_path, 1) as (proc, port, output, _):
        assert f"http://127.0.0.1:{port}" in output
        # Where the CLI is, where the logs are, how to start again (issue 12, item 12).
        cli = re.search(r"^  the CLI: (\S+)", output, re.MULTILINE).group(1)
        assert os.access(cli, os.X_OK) and cli.endswith("/raftka"), output
        assert f"broker logs: {tmp_path / 'dev'}/broker-N.log" in output and (tmp_path / "dev" / "broker-1.log").exists()
        assert f"rm -rf {tmp_path / 'dev'}" in output
        result = CliRunner().invoke(main, ["--bootstrap", f"127.0.0.1:{port}", "topics", "list"])
        assert result.exit_code == 0 and "demo" in result.stdout
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_raftka_dev_leaves_no_broker_behind_when_signalled(tmp_path, sig):
    with raftka_dev(tmp_path, 2) as (proc, port, _, brokers):
        proc.send_signal(sig)
        code = proc.wait(30)
        assert code == (-signal.SIGKILL if sig is signal.SIGKILL else 0)
        gone, alive = psutil.wait_procs(brokers, timeout=30)
        assert not alive, f"brokers still running after raftka dev got {sig.name}: {alive}"
        deadline = time.monotonic() + 10
        while not ports_free(port, 2):
            assert time.monotonic() < deadline, "the brokers' ports are still taken"
            time.sleep(0.1)
