"""raftka's jepsen-style test suite: history format, checker, plots.

history (format + model) -> observations (index) -> check_* (one anomaly family
each) -> checker.check() -> report (JSON/text) and plots (PNG); cli is check.py.
"""
