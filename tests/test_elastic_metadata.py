"""The elastic cluster's metadata commands (raftka.node.cluster.metadata_cluster) through the metadata state machine.

Rule by rule, then a hypothesis state machine that applies random commands to two replicas (they must agree,
command by command) and checks the invariants after each: a moving partition's replica list is its target
followed by the replicas leaving it, no decommissioned broker hosts anything, the registry never loses a broker.
"""

from __future__ import annotations

import orjson
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from raftka.node.cluster.metadata import MetadataStateMachine, command
from raftka.node.cluster.metadata_cluster import hosting

BROKERS = {str(b): {"http_url": f"http://h{b}:1", "raft_host": f"h{b}", "raft_port": 2} for b in (1, 2, 3)}


def machine(tmp_path, name="m") -> MetadataStateMachine:
    return MetadataStateMachine(str(tmp_path / name))


class Applier:
    def __init__(self, sm: MetadataStateMachine):
        self.sm, self.index = sm, 0

    def __call__(self, op: str, **fields) -> dict:
        self.index += 1
        return self.sm.apply(self.index, 1, command(op, **fields))


def bootstrapped(tmp_path) -> Applier:
    apply = Applier(machine(tmp_path))
    assert apply("bootstrap_cluster", cluster_id="c1", brokers=BROKERS) == {"ok": True}
    assert apply("create_topic", name="t", id="tid", assignment=[[1, 2], [2, 3]], configs={})["ok"]
    return apply


def test_a_topic_says_its_logs_are_raft_logs_only_if_created_so_and_moves_and_checkpoints_keep_that(tmp_path):
    """Replicas of a topic created by an older raftka (no flag), also those a move adds, keep a separate journal."""
    apply = bootstrapped(tmp_path)  # "t": as an older raftka created it
    assert apply("create_topic", name="n", id="nid", assignment=[[1, 2]], configs={}, log_is_raft_log=True)["ok"]
    assert apply("start_reassignments", moves=[{"topic": topic, "partition": 0, "target": [2, 3]} for topic in "tn"],
                 reason="reassignment", now_ms=5)["ok"]
    apply.sm.checkpoint()
    apply.sm.close()
    sm = machine(tmp_path)
    assert "log_is_raft_log" not in sm.topic("t") and sm.topic("n")["log_is_raft_log"] is True
    assert sm.goal("t", 0) == sm.goal("n", 0) == [2, 3]
    sm.close()


def test_bootstrap_records_the_cluster_id_once(tmp_path):
    apply = bootstrapped(tmp_path)
    assert apply("bootstrap_cluster", cluster_id="c1", brokers=BROKERS) == {"ok": True}  # idempotent
    assert apply("bootstrap_cluster", cluster_id="c2", brokers=BROKERS)["error"] == 40905
    assert apply.sm.cluster_id == "c1" and apply.sm.active_brokers() == [1, 2, 3]


def test_a_broker_joins_and_rejoins_after_a_decommission_as_a_new_incarnation(tmp_path):
    apply = bootstrapped(tmp_path)
    join = dict(http_url="http://h4:1", raft_host="h4", raft_port=2, rack="r1")
    assert apply("register_broker", broker=4, incarnation=7, **join) == {"ok": True}
    assert apply.sm.brokers()[4]["rack"] == "r1" and apply.sm.replica(4) == 7 << 31 | 4
    assert apply("decommission_broker", broker=4, moves=[], now_ms=1)["ok"]
    assert apply("finish_decommission", broker=4) == {"ok": True}
    assert apply.sm.membership_of(4) == "decommissioned" and 4 not in apply.sm.registered_brokers()
    assert apply("register_broker", broker=4, incarnation=7, **join)["ok"]  # the same directory may not rejoin...
    assert apply("register_broker", broker=4, incarnation=9, **join) == {"ok": True}
    assert apply("register_broker", broker=4, incarnation=7, **join)["error"] == 42206  # ...retired now
    assert apply.sm.membership_of(4) == "active" and apply.sm.incarnation(4) == 9


def test_a_reassignment_hosts_on_both_sides_until_complete(tmp_path):
    apply = bootstrapped(tmp_path)
    result = apply("start_reassignments", moves=[{"topic": "t", "partition": 0, "target": [2, 3]}],
                   reason="reassignment", now_ms=5)
    assert result == {"ok": True, "jobs": [1]}
    assert apply.sm.topic("t")["partitions"][0] == [2, 3, 1] and apply.sm.goal("t", 0) == [2, 3]
    again = apply("start_reassignments", moves=[{"topic": "t", "partition": 0, "target": [1, 3]}],
                  reason="reassignment", now_ms=6)
    assert again["error"] == 40921  # moving already
    assert apply("complete_reassignment", topic="t", partition=0, id=2, target=[2, 3], members=[2, 3])["error"] == 40905
    assert apply("complete_reassignment", topic="t", partition=0, id=1, target=[2, 3], members=[2, 3]) == {"ok": True}
    assert apply.sm.topic("t")["partitions"][0] == [2, 3] and apply.sm.topic("t")["members"][0] == [2, 3]
    assert apply.sm.reassignments() == {}


def test_cancel_goes_back_to_the_replicas_the_move_started_from(tmp_path):
    apply = bootstrapped(tmp_path)
    apply("start_reassignments", moves=[{"topic": "t", "partition": 1, "target": [1, 3]}], reason="r", now_ms=1)
    assert apply("cancel_reassignment", topic="t", partition=1)["ok"]
    assert apply.sm.goal("t", 1) == [2, 3] and apply.sm.topic("t")["partitions"][1] == [2, 3, 1]
    assert apply("cancel_reassignment", topic="t", partition=0)["error"] == 40411


def test_moves_are_all_or_nothing_and_name_only_usable_brokers(tmp_path):
    apply = bootstrapped(tmp_path)
    for target, code in (([1, 1], 42221), ([9], 42221), ([], 42221)):
        result = apply("start_reassignments", moves=[{"topic": "t", "partition": 1, "target": [2, 3]},
                                                     {"topic": "t", "partition": 0, "target": target}],
                       reason="r", now_ms=1)
        assert result["error"] == code
    assert apply.sm.reassignments() == {} and apply.sm.topic("t")["partitions"] == [[1, 2], [2, 3]]
    same = apply("start_reassignments", moves=[{"topic": "t", "partition": 0, "target": [2, 1]}], reason="r",
                 now_ms=1)
    assert same == {"ok": True, "jobs": []} and apply.sm.topic("t")["partitions"][0] == [2, 1]  # a new leader only


def test_a_drain_must_move_every_replica_and_recommission_undoes_what_is_still_running(tmp_path):
    apply = bootstrapped(tmp_path)
    partial = apply("decommission_broker", broker=2, moves=[{"topic": "t", "partition": 0, "target": [1, 3]}],
                    now_ms=1)
    assert partial["error"] == 40922 and apply.sm.membership_of(2) == "active"
    moves = [{"topic": "t", "partition": 0, "target": [1, 3]}, {"topic": "t", "partition": 1, "target": [3, 1]}]
    assert apply("decommission_broker", broker=2, moves=moves, now_ms=1)["ok"]
    assert apply.sm.membership_of(2) == "draining"
    assert apply("finish_decommission", broker=2)["error"] == 40905  # still hosts replicas
    assert apply("complete_reassignment", topic="t", partition=0, id=1, target=[1, 3], members=[1, 3])["ok"]
    assert apply("recommission_broker", broker=2) == {"ok": True}
    assert apply.sm.membership_of(2) == "active"
    assert apply.sm.goal("t", 0) == [1, 3] and apply.sm.goal("t", 1) == [2, 3]  # done stays, running goes back


def test_deleting_a_topic_drops_its_moves(tmp_path):
    apply = bootstrapped(tmp_path)
    apply("start_reassignments", moves=[{"topic": "t", "partition": 0, "target": [3]}], reason="r", now_ms=1)
    assert apply("delete_topic", name="t")["ok"] and apply.sm.reassignments() == {}


# ---------------------------------------------------------------- random commands, two replicas

broker_ids = st.integers(1, 5)
replica_lists = st.lists(broker_ids, min_size=0, max_size=4)


class TwoReplicas(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        import tempfile
        self.dir = tempfile.TemporaryDirectory()
        self.a = MetadataStateMachine(self.dir.name + "/a")
        self.b = MetadataStateMachine(self.dir.name + "/b")
        self.index = 0
        self.apply("bootstrap_cluster", cluster_id="c", brokers=BROKERS)
        self.apply("create_topic", name="t", id="x", assignment=[[1, 2, 3], [2, 3], [3]], configs={})
        self.known = {1, 2, 3}

    def teardown(self):
        self.dir.cleanup()

    def apply(self, op, **fields):
        self.index += 1
        data = command(op, **fields)
        first, second = self.a.apply(self.index, 1, data), self.b.apply(self.index, 1, data)
        assert first == second
        assert orjson.dumps(self.a.state, option=orjson.OPT_SORT_KEYS) == \
            orjson.dumps(self.b.state, option=orjson.OPT_SORT_KEYS)
        return first

    @rule(b=broker_ids, incarnation=st.integers(1, 4))
    def join(self, b, incarnation):
        if self.apply("register_broker", broker=b, incarnation=incarnation, http_url="u", raft_host="h",
                      raft_port=1).get("ok"):
            self.known.add(b)

    @rule(p=st.integers(0, 2), to=replica_lists)
    def reassign(self, p, to):
        self.apply("start_reassignments", moves=[{"topic": "t", "partition": p, "target": to}], reason="r",
                   now_ms=1)

    @rule(p=st.integers(0, 2))
    def cancel(self, p):
        self.apply("cancel_reassignment", topic="t", partition=p)

    @rule(p=st.integers(0, 2))
    def complete(self, p):
        job = self.a.reassignment("t", p)
        if job is not None:
            self.apply("complete_reassignment", topic="t", partition=p, id=job["id"], target=job["target"],
                       members=job["target"])

    @rule(b=broker_ids, data=st.data())
    def decommission(self, b, data):
        moves = []
        for p, replicas in enumerate(self.a.topic("t")["partitions"]):
            if b in replicas:
                moves.append({"topic": "t", "partition": p,
                              "target": data.draw(st.lists(broker_ids, min_size=1, max_size=3, unique=True))})
        self.apply("decommission_broker", broker=b, moves=moves, now_ms=1)

    @rule(b=broker_ids)
    def recommission(self, b):
        self.apply("recommission_broker", broker=b)

    @rule(b=broker_ids)
    def finish(self, b):
        self.apply("finish_decommission", broker=b)

    @invariant()
    def moving_partitions_are_hosted_on_both_sides(self):
        for p, replicas in enumerate(self.a.topic("t")["partitions"]):
            job = self.a.reassignment("t", p)
            if job is None:
                assert len(replicas) == len(set(replicas)) > 0
            else:  # the target first, then every replica that may still hold a copy (a cancel keeps the added ones)
                assert replicas[:len(job["target"])] == job["target"] and set(job["before"]) <= set(replicas)
                if not job["cancelled"]:
                    assert replicas == hosting(job["target"], job["before"])
                assert job["target"] and len(set(job["target"])) == len(job["target"])
                assert len(set(replicas)) == len(replicas)

    @invariant()
    def decommissioned_brokers_host_nothing_and_no_broker_is_forgotten(self):
        for b, entry in self.a.brokers().items():
            hosted = [p for p, r in enumerate(self.a.topic("t")["partitions"]) if b in r]
            if entry["membership"] == "decommissioned":
                assert not hosted
        assert set(self.a.brokers()) == self.known


TwoReplicas.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_random_commands_keep_the_invariants_on_two_replicas = TwoReplicas.TestCase
