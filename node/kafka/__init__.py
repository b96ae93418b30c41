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
the metadata group so that Metadata answers name them all.

Message schemas: kafka-python's protocol classes (kafka-python >= 3), which
are generated at import time from Kafka's own JSON message definitions and
cover every version of every API, with compiled encoders and decoders. The
alternative was kio (dataclasses generated from the same JSON files, a Rust
reader). `python -m bench.kafka_codecs` (Produce v9, Fetch v12; µs per
message, best of 3, AMD EPYC, shared 2 cores, load 2.6):

==========================================  ============  ======
operation                                   kafka-python  kio
==========================================  ============  ======
decode ProduceRequest, 1 partition x 16 KiB         15.6     1.7
decode ProduceRequest, 6 partitions x 64 KiB        56.0    11.4
encode ProduceResponse, 1 partition                 30.0    22.3
decode FetchRequest, 6 partitions                   18.4     2.4
encode FetchResponse, 1 partition x 16 KiB          31.6    27.3
encode FetchResponse, 6 partitions x 1 MiB         682     3068
==========================================  ============  ======

kio decodes requests faster (its reader is native code), but the savings are
10-45 µs per request, against a Raft commit of milliseconds; kafka-python
encodes large fetch responses 4.5x faster (one copy of the stored batches
into a pooled buffer, where kio's writer goes through io.BytesIO), and a
fetch response of stored batches is the broker's largest message. kio also
starts at newer versions (Produce v3, Fetch v4, OffsetCommit v2,
CreateTopics v2) and has no generic "message for this API key" lookup of
response classes, which answering UNSUPPORTED_VERSION needs. So kafka-python:
one library for both directions and every version, and a dependency the
tests install anyway. Record batches stay bytes end to end: the Produce
decoder hands them over as bytes, the storage keeps them as sent, and Fetch
sends them as stored.
"""
