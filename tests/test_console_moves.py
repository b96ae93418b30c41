"""The console's Reassignments page in headless Chromium against a real 3-broker cluster whose catch-up traffic is
throttled (--reassignment-max-bytes-per-sec), so that a move of a 3 MB partition takes seconds: the move shows
with its progress bar; its new replica's broker is killed and the move shows stuck and why; it is cancelled
from the page after confirmation and listed as cancelled; a decommission shows per broker with its progress,
finishes, and the Overview marks the broker decommissioned. Screenshots go to tests/results/console/."""

from __future__ import annotations

import pytest
from test_console import Console, browser

from cluster import request, wait_until
from elastic_support import get_json, produce_values, replicas_of

pytestmark = pytest.mark.timeout(180)

# bytes/s: a 3 MB partition's snapshot goes in 1 MiB chunks, the first at once and each next one 5 s later, so a
# move stays partly done for about 10 s: long enough for the page, which polls every 2 s on a loaded machine, to
# show it (at 400 kB/s the decommission's move took 5 s, and under CI's load the page once missed it)
RATE = 200_000
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
    home, victim = original  # the console's broker stays; the other replica's broker is decommissioned
    leader = cluster.leader_of(TOPIC, 0)
    wait_until(lambda: next(g for g in get_json(cluster, f"/brokers/{leader}/raft")["groups"]
                            if g.get("partition") == f"{TOPIC}/0")["snapshot_index"] > 0, 30,
               "the leader's journal to be compacted (a new replica gets the throttled snapshot)")

    def api(path: str, method: str = "GET", body=None):
        return request(cluster.url(home) + path, method, body)

    with browser(cluster.url(home)) as ui:
        ui.open("/reassignments")
        ui.shown('[data-testid="no-moves"]')
        ui.shown('[data-testid="no-drains"]')

        moved = api(f"/topics/{TOPIC}/partitions/0/reassignment", "POST", {"replicas": [home, spare]})
        assert moved.status == 202, moved.body
        job = moved.json()["id"]
        row = f'[data-testid="move-{TOPIC}-0"][data-job="{job}"]'
        ui.until(lambda c: 0 < (progress(c, f'{row} [role="progressbar"]') or 0) < 100,
                 "the move's progress bar partly filled", timeout=30)
        text = ui.text_of(row)
        assert f"[{home}, {victim}] → [{home}, {spare}]" in text and "copying" in text, text
        assert ui.text_of('[data-testid="count-reassignments"]') == "1"
        ui.screenshot("reassignments")

        cluster.kill(spare)  # the new replica's broker dies mid-copy: the move is stuck and says why
        ui.shown(f'{row}[data-state="stuck"]', timeout=30)
        assert f"broker {spare} is down" in ui.text_of(f'{row} [data-testid="stuck-reason"]')
        ui.screenshot("reassignments-stuck")
        ui.find(f'[data-testid="cancel-{job}"]').click()
        assert not api("/reassignments").json()["reassignments"][0]["cancelled"], "cancelled without confirmation"
        ui.shown(f'[data-testid="cancel-{job}-confirm"]').click()
        ui.shown(f'[data-testid="finished-{job}"][data-outcome="cancelled"]', timeout=30)
        assert replicas_of(cluster, TOPIC)[0] == original
        ui.shown('[data-testid="no-moves"]')
        cluster.start_broker(spare)
        cluster.wait_healthy(30, [spare])
        errors = ui.console_errors()  # the relays to the dead broker's /raft and /metrics failed meanwhile
        assert all(f"/brokers/{spare}/" in e for e in errors), errors

        def decommission():  # refused (409) until the metadata leader, too, sees the restarted broker alive to take
            resp = api(f"/brokers/{victim}/decommission", "POST")
            assert resp.status in (202, 409), resp.body
            return resp.status == 202 and resp

        drain = wait_until(decommission, 30, f"broker {victim}'s decommission to start")
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
