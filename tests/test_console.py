"""The web console (`/ui`) in a real headless Chromium against a real 3-broker cluster.

Debian's chromium and chromium-driver, driven by selenium with both paths given (nothing is
downloaded). One cluster and one browser serve the whole module; the tests run in file order
and the last one kills a broker. Screenshots go to tests/results/console/.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster import request, retry
from raftka.client import Consumer
from raftka.client.devcluster import LocalCluster
from raftka.node.services.traffic import PRODUCE_LATENCY_BUCKETS as LATENCY_BUCKETS

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
RESULTS = Path(__file__).parent / "results" / "console"
BINARY = "application/vnd.kafka.binary.v2+json"
JSON_EMBEDDED = "application/vnd.kafka.json.v2+json"
WAIT_S = 20.0

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): `make deb-packages` "
                "as root installs them", allow_module_level=True)

from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException, TimeoutException, WebDriverException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(3, tmp_path_factory.mktemp("console"), election_timeout_ms=300).start()
    try:
        yield c
    finally:
        c.close()


class Console:
    """The browser on broker 1's console, with waits that poll the page until a condition holds."""

    def __init__(self, driver, base: str):
        self.driver, self.base = driver, base

    def open(self, page: str) -> None:
        self.driver.get(f"{self.base}/ui#{page}")

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, condition, what: str, timeout: float = WAIT_S):
        """condition(console) -> truthy value; retried (also over re-rendered elements) until the timeout."""
        def attempt(_driver):
            try:
                return condition(self)
            except (StaleElementReferenceException, WebDriverException):
                return None
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(attempt)
        except TimeoutException:
            raise AssertionError(f"waited {timeout} s for {what}; the page shows:\n{self.page_text()}") from None

    def page_text(self) -> str:
        """What the page shows, and the browser console's errors (for a failed wait's message)."""
        try:
            return f"{self.find('body').text[:3000]}\nbrowser console errors: {self.console_errors()}"
        except WebDriverException as exc:
            return f"(unreadable: {exc})"

    def shown(self, css: str, timeout: float = WAIT_S):
        return self.until(lambda c: c.all(css)[0] if c.all(css) else None, css, timeout)

    def text_of(self, css: str) -> str:
        return self.shown(css).text

    def fill(self, form: str, **fields: str) -> None:
        for name, value in fields.items():
            element = self.find(f'{form} [name="{name}"]')
            if element.tag_name == "select":
                Select(element).select_by_value(value)
            else:  # select and type over: clear() fires no input event, so a re-render could restore the old value
                element.send_keys(Keys.CONTROL, "a")
                element.send_keys(value)
                self.until(lambda _: element.get_attribute("value") == value, f"the {name} field to read {value!r}")

    def screenshot(self, name: str) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def console_errors(self) -> list[str]:
        """Browser console entries at SEVERE since the last call (uncaught errors, failed loads)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]


@contextlib.contextmanager
def browser(base: str, *flags: str):
    """A headless Chromium with a fresh profile on the console at `base`, quit at the end."""
    profile = tempfile.mkdtemp(prefix="raftka-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield Console(driver, base)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def ui(cluster):
    with browser(cluster.url(1)) as console:
        yield console


def produce(cluster, topic: str, records: list[dict], broker: int = 2) -> list[dict]:
    resp = retry(lambda: request(cluster.url(broker) + f"/topics/{topic}", "POST", {"records": records},
                                 content_type=JSON_EMBEDDED))
    assert resp.status == 200, resp.body
    return resp.json()["offsets"]


def create_topic(cluster, name: str, partitions: int) -> None:
    assert retry(lambda: request(cluster.url(1) + "/topics", "POST",
                                 {"name": name, "partitions": partitions})).status == 201


def commit(cluster, group: str, offsets: dict[tuple[str, int], int]) -> None:
    body = {"offsets": [{"topic": t, "partition": p, "offset": o} for (t, p), o in offsets.items()], "reset": True}
    assert retry(lambda: request(cluster.url(1) + f"/groups/{group}/offsets", "POST", body)).status == 200


def total_lag(ui: Console) -> int:
    return int(ui.text_of('[data-testid="total-lag"]').replace(",", ""))


TOPIC_NAMES = st.text(st.sampled_from('ab"\\\n{}=, '), min_size=1, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(produced=st.dictionaries(TOPIC_NAMES, st.integers(0, 10**9), max_size=4),
       observations=st.lists(st.floats(0.0001, 20.0), min_size=1, max_size=60))
def test_the_consoles_metrics_parser_reads_what_prometheus_client_writes(ui, produced, observations):
    """prom.js (the overview's charts) against the reference exposition writer: label escapes, sums
    over label sets, and a quantile that falls in the bucket holding the true one."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    registry = CollectorRegistry()
    records = Counter("raftka_produced_records", "records", ["topic"], registry=registry)
    latency = Histogram("raftka_produce_seconds", "latency", buckets=LATENCY_BUCKETS, registry=registry)
    for topic, count in produced.items():
        records.labels(topic).inc(count)
    for seconds in observations:
        latency.observe(seconds)
    if not ui.all("#app header"):
        ui.open("/")
        ui.shown("#app header")
    got = ui.driver.execute_async_script(
        "const [text, done] = arguments; import('/ui/prom.js').then((m) => {"
        " const snap = m.trafficSnapshot(text, 0);"
        " done({records: snap.producedRecords, p50: m.quantile(0.5, snap.latency)}); });",
        generate_latest(registry).decode())
    assert got["records"] == sum(produced.values())
    median = sorted(observations)[(len(observations) - 1) // 2]
    bounds = (0.0, *LATENCY_BUCKETS)
    upper = next(i for i, b in enumerate(bounds) if median <= b) if median <= bounds[-1] else len(bounds)
    low, high = bounds[upper - 1], bounds[upper] if upper < len(bounds) else bounds[-1]
    assert low - 1e-9 <= got["p50"] <= high + 1e-9, (median, got["p50"])


PAGES = [  # (page, what proves it shows data, screenshot name)
    ("/", '[data-testid="broker-3"][data-alive="true"]', "overview"),
    ("/topics", '[data-testid="topic-orders"]', "topics"),
    ("/topics/orders", '[data-testid="configs"] input[name="retention.ms"]', "topic-orders"),
    ("/messages?topic=orders", '[data-testid^="record-"]', "messages"),
    ("/groups", '[data-testid="group-audit"], [data-testid="groups"]', "groups"),
    ("/groups/audit", '[data-testid="lag-orders-0"]', "group-audit"),
    ("/raft", '[data-testid="raft-metadata"][data-leader]', "raft"),
]


def test_every_page_loads_without_console_errors(cluster, ui):
    create_topic(cluster, "orders", 3)
    produce(cluster, "orders", [{"key": f"user-{i}", "value": {"total": i}} for i in range(30)])
    commit(cluster, "audit", {("orders", 0): 1, ("orders", 1): 1})
    stop = threading.Event()

    def traffic():  # something for the throughput and latency charts
        while not stop.is_set():
            produce(cluster, "orders", [{"value": f"tick {i}"} for i in range(20)], broker=3)
            request(cluster.url(2) + "/topics/orders/partitions/1/records?offset=0", accept=BINARY)
            time.sleep(0.2)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        for page, marker, name in PAGES:
            ui.open(page)
            ui.shown(marker)
            if page == "/":  # wait until the charts have a few rates to draw
                ui.until(lambda c: float(re.search(r"([\d.]+) records/s in", c.text_of('[data-testid="rates"]'))
                                           .group(1)) > 0, "a produce rate above 0")
                ui.until(lambda c: int(c.find('[data-testid="rates"]').get_attribute("data-samples")) >= 4,
                         "four samples in the charts")
            assert not ui.all('[role="alert"]'), f"{page}: error shown: {[e.text for e in ui.all('[role=alert]')]}"
            ui.screenshot(name)
            assert ui.console_errors() == [], f"browser console errors on {page}"
    finally:
        stop.set()
        worker.join(10)
    ui.open("/")
    assert ui.text_of('[data-testid="card-leaderless"]').startswith("0")
    assert ui.text_of('[data-testid="partition-orders-0"] .leader') in {"1", "2", "3"}


def test_a_topic_created_in_the_console_exists_in_the_api_and_deletes_after_confirmation(cluster, ui):
    ui.open("/topics")
    ui.shown('[data-testid="create-topic"]')
    ui.fill('[data-testid="create-topic"]', name="from-console", partitions="2", retention="3600000")
    ui.find('[data-testid="create-topic"] button[type="submit"]').click()
    ui.until(lambda c: "Created topic 'from-console'" in c.text_of('[data-testid="create-topic"] .ok-text'),
             "the create request to be answered")
    ui.shown('[data-testid="topic-from-console"]')
    doc = request(cluster.url(3) + "/topics/from-console").json()
    assert len(doc["partitions"]) == 2 and doc["configs"]["retention.ms"] in (3600000, "3600000")

    ui.find('[data-testid="delete-from-console"]').click()
    assert "from-console" in request(cluster.url(2) + "/topics").json(), "deleted without confirmation"
    ui.shown('[data-testid="delete-from-console-confirm"]').click()
    ui.until(lambda c: not c.all('[data-testid="topic-from-console"]'), "the deleted topic to leave the list")
    assert "from-console" not in request(cluster.url(2) + "/topics").json()
    assert ui.console_errors() == []


def test_a_record_produced_in_the_console_is_found_in_the_browser_and_live_tail_follows(cluster, ui):
    value = json.dumps({"from": "console", "at": time.time()})
    ui.open("/messages?topic=orders")
    ui.shown('[data-testid^="record-"]')
    ui.fill('[data-testid="produce"]', key="ui-key", value=value, headers="source: selenium")
    ui.find('[data-testid="produce"] button[type="submit"]').click()
    written = ui.text_of('[data-testid="produced"]')
    partition, offset = map(int, re.search(r"partition (\d+) at offset (\d+)", written).groups())
    row = ui.shown(f'[data-testid="record-{partition}-{offset}"]')
    assert json.loads(value)["from"] in row.text and "ui-key" in row.text and "source" in row.text

    fetched = retry(lambda: request(cluster.url(3) + f"/topics/orders/partitions/{partition}/records?offset={offset}",
                                    accept=BINARY)).json()[0]
    assert fetched["offset"] == offset
    assert json.loads(base64.b64decode(fetched["value"])) == json.loads(value)

    Select(ui.find('[data-testid="browse"] [name="decode"]')).select_by_value("hex")
    assert ui.shown(f'[data-testid="record-{partition}-{offset}"]').text.count("7b") >= 1  # '{' in hex

    Select(ui.find('[data-testid="browse"] [name="decode"]')).select_by_value("auto")
    ui.find('[data-testid="browse"] [name="tail"]').click()
    ui.until(lambda c: "following" in c.text_of('[data-testid="record-count"]'), "live tail on")
    [tailed] = produce(cluster, "orders", [{"key": "tail-key", "value": "tailed"}], broker=1)
    row = ui.shown(f'[data-testid="record-{tailed["partition"]}-{tailed["offset"]}"]')
    assert "tail-key" in row.text and "tailed" in row.text
    ui.find('[data-testid="browse"] [name="tail"]').click()
    assert ui.console_errors() == []


def test_consumer_lag_appears_then_drops_after_consuming_and_an_empty_group_resets(cluster, ui):
    create_topic(cluster, "payments", 2)
    produce(cluster, "payments", [{"key": f"k{i}", "value": i} for i in range(20)])
    commit(cluster, "billing", {("payments", 0): 0, ("payments", 1): 0})
    ui.open("/groups/billing")
    ui.until(lambda c: total_lag(c) == 20, "lag 20 before consuming")

    consumer = Consumer("payments", group_id="billing", bootstrap_servers=cluster.bootstrap,
                        auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        seen = 0
        deadline = time.monotonic() + WAIT_S
        while seen < 20 and time.monotonic() < deadline:
            seen += len(consumer.poll(500))
        assert seen == 20
        consumer.commit()
        ui.until(lambda c: total_lag(c) == 0, "lag 0 after consuming")
        assert ui.text_of('[data-testid="group-state"]') != "Empty"
        assert ui.find('[data-testid="reset"] button[type="submit"]').get_attribute("disabled") is not None
    finally:
        consumer.close()
    ui.until(lambda c: c.text_of('[data-testid="group-state"]') == "Empty", "the group to be empty")
    assert len(ui.all('[data-testid="chart-lag"] canvas')) == 1
    ui.screenshot("group-billing")

    ui.fill('[data-testid="reset"]', topic="payments", target="earliest")
    ui.find('[data-testid="reset"] button[type="submit"]').click()
    ui.until(lambda c: total_lag(c) == 20, "lag 20 after resetting to earliest")
    offsets = request(cluster.url(2) + "/groups/billing/offsets").json()["offsets"]
    assert {(o["partition"], o["offset"]) for o in offsets if o["topic"] == "payments"} == {(0, 0), (1, 0)}
    assert ui.console_errors() == []


def test_a_killed_broker_is_shown_dead_and_its_partitions_get_new_leaders(cluster, ui):
    leaders = {p: cluster.leader_of("orders", p) for p in range(3)}
    victim = next((b for b in (3, 2) if b in leaders.values()), 3)  # not broker 1: it serves the console
    ui.open("/")
    ui.shown(f'[data-testid="broker-{victim}"][data-alive="true"]')
    killed = time.monotonic()
    cluster.kill(victim)

    def recovered(c: Console):
        rows = c.all('[data-testid="partitions"] tbody tr')
        led_by = [r.get_attribute("data-leader") for r in rows]
        dead = c.all(f'[data-testid="broker-{victim}"][data-alive="false"]')
        return dead and rows and all(b not in ("", str(victim)) for b in led_by)

    ui.until(recovered, f"broker {victim} marked down and its partitions led elsewhere", timeout=30)
    seconds = time.monotonic() - killed
    ui.shown('[data-testid="card-brokers"].bad')
    assert ui.text_of('[data-testid="card-under-replicated"]').split()[0] != "0"  # a replica is gone
    ui.screenshot("overview-broker-down")
    relayed = request(cluster.url(1) + f"/brokers/{victim}/raft")
    assert (relayed.status, relayed.json()["error_code"]) == (503, 50302)
    ui.open("/raft")
    ui.shown('[data-testid="raft-metadata"][data-leader]')
    ui.until(lambda c: "down" in c.text_of('[data-testid="raft-metadata"]'), "the dead replica in the Raft view")
    ui.screenshot("raft-broker-down")
    print(f"console showed broker {victim} down and new leaders {seconds:.1f} s after kill -9")
    assert seconds < 15
