"""The console's Reassignments page in headless Chromium against a real 3-broker cluster whose catch-up traffic is
throttled (--reassignment-max-bytes-per-sec), so that a move of a 3 MB partition takes seconds: the move shows
with its progress bar, is cancelled from the page after confirmation and listed as cancelled; a decommission shows
per broker with its progress, finishes, and the Overview marks the broker decommissioned. Screenshots go to
tests/results/console/."""

from __future__ import annotations

import pytest
from test_console import Console, browser

from cluster import request, wait_until
from elastic_support import get_json, produce_values, reassignments, replicas_of

pytestmark = pytest.mark.timeout(180)

RATE = 400_000  # bytes/s: a 3 MB partition's snapshot (1 MiB chunks) reaches a new replica in about 6 s
ENTRIES = 250  # more than a journal keeps after a checkpoint (200), so a new replica is sent a snapshot
VALUE_BYTES = 12_000
TOPIC = "mv"


def progress(ui: Console, css: str) -> float | None:
    bars = ui.all(css)
    return float(bars[0].get_attribute("aria-valuenow")) if bars else None


def test_moves_and_a_decommission_show_their_progress_cancel_and_finish(cluster_factory):
    cluster = cluster_factory(3, extra_args=["--reassignment-max-bytes-per-sec", str(RATE)])
    cluster.create_topic(TOPIC, 1, 2)
    for i in range(ENTRIES):
        produce_values(cluster.url(1 + i % 3), TOPIC, 0, [b"%05d" % i + b"x" * VALUE_BYTES])
    original = replicas_of(cluster, TOPIC)[0]
    spare = next(b for b in cluster.ids if b not in original)
    leader = cluster.leader_of(TOPIC, 0)
    wait_until(lambda: next(g for g in get_json(cluster, f"/brokers/{leader}/raft")["groups"]
                            if g.get("partition") == f"{TOPIC}/0")["snapshot_index"] > 0, 30,
               "the leader's journal to be compacted (a new replica gets the throttled snapshot)")

    with browser(cluster.url(1)) as ui:
        ui.open("/reassignments")
        ui.shown('[data-testid="no-moves"]')
        ui.shown('[data-testid="no-drains"]')

        moved = request(cluster.url(2) + f"/topics/{TOPIC}/partitions/0/reassignment", "POST",
                        {"replicas": [original[0], spare]})
        assert moved.status == 202, moved.body
        job = moved.json()["id"]
        row = f'[data-testid="move-{TOPIC}-0"][data-job="{job}"]'
        ui.until(lambda c: 0 < (progress(c, f'{row} [role="progressbar"]') or 0) < 100,
                 "the move's progress bar partly filled", timeout=30)
        text = ui.text_of(row)
        assert f"[{original[0]}, {original[1]}] → [{original[0]}, {spare}]" in text and "copying" in text, text
        assert ui.text_of('[data-testid="count-reassignments"]') == "1"
        ui.screenshot("reassignments")

        ui.find(f'[data-testid="cancel-{job}"]').click()
        assert not reassignments(cluster)[0]["cancelled"], "cancelled without confirmation"
        ui.shown(f'[data-testid="cancel-{job}-confirm"]').click()
        ui.shown(f'[data-testid="finished-{job}"][data-outcome="cancelled"]', timeout=30)
        assert replicas_of(cluster, TOPIC)[0] == original
        ui.shown('[data-testid="no-moves"]')

        victim = next(b for b in original if b != 1)  # broker 1 serves the console
        drain = request(cluster.url(3) + f"/brokers/{victim}/decommission", "POST")
        assert drain.status == 202, drain.body
        [drain_job] = [j["id"] for j in drain.json()["reassignments"]]

        def draining(c: Console):
            move = progress(c, f'[data-testid="move-bar-{drain_job}"]') or 0
            drain = progress(c, f'[data-testid="drain-bar-{victim}"]') or 0
            return 0 < move < 100 and 0 < drain < 100 and (c.find(f'[data-testid="drain-{victim}"]').text,
                                                           c.find(f'[data-testid="move-{TOPIC}-0"]').text)

        shown = ui.until(draining, "the drain's and its move's progress bars partly filled", timeout=30)
        assert "0 of 1 replicas moved off" in shown[0] and "decommission" in shown[1], shown
        ui.screenshot("reassignments-decommission")
        ui.shown(f'[data-testid="finished-{drain_job}"][data-outcome="completed"]', timeout=60)
        ui.shown(f'[data-testid="drain-done-{victim}"][data-outcome="decommissioned"]', timeout=60)
        assert sorted(replicas_of(cluster, TOPIC)[0]) == sorted(b for b in cluster.ids if b != victim)
        assert "No broker is being decommissioned" in ui.text_of('[data-testid="no-drains"]')
        assert not ui.all('[data-testid="count-reassignments"]')

        ui.open("/")
        gone = ui.shown(f'[data-testid="broker-{victim}"][data-membership="decommissioned"]')
        assert "decommissioned" in gone.text
        assert ui.text_of('[data-testid="card-brokers"]').startswith("2 / 2")
        seats = {b: ui.text_of(f'[data-testid="broker-{b}"]') for b in cluster.ids if b != victim}
        assert all(("voter" in text or "leader" in text) and "active" in text for text in seats.values()), seats
        ui.screenshot("overview-decommissioned")
        assert ui.console_errors() == []
