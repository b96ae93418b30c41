"""raftka.raft — Raft replication for raftka: a pure consensus core per group
(`core`), its wire messages (`messages`), the broker-to-broker transport
(`transport`), the durable journal, the host that drives every group of a
broker from one event loop, and the partition and metadata state machines."""
