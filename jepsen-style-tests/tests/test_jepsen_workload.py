"""The workload's client ops against a stand-in broker (real sockets, canned answers): how
each answer becomes ok / fail / info, consumer positions and offset resets; the key choice;
merging per-client histories; reading replica logs and leader lines for the checker; CLI
usage errors."""

import json
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from jepsen_raftka import collect, run_cli, scenarios
from jepsen_raftka.api import BrokerApi
from jepsen_raftka.client import ClientProcess, ClientSettings
from jepsen_raftka.history import HistoryRecorder, history_from_dicts, load_history
from jepsen_raftka.runner import keys_for
from jepsen_raftka.workload import merge_histories
from raftka.client.partitioner import partition_for_key
from raftka.storage import PartitionLog, Record


class StandIn:
    """An HTTP server answering each request with the next canned (status, body) of its path;
    status None closes the connection without an answer."""

    def __init__(self):
        self.answers: dict[str, list] = {}
        self.seen: list[tuple[str, str, bytes]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stand_in.seen.append((self.command, self.path, body))
                path = self.path.split("?")[0]
                status, doc = stand_in.answers[path].pop(0)
                if status is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Raftka-Broker", "7")
                if isinstance(doc, list):
                    self.send_header("X-Raftka-High-Watermark", "5")
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def address(self):
        return self.server.server_address

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in():
    s = StandIn()
    yield s
    s.close()


def make_client(tmp_path, address, **settings):
    recorder = HistoryRecorder(tmp_path / "h.jsonl")
    settings = ClientSettings("t", ("a", "b"), request_timeout_ms=500, **settings)
    return ClientProcess(0, BrokerApi({1: address}), recorder, settings, random.Random(1)), recorder


def completions(tmp_path):
    return [e for e in map(orjson.loads, (tmp_path / "h.jsonl").read_bytes().splitlines()) if e["type"] != "invoke"]


def produced(partition=0, offset=None, code=None, error=None):
    return {"offsets": [{"partition": partition, "offset": offset, "error_code": code, "error": error}]}


@pytest.mark.parametrize("status, doc, expected", [
    (200, produced(1, 41), "ok"),
    (503, produced(code=50301, error="Not the leader"), "fail"),  # refused before proposing
    (422, {"error_code": 42206, "message": "bad"}, "fail"),
    (404, {"error_code": 40401, "message": "no topic"}, "fail"),
    (500, produced(code=50003, error="timed out"), "info"),  # may still commit
    (503, produced(code=50302, error="could not forward"), "info"),  # may have reached the leader
    (500, {"error_code": 50002, "message": "internal"}, "info"),
    (None, None, "info"),  # connection closed without an answer
])
def test_send_outcomes(tmp_path, stand_in, status, doc, expected):
    stand_in.answers["/topics/t"] = [(status, doc)]
    client, recorder = make_client(tmp_path, stand_in.address)
    retired = client.send(17)
    recorder.close()
    [done] = completions(tmp_path)
    assert (done["type"], retired) == (expected, expected == "info")
    method, path, body = stand_in.seen[0]
    assert (method, path.split("?")[0]) == ("POST", "/topics/t")
    assert orjson.loads(body)["records"][0]["value"] == 17
    if expected == "ok":
        assert (done["value"]["partition"], done["value"]["offset"], done["node"]) == (1, 41, 7)
    else:
        assert done["error"]


def test_send_to_a_closed_port_certainly_failed(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = s.getsockname()  # bound, never listening: the connection is refused
        client, recorder = make_client(tmp_path, address)
        assert client.send(1) is False
    recorder.close()
    [done] = completions(tmp_path)
    assert done["type"] == "fail" and "Refused" in done["error"]


def records(*pairs):
    return [{"topic": "t", "partition": 0, "key": "a", "offset": o, "value": v} for o, v in pairs]


def test_poll_advances_positions_and_resets_on_out_of_range(tmp_path, stand_in):
    stand_in.answers["/topics/t/partitions/0/records"] = [
        (200, records((0, 10), (1, 11))),
        (416, {"error_code": 41601, "message": "out of range", "earliest": 0, "latest": 1}),
        (200, records((1, 11))),
    ]
    client, recorder = make_client(tmp_path, stand_in.address)
    client.assign()
    client.assignment, client.positions = [0], {0: 0}  # one partition, from the beginning
    for _ in range(3):
        assert client.poll() is False
    recorder.close()
    offsets = [p.split("offset=")[1].split("&")[0] for _, p, _ in stand_in.seen]
    assert offsets == ["0", "2", "1"]  # auto.offset.reset=latest went back to 1
    polls = [e for e in completions(tmp_path) if e["f"] == "poll"]
    assert [p["type"] for p in polls] == ["ok", "fail", "ok"]
    assert polls[2]["value"]["records"] == {"t/0": [[1, 11]]}
    history = load_history(tmp_path / "h.jsonl")  # the recorded ops are a valid history
    assert [op.f for op in history.ops] == ["assign", "poll", "poll", "poll"]


def test_commit_and_list_committed(tmp_path, stand_in):
    stand_in.answers["/groups/g/offsets"] = [
        (200, {}),
        (200, {"offsets": [{"topic": "t", "partition": 1, "offset": 5}, {"topic": "u", "partition": 0, "offset": 9}]}),
        (503, {"error_code": 50302, "message": "coordinator unreachable"}),
    ]
    client, recorder = make_client(tmp_path, stand_in.address, group="g")
    client.assignment, client.positions = [1], {1: 5}
    assert client.commit() is False
    assert client.list_committed() is False
    assert client.commit() is True  # unknown outcome: retire
    recorder.close()
    assert orjson.loads(stand_in.seen[0][2]) == {"offsets": [{"topic": "t", "partition": 1, "offset": 5}]}
    done = completions(tmp_path)
    assert [d["type"] for d in done] == ["ok", "ok", "info"]
    assert done[1]["value"] == {"group": "g", "offsets": {"t/1": 5}}


def test_subscriber_joins_heartbeats_rejoins_and_commits_with_its_generation(tmp_path, stand_in):
    joined = [{"topic": "t", "partition": 0}]
    stand_in.answers["/groups/sg/members"] = [
        (200, {"member_id": "m-1", "generation": 1, "assignment": joined}),
        (200, {"member_id": "m-1", "generation": 2, "assignment": [*joined, {"topic": "t", "partition": 1}]}),
    ]
    stand_in.answers["/groups/sg/offsets"] = [
        (200, {"offsets": [{"topic": "t", "partition": 0, "offset": 3}]}),  # committed, after joining
        (200, {"offsets": [{"topic": "t", "partition": 0, "offset": 4}]}),  # after rejoining
        (200, {}),  # the commit
    ]
    stand_in.answers["/groups/sg/heartbeat"] = [
        (200, {}), (409, {"error_code": 40906, "message": "rebalance in progress"})]
    stand_in.answers["/topics/t/partitions/0/records"] = [(200, records((3, 30))), (200, records((4, 40)))]
    stand_in.answers["/topics/t/partitions/1/records"] = [(200, records((0, 50)))]
    client, recorder = make_client(tmp_path, stand_in.address, group="g", subscribe_group="sg",
                                   subscribe_fraction=1.0)
    assert client.mode == "subscribe" and client.consumer_op("poll") == "subscribe"
    assert client.subscribe() is False
    assert client.consumer_op("assign") == "poll"  # the group assigns a subscriber's partitions
    assert client.poll() is False  # heartbeat ok: reads partition 0 from its committed offset 3
    assert client.poll() is False  # heartbeat says rebalance: rejoins, starts from the new commits
    assert client.commit() is False
    recorder.close()
    fetched = [p for _, p, _ in stand_in.seen if "/records" in p]
    assert [p.split("?")[0].split("/")[4] + "@" + p.split("offset=")[1].split("&")[0] for p in fetched] == [
        "0@3", "0@4", "1@0"]
    rejoin = next(orjson.loads(b) for m, p, b in stand_in.seen[1:] if p == "/groups/sg/members")
    assert rejoin["member_id"] == "m-1"
    assert orjson.loads(stand_in.seen[-1][2]) == {
        "offsets": [{"topic": "t", "partition": 0, "offset": 5}, {"topic": "t", "partition": 1, "offset": 1}],
        "member_id": "m-1", "generation": 2}
    polls = [e["value"] for e in completions(tmp_path) if e["f"] == "poll"]
    assert [(p["mode"], p["rebalanced"]) for p in polls] == [("subscribe", False), ("subscribe", True)]
    history = load_history(tmp_path / "h.jsonl")
    assert [op.f for op in history.ops] == ["subscribe", "poll", "poll", "commit"]


def test_a_rebalance_in_a_failed_poll_is_reported_by_the_next_ok_poll(tmp_path, stand_in):
    """Rejoining resets positions to the committed offsets; if that poll's fetches then fail, the
    next ok poll must still say rebalanced, or its going back would look like a nonmonotonic poll."""
    stand_in.answers["/groups/sg/members"] = [
        (200, {"member_id": "m-1", "generation": g, "assignment": [{"topic": "t", "partition": 0}]}) for g in (1, 2)]
    stand_in.answers["/groups/sg/offsets"] = [(200, {}), (200, {})]
    stand_in.answers["/groups/sg/heartbeat"] = [
        (200, {}), (409, {"error_code": 40906, "message": "rebalance"}), (200, {})]
    stand_in.answers["/topics/t/partitions/0/records"] = [
        (200, records((0, 1), (1, 2))), (503, {"error_code": 50301, "message": "no leader"}), (200, records((0, 1)))]
    client, recorder = make_client(tmp_path, stand_in.address, subscribe_group="sg", subscribe_fraction=1.0)
    client.subscribe()
    for _ in range(3):
        client.poll()
    recorder.close()
    polls = [e for e in completions(tmp_path) if e["f"] == "poll"]
    assert [(p["type"], p["value"].get("rebalanced")) for p in polls] == [
        ("ok", False), ("fail", None), ("ok", True)]


def test_idempotent_send_with_resend(tmp_path, stand_in):
    stand_in.answers["/producers"] = [(200, {"producer_id": 1000, "producer_epoch": 0})]
    for p in (0, 1):
        stand_in.answers[f"/topics/t/partitions/{p}"] = [(200, produced(p, 3)), (200, produced(p, 4))]
    client, recorder = make_client(tmp_path, stand_in.address, producer="idempotent", resend_probability=1.0)
    assert client.send(5) is False
    recorder.close()
    first, resent = (orjson.loads(body) for _, path, body in stand_in.seen if "/partitions/" in path)
    assert first == resent  # byte-for-byte the same batch: producer id, epoch, sequence
    assert (first["producer_id"], first["base_sequence"]) == (1000, 0)
    [done] = completions(tmp_path)
    assert done["value"]["offset"] == 3 and done["value"]["resent"] == {"offset": 4}


def test_keys_map_to_their_partitions():
    for n in (1, 3, 4, 7):
        keys = keys_for(n)
        assert [partition_for_key(orjson.dumps(k), n) for k in keys] == list(range(n))


def test_merge_histories_orders_by_time_and_keeps_pairs(tmp_path):
    parts = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    events = [
        [{"type": "invoke", "process": 0, "f": "crash", "value": None, "time": 1},
         {"type": "ok", "process": 0, "f": "crash", "value": None, "time": 5}],
        [{"type": "invoke", "process": 1, "f": "crash", "value": None, "time": 2},
         {"type": "ok", "process": 1, "f": "crash", "value": None, "time": 3}],
    ]
    for path, evs in zip(parts, events, strict=True):
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs) + b'{"torn')
    assert merge_histories(parts, tmp_path / "h.jsonl") == 4
    merged = [orjson.loads(line) for line in (tmp_path / "h.jsonl").read_bytes().splitlines()]
    assert [e["time"] for e in merged] == [1, 2, 3, 5]
    assert len(history_from_dicts(merged).ops) == 2


def test_replicas_and_leaders_from_broker_files(tmp_path):
    data_dirs = {}
    for node, values in ((1, [7, 8, 9]), (2, [7, 8])):
        log_dir = tmp_path / f"n{node}" / "partitions" / "my-topic-0-abc123" / "log"
        with PartitionLog.open(log_dir) as log:
            for v in values:
                log.append([Record(b'"k"', orjson.dumps(v))])
            log.append([Record(None, b"not json")])
        data_dirs[node] = tmp_path / f"n{node}"
    replicas = collect.read_replicas(data_dirs, "my-topic")
    assert replicas == {"1": {"my-topic/0": [[0, 7], [1, 8], [2, 9], [3, "not json"]]},
                        "2": {"my-topic/0": [[0, 7], [1, 8], [2, "not json"]]}}
    names = collect.topic_names(data_dirs)
    assert names == {"abc123": "my-topic"}
    log = tmp_path / "broker.log"
    log.write_text("x INFO raftka.raft.host: raft group abc123/0: leader is replica 2 in term 3\n"
                   "x INFO raftka.raft.host: raft group __metadata: leader is replica 1 in term 1\n"
                   "x INFO raftka.raft.host: raft group abc123/0: leader is replica 3.1f2e3d4c in term 4\n")
    observed = collect.leader_observations({1: log}, names)
    assert [(o.group, o.term, o.leader, o.observer) for o in observed] == [("my-topic/0", 3, 2, 1),
                                                                             ("__metadata", 1, 1, 1),
                                                                             ("my-topic/0", 4, "3.1f2e3d4c", 1)]


def test_full_matrix_covers_every_p0_nemesis_on_3_and_5_nodes_the_membership_run_and_every_canary():
    args = run_cli._parser().parse_args(["--full", "--time-limit", "30"])
    specs = run_cli.matrix_specs(args)
    plain = [s for s in specs if s.bug is None and s.bootstrap_nodes is None]
    assert {(s.nodes, s.nemeses) for s in plain} == {(n, (name,)) for n in (3, 5) for name in scenarios.P0}
    [grown] = [s for s in specs if s.bootstrap_nodes is not None]
    assert (grown.bootstrap_nodes, grown.nodes, grown.nemeses) == (3, 5, ("membership",))
    assert all(s.time_limit_s >= 60 for s in plain)
    assert sorted(s.bug for s in specs if s.bug) == sorted(scenarios.CANARIES)
    quick = run_cli.matrix_specs(run_cli._parser().parse_args(["--quick"]))
    assert sorted(s.bug for s in quick if s.bug) == sorted(b for b, c in scenarios.CANARIES.items() if c.fast)


def test_cli_rejects_unknown_nemesis(capsys):
    assert run_cli.main(["--nemesis", "partition,gremlins", "--out", "/nonexistent"]) == 2
    assert "gremlins" in capsys.readouterr().err


def test_a_run_whose_faults_the_host_cannot_inject_is_skipped_with_the_reason(tmp_path):
    from jepsen_raftka.runner import RunResult, RunSpec

    result = RunResult(RunSpec(nemeses=("disk-full",)), tmp_path, None,
                       skipped="disk-full mounts a small filesystem per data directory, which needs root")
    assert result.verdict == "skipped" and result.as_expected  # not a failure of the system, nor of the harness
    table = run_cli.results_table([result])
    assert "skipped: disk-full mounts a small filesystem" in table and "| skipped |" in table
