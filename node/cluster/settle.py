"""How a starting broker finds out who it is: bootstrap, join, back after a disk loss, or refused.

Run by `Broker.start` before any Raft group exists (see `identity` for the
data directory's side):

* **A data directory with an identity** is this broker's; it starts at once,
  unless a live broker of its cluster says this very incarnation was
  decommissioned (a decommissioned broker never rejoins with its old data: its
  replicas were moved away and may have been deleted).  A broker that joined
  takes its peers' addresses from the broker it joins through, until its own
  metadata replica knows them.
* **An empty directory with ``--join URL[,URL...]``** asks that broker (the
  first of them that answers) for the cluster
  (``GET /cluster``), registers itself with a proof of the cluster secret
  (``POST /brokers``, see `join`) as a new incarnation, and takes the
  cluster's id and its brokers' addresses from the answer.
* **An empty directory with ``--peers``** asks the peers, two ways at once:
  over HTTP (``GET /cluster``, answered by any running broker) and through the
  brokers' Raft heartbeats (answered by brokers that are still bootstrapping,
  before they serve HTTP).  A formed cluster that knows this broker id means
  its disk was lost: it comes back as a new incarnation (`decide_incarnation`).
  A formed cluster that does not know it, or decommissioned it, refuses it with
  a message saying to use ``--join``.  Peers that have not formed a cluster
  yet mean a bootstrap: incarnation 0, the cluster id derived from the peers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiohttp
import orjson

from raftka.node.cluster.identity import (BrokerIdentity, IdentityError, bootstrap_identity, claim_data_dir,
                                          decide_incarnation, secret_check)
from raftka.node.cluster.join import join_request
from raftka.node.cluster.metadata_cluster import DECOMMISSIONED
from raftka.raft.replica import new_incarnation

if TYPE_CHECKING:
    from raftka.node.cluster.broker import Broker

log = logging.getLogger("raftka.node.cluster.settle")

PROBE_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 1.0
LOG_INTERVAL_S = 5.0
DECOMMISSION_PROBE_S = 2.0
ALREADY_REGISTERED_PATIENCE_S = 30.0  # a restarted joiner waits this long for its old directory to be seen gone
ALREADY_REGISTERED = 40923


class Seed:
    """Addresses to start from before the local metadata replica knows the brokers (``--peers`` or a join answer)."""

    def __init__(self, urls: dict[int, str], raft: dict[int, tuple[str, int]]):
        self.urls, self.raft = urls, raft

    @classmethod
    def from_registry(cls, brokers: dict) -> Seed:
        urls, raft = {}, {}
        for b, entry in brokers.items():
            if entry.get("membership") != DECOMMISSIONED and "http_url" in entry:
                urls[int(b)] = entry["http_url"]
                raft[int(b)] = (entry["raft_host"], entry["raft_port"])
        return cls(urls, raft)


async def get_json(session: aiohttp.ClientSession, url: str, timeout: float = PROBE_TIMEOUT_S,
                   body: dict | None = None) -> tuple[int, object] | None:
    """(status, document) of a GET (or POST with `body`), or None when the broker did not answer."""
    try:
        method = "POST" if body is not None else "GET"
        async with session.request(method, url, data=None if body is None else orjson.dumps(body),
                                   headers={"Content-Type": "application/json"} if body is not None else None,
                                   timeout=aiohttp.ClientTimeout(total=timeout, connect=timeout)) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw else None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, orjson.JSONDecodeError):
        return None


def formed_answer(answer: tuple[int, object] | None) -> dict | None:
    if answer is None or answer[0] != 200 or not isinstance(answer[1], dict):
        return None
    doc = answer[1]
    return doc if doc.get("formed") and isinstance(doc.get("cluster_id"), str) \
        and isinstance(doc.get("brokers"), dict) else None


def _not_a_member(broker_id: int, cluster: dict, where: str) -> IdentityError:
    known = ", ".join(sorted(cluster["brokers"], key=int)) or "none"
    return IdentityError(
        f"refusing to start: broker {broker_id} is not a member of cluster {cluster['cluster_id']} (brokers "
        f"{known}, as {where} says). To add it, start it with an empty data directory and "
        f"--join {where} (any live broker) instead of --peers.")


def _decommissioned(broker_id: int, cluster: dict, where: str, data_dir_kept: bool) -> IdentityError:
    if data_dir_kept:
        return IdentityError(
            f"refusing to start: broker {broker_id} was decommissioned from cluster {cluster['cluster_id']} (as "
            f"{where} says); its data directory cannot rejoin, its replicas were moved away. To add this broker "
            f"back, empty its data directory and start it with --join {where}.")
    return IdentityError(
        f"refusing to start: broker {broker_id} was decommissioned from cluster {cluster['cluster_id']} (as {where} "
        f"says). To add it back, start it with --join {where} (any live broker) instead of --peers.")


async def settle_identity(broker: Broker) -> tuple[BrokerIdentity, Seed]:
    """This broker's identity (claimed on disk) and the addresses to start from."""
    config = broker.config
    seed = Seed({p.broker_id: p.http_url for p in config.peers}, {p.broker_id: p.raft_address for p in config.peers})
    if broker.identity is not None:
        for url in config.join_urls:
            cluster = formed_answer(await get_json(broker.session, url + "/cluster", DECOMMISSION_PROBE_S))
            if cluster is not None and cluster["cluster_id"] == broker.identity.cluster_id:
                seed = Seed.from_registry(cluster["brokers"])
                break
        await _refuse_if_decommissioned(broker, seed)
        return broker.identity, seed
    if config.join is not None:
        return await _join(broker)
    return await _bootstrap_or_return(broker, seed)


async def _refuse_if_decommissioned(broker: Broker, seed: Seed) -> None:
    """A quick look: does a live broker say this incarnation was decommissioned? (No answer: carry on.)"""
    others = [u for b, u in seed.urls.items() if b != broker.id]
    others += [u for u in broker.config.join_urls if u not in others]
    if not others:
        return
    answers = await asyncio.gather(*(get_json(broker.session, u + "/cluster", DECOMMISSION_PROBE_S) for u in others))
    for url, answer in zip(others, answers):
        cluster = formed_answer(answer)
        if cluster is None or cluster["cluster_id"] != broker.identity.cluster_id:
            continue
        entry = cluster["brokers"].get(str(broker.id))
        if entry is not None and entry.get("membership") == DECOMMISSIONED \
                and entry.get("incarnation") == broker.identity.incarnation:
            raise _decommissioned(broker.id, cluster, url, data_dir_kept=True)


async def _join(broker: Broker) -> tuple[BrokerIdentity, Seed]:
    config = broker.config
    urls = config.join_urls
    loop = asyncio.get_running_loop()
    next_log = loop.time() + LOG_INTERVAL_S
    incarnation = new_incarnation()
    me = config.self_peer
    started = loop.time()
    attempt = 0
    while True:
        url = urls[attempt % len(urls)]
        attempt += 1
        cluster = formed_answer(await get_json(broker.session, url + "/cluster"))
        if cluster is not None:
            body = join_request(config.cluster_secret, cluster["cluster_id"], broker=broker.id,
                                incarnation=incarnation, http_url=me.http_url, raft_host=me.host,
                                raft_port=me.raft_port, rack=config.rack)
            answer = await get_json(broker.session, url + "/brokers", 30.0, body)
            if answer is not None and answer[0] in (200, 201) and isinstance(answer[1], dict):
                break
            if answer is not None and 400 <= answer[0] < 500:
                message = answer[1].get("message") if isinstance(answer[1], dict) else answer[1]
                code = answer[1].get("error_code") if isinstance(answer[1], dict) else None
                if code != ALREADY_REGISTERED or loop.time() - started > ALREADY_REGISTERED_PATIENCE_S:
                    raise IdentityError(f"refusing to start: {url} did not let broker {broker.id} join: {message}")
                log.info("broker %d: %s (waiting: a data directory that was just replaced still looks alive)",
                         broker.id, message)
        if loop.time() >= next_log:
            next_log = loop.time() + LOG_INTERVAL_S
            log.info("broker %d: waiting for %s to let it join (no answer, or no metadata leader yet)",
                     broker.id, " or ".join(urls))
        await asyncio.sleep(PROBE_INTERVAL_S)
    cluster_id = cluster["cluster_id"]
    identity = claim_data_dir(config.data_dir, BrokerIdentity(
        broker.id, cluster_id, (), incarnation, secret_check(cluster_id, config.cluster_secret)),
        config.cluster_secret)
    log.warning("broker %d joined cluster %s through %s as incarnation %08x", broker.id, cluster_id, url,
                identity.incarnation)
    return identity, Seed.from_registry(answer[1]["brokers"])


async def _bootstrap_or_return(broker: Broker, seed: Seed) -> tuple[BrokerIdentity, Seed]:
    """An empty data directory with --peers: bootstrap, or come back as a new incarnation, or be refused."""
    config = broker.config
    bootstrap = bootstrap_identity(config)
    broker.host.set_cluster_id(bootstrap.cluster_id)
    broker.host.announce(None, False)
    others = {b: u for b, u in seed.urls.items() if b != broker.id}
    loop = asyncio.get_running_loop()
    next_log = loop.time() + LOG_INTERVAL_S
    while True:
        answers = await asyncio.gather(*(get_json(broker.session, u + "/cluster") for u in others.values()))
        formed = [(url, c) for url, answer in zip(others.values(), answers) if (c := formed_answer(answer))]
        for url, cluster in formed:  # one that knows this broker is enough (another may be behind)
            entry = cluster["brokers"].get(str(broker.id))
            if entry is not None and entry.get("membership") != DECOMMISSIONED:
                return _claim_new_incarnation(broker, cluster["cluster_id"]), Seed.from_registry(cluster["brokers"])
        for url, cluster in formed:
            if str(broker.id) in cluster["brokers"]:
                raise _decommissioned(broker.id, cluster, url, data_dir_kept=False)
            raise _not_a_member(broker.id, cluster, url)
        incarnation = decide_incarnation(seed.urls, broker.id, broker.host.peer_announcements)
        if incarnation is not None:
            if incarnation == 0:
                return claim_data_dir(config.data_dir, bootstrap, config.cluster_secret), seed
            return _claim_new_incarnation(broker, bootstrap.cluster_id, incarnation), seed
        if loop.time() >= next_log:
            next_log = loop.time() + LOG_INTERVAL_S
            silent = sorted(b for b in others if b not in broker.host.peer_announcements)
            log.info("broker %d: waiting for peers to tell whether the cluster has formed (not heard from: %s)",
                     broker.id, silent)
        await asyncio.sleep(PROBE_INTERVAL_S)


def _claim_new_incarnation(broker: Broker, cluster_id: str, incarnation: int | None = None) -> BrokerIdentity:
    config = broker.config
    incarnation = incarnation or new_incarnation()
    identity = claim_data_dir(config.data_dir, BrokerIdentity(
        broker.id, cluster_id, config.peer_ids, incarnation, secret_check(cluster_id, config.cluster_secret)),
        config.cluster_secret)
    log.warning("broker %d started with an empty data dir: joining as a new incarnation %08x (its old replicas are "
                "replaced once the cluster registers it)", broker.id, identity.incarnation)
    return identity


__all__ = ["Seed", "formed_answer", "get_json", "settle_identity"]
