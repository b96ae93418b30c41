"""raftka.node — the broker process: configuration, the Broker (Raft host, metadata and
partition groups, leader routing), and its aiohttp HTTP API in REST Proxy v2 style."""
