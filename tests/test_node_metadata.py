"""The metadata state machine's consumer-group rules (raftka.node.cluster.metadata), against a model:
generations only grow; a commit is fenced by the persisted generation and its members; committed
offsets only grow per partition unless the commit says reset; every verdict is a result, never an
exception, and a checkpoint restores the same state; a checkpoint's file is written by its job (which the Raft
host runs in a worker thread) as the state was when it was taken, and never over a snapshot installed meanwhile."""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from raftka.node.cluster.metadata import (CHECKPOINT_FILE, STALE_GENERATION, TOPIC_NOT_FOUND, MetadataStateMachine,
                                         command)

MEMBERS = st.sampled_from(["a", "b", "c"])
PARTITIONS = st.sampled_from(["t/0", "t/1", "gone/0"])


class GroupRules(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.index = 0
        self.generation = 0
        self.members: list[str] = []
        self.offsets: dict[str, int] = {}

    @initialize()
    def create(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="metadata-model-")
        self.sm = MetadataStateMachine(self.tmp.name)
        assert self.apply("create_topic", name="t", id="t1", assignment=[[1], [1]], configs={}) == {"ok": True}

    def apply(self, op, **fields):
        self.index += 1
        return self.sm.apply(self.index, 1, command(op, **fields))

    @rule(step=st.integers(-1, 2), members=st.lists(MEMBERS, unique=True, max_size=3))
    def new_generation(self, step, members):
        generation = self.generation + step
        result = self.apply("group_generation", group="g", generation=generation, members=members)
        if generation > self.generation:
            assert result == {"ok": True}
            self.generation, self.members = generation, members
        else:
            assert result["error"] == STALE_GENERATION

    @rule(member=st.none() | MEMBERS, generation_step=st.none() | st.integers(-1, 1),
          offsets=st.dictionaries(PARTITIONS, st.integers(0, 100), min_size=1, max_size=2), reset=st.booleans())
    def commit(self, member, generation_step, offsets, reset):
        generation = None if generation_step is None else self.generation + generation_step
        result = self.apply("commit_offsets", group="g", generation=generation, member=member, reset=reset,
                            offsets=offsets)
        fenced = ((generation is not None and generation != self.generation)
                  or (generation is not None and member is not None and self.members and member not in self.members)
                  or (generation is None and self.members))
        if fenced:
            assert result["error"] == STALE_GENERATION, result
        elif any(key.startswith("gone/") for key in offsets):
            assert result["error"] == TOPIC_NOT_FOUND, result
        else:
            assert result == {"ok": True}, result
            for key, offset in offsets.items():
                self.offsets[key] = offset if reset else max(offset, self.offsets.get(key, offset))

    @rule()
    def restart_from_checkpoint(self):
        self.sm.checkpoint()
        self.sm = MetadataStateMachine(self.tmp.name)

    @rule(data=st.binary(min_size=1, max_size=30).filter(lambda d: b"op" not in d))
    def garbage(self, data):
        self.index += 1
        assert "error" in self.sm.apply(self.index, 1, data)  # a malformed command is a result, not an exception

    @invariant()
    def state_matches_the_model(self):
        if not hasattr(self, "sm"):
            return
        group = self.sm.group("g") or {"generation": 0, "offsets": {}}
        assert group["generation"] == self.generation
        assert group["offsets"] == self.offsets

    def teardown(self):
        if hasattr(self, "tmp"):
            self.tmp.cleanup()


GroupRules.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
test_group_rules_match_the_model = GroupRules.TestCase


def create_topic(sm: MetadataStateMachine, name: str) -> None:
    assert sm.apply(sm.applied_index + 1, 1, command("create_topic", name=name, id=name, assignment=[[1]],
                                                      configs={})) == {"ok": True}


def test_a_checkpoint_is_written_by_its_job_as_the_state_was_when_it_was_taken(tmp_path):
    sm = MetadataStateMachine(str(tmp_path))
    create_topic(sm, "t")
    index, job = sm.begin_checkpoint()
    create_topic(sm, "u")  # applied while the job waits for its worker thread
    assert not (tmp_path / CHECKPOINT_FILE).exists()
    job()
    reopened = MetadataStateMachine(str(tmp_path))
    assert reopened.applied_index == index == 1
    assert set(reopened.topics) == {"t"}


def test_a_checkpoint_taken_before_a_snapshot_install_never_overwrites_it(tmp_path):
    follower, leader = MetadataStateMachine(str(tmp_path / "follower")), MetadataStateMachine(str(tmp_path / "leader"))
    create_topic(follower, "t")
    _, stale_job = follower.begin_checkpoint()
    for name in ("t", "u", "v"):
        create_topic(leader, name)
    follower.begin_install()
    follower.install_chunk(leader.read_chunk(b"")[0])
    assert follower.finish_install(leader.applied_index, 1)
    stale_job()  # its worker thread got to it only now
    reopened = MetadataStateMachine(str(tmp_path / "follower"))
    assert reopened.applied_index == 3
    assert set(reopened.topics) == {"t", "u", "v"}
