"""One workload client process: Kafka-style ops against the brokers, each recorded in the history.

A ``ClientProcess`` is one history process id with the state of a Kafka
client: a consumer (its partitions and a position per partition, advanced by
what it reads) and, with the idempotent producer, a producer id with a
sequence number per partition. Every op records its invoke and exactly one
completion (history.py); each request goes through a fresh connection (api.py).

Consumer modes, fixed per process: ``assign`` (partitions picked by ``assign``
ops, new ones read from 0; commits to ``group`` without a member id, as
Kafka's manual assignment) or, for ``subscribe_fraction`` of the processes
when the run has groups, ``subscribe``: the ``subscribe`` op joins
``subscribe_group`` (membership.py), the group assigns the partitions, each
starts at the group's committed offset; every poll first heartbeats and, when
a rebalance is under way, joins again (the next ok poll says ``rebalanced``);
commits carry member id and generation.

Routing, like a Kafka client with a metadata cache: a request goes to the
broker that last served that partition (``X-Raftka-Broker``: the leader,
after forwarding) or that a NotLeader answer named; with probability
``random_broker_fraction``, and whenever no leader is known, to a random
broker instead (brokers forward to the leader; with the follower-reads
canary a follower serves the fetch itself). A failed request forgets the
leader. Stale knowledge is realistic: a client keeps writing to a deposed
leader until it learns better.

Outcomes. ``send`` and ``commit``: ok on success, fail on a definite error
(the connection could not be made, a 4xx, 503 50301 NotLeader, 507 50701
storage unavailable), info
otherwise (timeout, lost connection, 50003, 50302, 500). An info retires the
process: the op returns True and the caller continues with a new process id
and a fresh client. Reads (``poll``, ``list_committed``) have no effect, so a
read that got no answer is a fail and the process goes on. ``subscribe`` is
ok once joined, fail on a definite error, info otherwise. ``assign`` and
``crash`` are local and always ok.

Polls. One poll fetches every assigned partition from its position
(``GET .../records?offset=``) and is ok if at least one fetch answered. An
offset-out-of-range answer (41601) resets the position to the broker's
``latest`` offset, Kafka's ``auto.offset.reset=latest``. Without retention a
correct cluster never answers it to a consumer whose positions come from its
own reads (the high watermark never goes back); a stale replica does, and the
reset then shows up as a nonmonotonic poll.

Idempotent producer (``producer="idempotent"``): ``POST /producers`` gives the
client a producer id; sends go to ``POST /topics/{t}/partitions/{p}`` with
producer id, epoch and base sequence. ``resend_probability`` is the chance
that an acknowledged send is sent again, byte for byte, as a client does
when an ack is lost; the broker must answer the original offset. The harness
never retries otherwise.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from . import membership
from .api import KAFKA_JSON, BrokerApi, NoAnswer, NotDelivered, Reply, definite_failure, describe
from .history import SCALAR_TYPES, HistoryRecorder, partition_key
from .membership import Membership

OFFSET_OUT_OF_RANGE = 41601
LEADER_WAIT_S = 3.0  # how long a broker waits for a partition leader before answering NotLeader
COORDINATOR = "coordinator"  # routing key of group requests (served by the metadata leader)
PRODUCERS = ("plain", "idempotent")
PROTOCOLS = ("http", "kafka")  # how the clients talk to the brokers (kafka: kafka_client.KafkaClientProcess)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What every client of a run shares (JSON-serializable: workers get it in their config)."""

    topic: str
    keys: tuple[str, ...]  # keys[p] is a key that the partitioner maps to partition p
    producer: str = "plain"
    resend_probability: float = 0.0
    group: str | None = None  # assign-mode commits; commit / list_committed need the group routes
    subscribe_group: str | None = None  # subscribe mode (None: assign mode only)
    subscribe_fraction: float = 0.2  # share of client processes in subscribe mode
    request_timeout_ms: int = 2000
    poll_timeout_ms: int = 50
    poll_max_bytes: int = 64 * 1024
    random_broker_fraction: float = 0.25
    protocol: str = "http"

    def __post_init__(self) -> None:
        if self.producer not in PRODUCERS:
            raise ValueError(f"producer must be one of {PRODUCERS}, got {self.producer!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.protocol == "kafka" and self.subscribe_group is not None:
            raise ValueError("the Kafka-protocol clients run in assign mode only (no subscribe_group)")
        if not self.keys:
            raise ValueError("a workload needs at least one partition (one key per partition)")

    @property
    def partitions(self) -> int:
        return len(self.keys)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ClientSettings:
        return cls(**{**doc, "keys": tuple(doc["keys"])})


@dataclass(slots=True)
class _Producer:
    producer_id: int
    epoch: int
    sequences: dict[int, int] = field(default_factory=dict)  # partition -> next base sequence


def scalar_value(value: Any) -> Any:
    """Record values as the history can hold them (a non-scalar becomes its text)."""
    return value if type(value) in SCALAR_TYPES else repr(value)


def _produce_outcome(reply: Reply) -> tuple[str, Any]:
    """("ok", (partition, offset)) | ("fail", error) | ("info", error) for a one-record produce."""
    entries = reply.doc.get("offsets") if isinstance(reply.doc, dict) else None
    entry = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else None
    if entry is None:
        return ("fail" if reply.definite_failure else "info"), reply.describe()
    code = entry.get("error_code")
    offset, partition = entry.get("offset"), entry.get("partition")
    if reply.status == 200 and code is None and type(offset) is int and type(partition) is int:
        return "ok", (partition, offset)
    error = f"{reply.status} {code}: {entry.get('error')}"
    return ("fail" if definite_failure(reply.status, code) else "info"), error


class ClientProcess:
    def __init__(self, process: int, api: BrokerApi, recorder: HistoryRecorder, settings: ClientSettings,
                 rng: random.Random) -> None:
        self.process = process
        self.api = api
        self.recorder = recorder
        self.settings = settings
        self.rng = rng
        self.assignment: list[int] = []
        self.positions: dict[int, int] = {}
        self.producer: _Producer | None = None
        self.leaders: dict[int | str, int] = {}  # partition (or COORDINATOR) -> broker that served it
        subscribes = settings.subscribe_group is not None and rng.random() < settings.subscribe_fraction
        self.mode = "subscribe" if subscribes else "assign"
        self.member: Membership | None = None
        self.rebalanced = False  # rejoined (positions reset) since the last ok poll

    # ------------------------------------------------------------- routing

    def _node_for(self, route: int | str) -> int:
        known = self.leaders.get(route)
        if known is None or self.rng.random() < self.settings.random_broker_fraction:
            return self.api.random_node()
        return known

    def _request(self, route: int | str, method: str, path: str, body: Any = None, *, timeout_s: float,
                 **kwargs: Any) -> Reply:
        """One request routed by what this client knows; learns the leader from the answer."""
        try:
            reply = self.api.request(self._node_for(route), method, path, body, timeout_s=timeout_s, **kwargs)
        except (NotDelivered, NoAnswer):
            self.leaders.pop(route, None)
            raise
        hint = reply.doc.get("leader_id") if isinstance(reply.doc, dict) else None
        if reply.status == 200 and reply.served_by in self.api.addresses:
            self.leaders[route] = reply.served_by
        elif type(hint) is int and hint in self.api.addresses:
            self.leaders[route] = hint
        else:
            self.leaders.pop(route, None)
        return reply

    # ------------------------------------------------------------- helpers

    def _tp(self, partition: int) -> str:
        return partition_key(self.settings.topic, partition)

    def _invoke(self, f: str, value: Any) -> None:
        self.recorder.invoke(self.process, f, value)

    def _complete(self, type_: str, f: str, value: Any, node: Any = None, error: Any = None) -> bool:
        self.recorder.complete(type_, self.process, f, value, node=node, error=error)
        return type_ == "info"

    @property
    def _request_timeout_s(self) -> float:
        """Socket timeout: the broker's own answer comes first (up to 3 s waiting for a leader to be
        known, then timeout_ms for the commit, then 50003)."""
        return self.settings.request_timeout_ms / 1000 + LEADER_WAIT_S + 1.0

    # ---------------------------------------------------------------- send

    def send(self, value: int) -> bool:
        """Send one unique integer; True when the process retires (info)."""
        partition = self.rng.randrange(self.settings.partitions)
        key = self.settings.keys[partition]
        if self.settings.producer == "idempotent":
            return self._send_idempotent(partition, key, value)
        invoke = {"topic": self.settings.topic, "key": key, "value": value}
        self._invoke("send", invoke)
        body = {"records": [{"key": key, "value": value}]}
        path = f"/topics/{self.settings.topic}?timeout_ms={self.settings.request_timeout_ms}"
        try:
            reply = self._request(partition, "POST", path, body, content_type=KAFKA_JSON,
                                  timeout_s=self._request_timeout_s)
        except NotDelivered as exc:
            return self._complete("fail", "send", invoke, error=str(exc))
        except NoAnswer as exc:
            return self._complete("info", "send", invoke, error=str(exc))
        kind, result = _produce_outcome(reply)
        if kind != "ok":
            return self._complete(kind, "send", invoke, node=reply.served_by, error=result)
        partition, offset = result
        return self._complete("ok", "send", {**invoke, "partition": partition, "offset": offset},
                              node=reply.served_by)

    def _producer_state(self) -> _Producer | None:
        if self.producer is None:
            reply = self.api.first_answer("POST", "/producers", {}, timeout_s=self._request_timeout_s)
            doc = reply.doc if reply is not None else None
            if isinstance(doc, dict) and type(doc.get("producer_id")) is int:
                self.producer = _Producer(doc["producer_id"], int(doc.get("producer_epoch", 0)))
        return self.producer

    def _send_idempotent(self, partition: int, key: str, value: int) -> bool:
        producer = self._producer_state()
        if producer is None:
            return False  # no producer id yet (no broker answered): nothing was sent or recorded
        sequence = producer.sequences.get(partition, 0)
        invoke = {"topic": self.settings.topic, "key": key, "value": value}
        self._invoke("send", invoke)
        body = {"records": [{"key": key, "value": value}], "producer_id": producer.producer_id,
                "producer_epoch": producer.epoch, "base_sequence": sequence}
        path = (f"/topics/{self.settings.topic}/partitions/{partition}"
                f"?timeout_ms={self.settings.request_timeout_ms}")

        def attempt() -> tuple[str, Any, Reply | None]:
            try:
                reply = self._request(partition, "POST", path, body, content_type=KAFKA_JSON,
                                      timeout_s=self._request_timeout_s)
            except NotDelivered as exc:
                return "fail", str(exc), None
            except NoAnswer as exc:
                return "info", str(exc), None
            kind, result = _produce_outcome(reply)
            return kind, result, reply

        kind, result, reply = attempt()
        node = None if reply is None else reply.served_by
        if kind != "ok":
            return self._complete(kind, "send", invoke, node=node, error=result)
        producer.sequences[partition] = sequence + 1
        acked = {**invoke, "partition": result[0], "offset": result[1]}
        if self.rng.random() < self.settings.resend_probability:
            again, again_result, _ = attempt()  # a client retry of the acknowledged batch
            acked["resent"] = {"offset": again_result[1]} if again == "ok" else {again: again_result}
        return self._complete("ok", "send", acked, node=node)

    # ------------------------------------------------------- consumer

    @property
    def ready(self) -> bool:
        """Whether the consumer has something to poll and commit (an assignment, a membership)."""
        return self.member is not None if self.mode == "subscribe" else bool(self.assignment)

    def consumer_op(self, f: str) -> str:
        """The op this client does when the workload picks consumer op f: a consumer that is not
        ready assigns or subscribes first; a subscriber's partitions come from the group."""
        if f in ("assign", "poll", "commit") and not self.ready:
            return "subscribe" if self.mode == "subscribe" else "assign"
        if (f == "assign" and self.mode == "subscribe") or (f == "commit" and not self.assignment):
            return "poll"
        return f

    def _group(self) -> str | None:
        return self.settings.subscribe_group if self.mode == "subscribe" else self.settings.group

    def _group_request(self, method: str, path: str, body: Any = None, *, timeout_s: float) -> Reply:
        return self._request(COORDINATOR, method, path, body, timeout_s=timeout_s)

    def _take_membership(self, member: Membership) -> None:
        """A new generation: start each assigned partition at the group's committed offset (0 when
        nothing was committed or the offsets cannot be read: auto.offset.reset=earliest)."""
        try:
            committed, _ = membership.committed_offsets(self._group_request, self.settings.subscribe_group,
                                                        self.settings.topic, self._request_timeout_s)
        except (membership.GroupError, NotDelivered, NoAnswer):
            committed = {}
        self.member = member
        self.assignment = list(member.partitions)
        self.positions = {p: committed.get(p, 0) for p in member.partitions}

    def subscribe(self) -> bool:
        """Join the subscribe group; ok once the rebalance gave this member its partitions."""
        group = self.settings.subscribe_group
        invoke = {"topics": [self.settings.topic], "group": group}
        self._invoke("subscribe", invoke)
        try:
            member = membership.join(self._group_request, group, self.settings.topic, None)
        except NotDelivered as exc:
            return self._complete("fail", "subscribe", invoke, error=str(exc))
        except NoAnswer as exc:  # it may have joined: a member this client does not know
            return self._complete("info", "subscribe", invoke, error=str(exc))
        except membership.GroupError as exc:
            kind = "fail" if exc.definite else "info"
            return self._complete(kind, "subscribe", invoke, node=exc.reply.served_by, error=str(exc))
        self._take_membership(member)
        return self._complete("ok", "subscribe", {**invoke, "generation": member.generation,
                                                  "assignment": [self._tp(p) for p in member.partitions]})

    def _stay_member(self) -> str | None:
        """A subscriber's heartbeat before it polls, rejoining when told to (which resets its
        positions: the next ok poll says ``rebalanced``); returns an error, after which the
        membership is dropped (the next op subscribes)."""
        group, member = self.settings.subscribe_group, self.member
        try:
            verdict = membership.heartbeat(self._group_request, group, member, self._request_timeout_s)
            if verdict == "ok":
                return None
            rejoined = membership.join(self._group_request, group, self.settings.topic,
                                       member.member_id if verdict == "rejoin" else None)
        except (membership.GroupError, NotDelivered, NoAnswer) as exc:
            self.member, self.assignment, self.positions = None, [], {}
            return str(exc)
        self._take_membership(rejoined)
        self.rebalanced = True
        return None

    def poll(self) -> bool:
        """Fetch every assigned partition from its position (the consumer must be ready); a
        subscriber first heartbeats, rejoining the group if a rebalance is under way."""
        invoke = {"positions": {self._tp(p): self.positions[p] for p in self.assignment}}
        self._invoke("poll", invoke)
        if self.mode == "subscribe":
            error = self._stay_member()
            if error is not None:
                return self._complete("fail", "poll", invoke, error=f"group membership: {error}")
        records: dict[str, list] = {}
        errors: dict[str, str] = {}
        resets: dict[str, list[int]] = {}
        served: set[int] = set()
        for partition in self.assignment:
            tp, position = self._tp(partition), self.positions[partition]
            path = (f"/topics/{self.settings.topic}/partitions/{partition}/records?offset={position}"
                    f"&max_bytes={self.settings.poll_max_bytes}&timeout_ms={self.settings.poll_timeout_ms}")
            try:
                reply = self._request(partition, "GET", path, accept=KAFKA_JSON,
                                      timeout_s=self._request_timeout_s + self.settings.poll_timeout_ms / 1000)
            except (NotDelivered, NoAnswer) as exc:
                errors[tp] = str(exc)
                continue
            if reply.served_by is not None:
                served.add(reply.served_by)
            if reply.status == 200 and isinstance(reply.doc, list):
                if not all(isinstance(r, dict) and type(r.get("offset")) is int for r in reply.doc):
                    errors[tp] = f"malformed records: {reply.doc!r}"[:200]
                    continue
                records[tp] = [[r["offset"], scalar_value(r.get("value"))] for r in reply.doc]
                if records[tp]:
                    self.positions[partition] = records[tp][-1][0] + 1
                continue
            errors[tp] = reply.describe()
            latest = reply.doc.get("latest") if isinstance(reply.doc, dict) else None
            if reply.error_code == OFFSET_OUT_OF_RANGE and type(latest) is int:
                resets[tp] = [position, latest]
                self.positions[partition] = latest
        node = sorted(served) if served else None
        if self.assignment and not records:
            return self._complete("fail", "poll", invoke, node=node, error=errors)
        value: dict[str, Any] = {"records": records, "mode": self.mode, "rebalanced": self.rebalanced}
        self.rebalanced = False
        if errors:
            value["errors"] = errors
        if resets:
            value["resets"] = resets
        return self._complete("ok", "poll", value, node=node)

    def assign(self) -> bool:
        """A new random non-empty set of partitions; kept ones keep their positions, new ones
        start at offset 0 (declared as a seek)."""
        count = self.rng.randint(1, self.settings.partitions)
        chosen = sorted(self.rng.sample(range(self.settings.partitions), count))
        new = [p for p in chosen if p not in self.assignment]
        value = {"partitions": [self._tp(p) for p in chosen], "seek": {self._tp(p): 0 for p in new}}
        self._invoke("assign", value)
        self.positions = {p: self.positions.get(p, 0) for p in chosen}
        self.assignment = chosen
        return self._complete("ok", "assign", value)

    def close(self) -> None:
        """Release what the client holds (nothing: every request had its own connection)."""

    def crash(self) -> bool:
        """The client restarts: consumer (and group membership, without leaving) and producer
        state are gone."""
        self._invoke("crash", None)
        self.assignment, self.positions, self.producer, self.leaders, self.member = [], {}, None, {}, None
        return self._complete("ok", "crash", None)

    # ---------------------------------------------------- group offsets

    def commit(self) -> bool:
        """Commit this consumer's positions: an assign-mode consumer without member id (the group has
        no members), a subscriber with its member id and generation."""
        group = self._group()
        offsets = {self._tp(p): self.positions[p] for p in self.assignment}
        invoke = {"group": group, "offsets": offsets}
        self._invoke("commit", invoke)
        body: dict[str, Any] = {"offsets": [{"topic": self.settings.topic, "partition": p,
                                             "offset": self.positions[p]} for p in self.assignment]}
        if self.mode == "subscribe":
            body.update(member_id=self.member.member_id, generation=self.member.generation)
        try:
            reply = self._group_request("POST", f"/groups/{group}/offsets", body, timeout_s=self._request_timeout_s)
        except NotDelivered as exc:
            return self._complete("fail", "commit", invoke, error=str(exc))
        except NoAnswer as exc:
            return self._complete("info", "commit", invoke, error=str(exc))
        if reply.status == 200:
            return self._complete("ok", "commit", invoke, node=reply.served_by)
        kind = "fail" if reply.definite_failure else "info"
        return self._complete(kind, "commit", invoke, node=reply.served_by, error=reply.describe())

    def list_committed(self) -> bool:
        group = self._group()
        self._invoke("list_committed", {"group": group})
        try:
            offsets, reply = membership.committed_offsets(self._group_request, group, self.settings.topic,
                                                          self._request_timeout_s)
        except (NotDelivered, NoAnswer) as exc:
            return self._complete("fail", "list_committed", {"group": group}, error=describe(exc))
        except membership.GroupError as exc:
            return self._complete("fail", "list_committed", {"group": group}, node=exc.reply.served_by,
                                  error=str(exc))
        return self._complete("ok", "list_committed",
                              {"group": group, "offsets": {self._tp(p): o for p, o in offsets.items()}},
                              node=reply.served_by)
