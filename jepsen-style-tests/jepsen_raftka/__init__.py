"""raftka's jepsen-style test suite: fault-injection harness, history format, checker, plots.

Checker: history (format + model) -> observations (index) -> check_* (one anomaly
family each) -> checker.check() -> report (JSON/text) and plots (PNG); cli is check.py.

Harness: cluster.open_cluster() gives hosts as network namespaces (netns.py) or,
without root, loopback processes behind a fault proxy (loopback.py, faultproxy.py);
processes.Brokers runs one process per host; nemesis.py has the faults (shapes of
network faults as grudges in topology.py), disk_loss.py the disk losses, and schedule.py
alternates them; raft_state.py reads the brokers' view of their Raft groups (is the
cluster settled?); probe.py measures reachability; runslot.py and teardown.py make sure
nothing outlives a run.

Runner: runner.run() drives one run end to end (run_cli is run.py): the workload
(workload.py: worker processes of client threads; client.py: one client process's
Kafka-style ops over api.py's HTTP with definite/indefinite outcomes) under a
schedule of the faults scenarios.py names, the final polls (final_poll.py), the
brokers' own evidence (collect.py: replica logs, leader observations), the checker.
"""
