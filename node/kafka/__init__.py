"""raftka.node.kafka — the Kafka wire protocol front end: Kafka clients (librdkafka, kafka-python, aiokafka, kcat, ...)
talk to raftka unchanged.

A thin adapter over the same broker services as the HTTP API
(`raftka.node.services`, `raftka.node.groups`); it never calls the HTTP
handlers. `server` accepts connections, `connection` frames them (one
`KafkaConnection` per client: responses in request order, per-partition
produce ordering), `frames` decodes a request, `apis` lists the APIs and
versions served (what ApiVersions advertises), `handlers` has one module per
API family (in the shape of Redpanda's `kafka/server/handlers/`), `errors`
maps the broker's errors to Kafka's codes, `forwarding` relays admin writes
to the metadata leader, `registration` puts every broker's Kafka address into
the metadata group so that Metadata answers name them all, and `access` says
who a request is from (after SASL or a client certificate; `connection`) and
asks the broker's one authorization decision for each (Kafka's rules, in the
handlers).

Message schemas: kafka-python's protocol classes (kafka-python >= 3), which
are generated at import time from Kafka's own JSON message definitions and
cover every version of every API, with compiled encoders and decoders. The
alternative was kio (dataclasses generated from the same JSON files, a Rust
reader). `python -m bench.kafka_codecs` (Produce v9, Fetch v12; µs per
message, best of 3-5 loops; four runs on the shared 2-core AMD EPYC at load
average 2.6-9, so ranges):

==========================================  ============  ===========
operation                                   kafka-python  kio
==========================================  ============  ===========
decode ProduceRequest, 1 partition x 16 KiB     14-35       1.7-4.6
decode ProduceRequest, 6 partitions x 64 KiB    42-90        11-33
encode ProduceResponse, 1 partition             26-91        22-28
decode FetchRequest, 6 partitions               13-35       2.2-2.5
encode FetchResponse, 1 partition x 16 KiB      32-125       27-99
encode FetchResponse, 6 partitions x 1 MiB    680-5300    3070-13600
==========================================  ============  ===========

kio decodes requests faster (its reader is native code), but the savings are
10-60 µs per request, against a Raft commit of milliseconds; kafka-python
encoded the large fetch response faster in three of the four runs (3-10x:
one copy of the stored batches into a pooled buffer, where kio's writer goes
through io.BytesIO; 1.5x slower in the fourth), and a fetch response of
stored batches is the broker's largest message. Building answers is also
simpler with kafka-python: a response of any version is built from keyword
arguments, fields absent from that version are ignored and missing ones take
the schema's default, where kio's frozen dataclasses want every field of the
version, wrapped in its typed primitive (i32(...), i32Timedelta.parse(...)).
Both cover the versions served here. So kafka-python: one library for both
directions, and a package the tests install anyway (kio would be one more
runtime dependency). Record batches stay bytes end to end: the Produce
decoder hands them over as bytes, the storage keeps them as sent, and Fetch
sends them as stored.
"""
