"""raftka's jepsen-style test suite: fault-injection harness, history format, checker, plots.

Checker: history (format + model) -> observations (index) -> check_* (one anomaly
family each) -> checker.check() -> report (JSON/text) and plots (PNG); cli is check.py.

Harness: cluster.open_cluster() gives hosts as network namespaces (netns.py) or,
without root, loopback processes behind a fault proxy (loopback.py, faultproxy.py);
processes.Brokers runs one process per host; nemesis.py has the faults (shapes of
network faults as grudges in topology.py) and schedule.py alternates them; probe.py
measures reachability; runslot.py and teardown.py make sure nothing outlives a run.
"""
