"""Liveness after heals, non-vacuity, and how they decide the verdict."""

from jepsen_histories import Builder, clean_run

from jepsen_raftka.check_liveness import LivenessLimits
from jepsen_raftka.checker import CheckOptions


def refs(anomaly):
    return [op.invoke_index for op in anomaly.ops]


def healed_then(build_after_heal, n=3):
    """Sends and reads n records, heals, then lets the caller record the rest."""
    b = Builder()
    for i in range(n):
        b.send(0, i, offset=i)
    b.nemesis("start-partition")
    b.nemesis("heal")
    build_after_heal(b)
    return b


def final_read(b, n, process=9):
    b.assign(process, ["t/0"], seek_to_beginning=True)
    return b.poll(process, {"t/0": [[i, i] for i in range(n)]}, f="final_poll")


def test_clean_run_is_live():
    report = clean_run().check()
    assert report.verdict == "valid" and not report.of_kind("liveness")


def test_sends_not_recovered_within_30_s():
    def after(b):
        b.send(1, 50, type_="fail")
        b.advance(31)
        b.send(1, 3, offset=3)  # too late
        final_read(b, 4)
    b = healed_then(after)
    report = b.check()
    [a] = report.of_kind("liveness")
    assert a.details["kind"] == "sends-not-recovered" and a.details["attempts"] == 1
    assert [op.body.value for op in a.ops] == [50]
    assert report.verdict == "invalid"


def test_slow_ack_after_heal_is_not_recovery():
    def after(b):
        b.begin(1, "send", {"topic": "t", "value": 3})
        b.advance(40)
        b.end("ok", 1, "send", {"topic": "t", "value": 3, "partition": 0, "offset": 3})
        final_read(b, 4)
    [a] = healed_then(after).check().of_kind("liveness")
    assert a.details["kind"] == "sends-not-recovered"


def test_recovery_limit_is_an_option():
    def after(b):
        b.send(1, 3, type_="fail")
        b.advance(10)
        b.send(1, 4, offset=3)
        final_read(b, 4)
        b.events[-1]["value"]["records"]["t/0"][3] = [3, 4]
    b = healed_then(after)
    assert b.check().verdict == "valid"
    strict = CheckOptions(0, 0, liveness=LivenessLimits(send_recovery_s=5))
    [a] = b.check(options=strict).of_kind("liveness")
    assert a.details["limit_s"] == 5


def test_heal_followed_by_a_new_fault_within_the_window_is_skipped():
    b = Builder()
    b.send(0, 0, offset=0)
    b.nemesis("heal")
    b.nemesis("start-kill")
    b.advance(40)
    b.send(0, 1, type_="fail")
    b.nemesis("heal")
    b.send(0, 2, offset=1)
    final_read(b, 2)
    b.events[-1]["value"]["records"]["t/0"] = [[0, 0], [1, 2]]
    report = b.check()
    assert report.verdict == "valid", report.to_text()


def test_final_polls_not_converged():
    def after(b):
        b.send(1, 50, offset=3)
        b.assign(9, ["t/0"], seek_to_beginning=True)
        b.poll(9, {"t/0": [[0, 0], [1, 1]]}, f="final_poll")
    report = healed_then(after).check()
    [a] = report.of_kind("liveness")
    assert a.details == {"kind": "final-polls-not-converged", "partition": "t/0",
                         "target_offset": 3, "reached_offset": 1}
    assert a.ops[0].f == "final_poll"
    assert {x.details["reason"] for x in report.of_kind("lost-write")} == {"never-read"}


def test_final_polls_too_slow():
    converging = []

    def after(b):
        b.send(1, 3, offset=3)
        b.assign(9, ["t/0"], seek_to_beginning=True)
        b.poll(9, {"t/0": [[0, 0], [1, 1]]}, f="final_poll")
        b.advance(61)
        converging.append(b.poll(9, {"t/0": [[2, 2], [3, 3]]}, f="final_poll"))
    report = healed_then(after).check()
    [a] = report.of_kind("liveness")
    assert a.details["kind"] == "final-polls-slow" and a.details["seconds_after_heal"] > 60
    assert refs(a) == converging


def test_no_heal_marker_is_unknown():
    b = Builder()
    b.send(0, 1, offset=0)
    b.poll(1, {"t/0": [[0, 1]]})
    report = b.check()
    assert report.verdict == "unknown" and report.anomalies == []
    assert "no heal marker" in report.unknown[0]


def test_no_final_polls_is_unknown():
    def after(b):
        b.send(1, 50, offset=3)
        b.poll(1, {"t/0": [[i, i] for i in range(3)] + [[3, 50]]})
    report = healed_then(after).check()
    assert report.verdict == "unknown" and report.unknown == [
        "no ok final_poll: convergence after the heal not checked"]


def test_no_send_after_heal_is_unknown():
    report = healed_then(lambda b: final_read(b, 3)).check()
    assert report.verdict == "unknown" and "no send was attempted" in report.unknown[0]


def test_anomalies_beat_unknown():
    b = Builder()
    b.send(0, 1, offset=0)
    b.poll(1, {"t/0": [[0, 2]]})
    assert b.check().verdict == "invalid"


def test_vacuous_run_is_invalid_not_valid():
    report = clean_run(5).check(options=CheckOptions())
    [a] = report.anomalies
    assert a.kind == "vacuous" and report.verdict == "invalid"
    assert a.details == {"ok_sends": 6, "min_ok_sends": 100, "polled_records": 11,
                         "min_polled_records": 100}


def test_enough_sends_and_reads_are_not_vacuous():
    report = clean_run(100).check(options=CheckOptions())
    assert report.verdict == "valid", report.to_text()


def disk_full_window(sends, window="disk-full", grace_s=6.0):
    """A disk-full window of 12 s; `sends` (key, type) are made after `grace_s` seconds, 10 ms apart."""
    b = Builder()
    b.send(0, 0, offset=0)
    b.nemesis(f"start-{window}", {"nodes": [2], "target": "leader"})
    b.advance(grace_s)
    for i, (key, type_) in enumerate(sends, start=1):
        value = {"topic": "t", "key": key, "value": i}
        result = {**value, "partition": 0, "offset": i} if type_ == "ok" else value
        b.op(i, "send", value, type_, result)
        b.advance(0.01)
    b.advance(12 - grace_s)
    b.nemesis(f"stop-{window}", {"nodes": [2]})
    return b


def test_a_partition_that_takes_no_write_while_a_disk_is_full_is_unavailable():
    b = disk_full_window([("k1", "fail")] * 6 + [("k2", "ok")] * 6)
    [a] = b.check().of_kind("disk-full-unavailable")
    assert (a.details["key"], a.details["attempts"]) == ("k1", 6)
    assert a.details["fault"] == {"nodes": [2], "target": "leader"} and len(a.ops) == 5


def test_disk_full_availability_needs_a_failure_streak_after_the_grace_period():
    assert not disk_full_window([("k1", "fail")] * 5 + [("k1", "ok")]).check().of_kind("disk-full-unavailable")
    assert not disk_full_window([("k1", "info")] * 4).check().of_kind("disk-full-unavailable")  # too few
    early = disk_full_window([("k1", "fail")] * 8, grace_s=3.0)  # all within the 6 s hand-over grace
    assert not early.check().of_kind("disk-full-unavailable")
    other = disk_full_window([("k1", "fail")] * 8, window="partition")  # only disk-full windows count
    assert not other.check().of_kind("disk-full-unavailable")
