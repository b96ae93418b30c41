"""raftka.node — the broker process: one broker core, thin front ends.

``cluster/`` is the core (Raft host, metadata and partition groups, leader routing); ``groups/``
the consumer-group coordinator; ``http/`` the REST Proxy v2 style front end. Process-level
modules: ``main`` (entry point), ``config``, ``errors`` (protocol-neutral error classes with
codes), ``metrics``."""
