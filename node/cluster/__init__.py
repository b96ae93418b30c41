"""raftka.node.cluster — the broker core: the Broker (Raft host, metadata group, partition hosting,
reconciliation, leader routing), the metadata state machine, data-directory identity and topic rules."""
