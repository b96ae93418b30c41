"""raftka.node.groups — consumer groups: the coordinator (membership, generations, rebalances), the
partition assignor, and the broker-side group service that runs the coordinator on the metadata leader."""
