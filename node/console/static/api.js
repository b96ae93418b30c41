// The broker's HTTP API as the console uses it, and the cluster view every page shares.
//
// The console talks only to the broker that served it. Another broker's own documents
// (/raft, /metrics) come through GET /brokers/{id}/{view}, which the serving broker relays.
//
// Logging in: when the cluster requires authentication, every request carries the user's
// credentials (HTTP Basic, kept in this tab's sessionStorage until logging out or closing the tab).
// A 401 forgets them and asks again (store.loginNeeded); the broker answers only what the user's
// ACLs allow (listings leave out what the user may not see; a 403 says what was refused).

import { clusterRates, trafficSnapshot } from './prom.js';

export const BINARY = 'application/vnd.kafka.binary.v2+json';
export const POLL_MS = 2000;
const HISTORY = 180; // samples kept for the charts (6 minutes at 2 s)

const CREDENTIALS = 'raftka.credentials';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// One request; the parsed JSON answer (text for non-JSON), or an ApiError with the broker's message.
// `credentials`: send these instead of the stored ones (a login attempt); their 401 changes nothing here.
export async function api(path, { method = 'GET', body, contentType = 'application/json', accept, signal, credentials } = {}) {
  const headers = { 'X-Requested-With': 'raftka-console' }; // so the browser shows our login, not its own
  const sent = credentials ?? sessionStorage.getItem(CREDENTIALS);
  if (sent) headers.Authorization = `Basic ${sent}`;
  if (body !== undefined) headers['Content-Type'] = contentType;
  if (accept) headers.Accept = accept;
  let response;
  try {
    response = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 0, `The broker serving this console cannot be reached (${error.message}).`);
  }
  const text = await response.text();
  const isJson = (response.headers.get('Content-Type') || '').includes('json');
  let doc = text;
  if (isJson && text) {
    try { doc = JSON.parse(text); } catch { doc = text; }
  }
  // A 401 to the credentials in use forgets them and asks again; not one to a login attempt's, nor to a request
  // sent before a login replaced them.
  const current = sessionStorage.getItem(CREDENTIALS);
  if (response.status === 401 && credentials === undefined && sent === current && !store.loginNeeded) {
    sessionStorage.removeItem(CREDENTIALS);
    store.loginNeeded = true;
    store.principal = null;
    publish();
  }
  if (!response.ok) {
    const message = doc && doc.message ? doc.message : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, doc && doc.error_code, message);
  }
  return doc;
}

// Who the console is logged in as (store.principal), or that it must ask (store.loginNeeded).
export async function whoAmI() {
  try {
    const me = await api('/whoami');
    store.principal = me.auth === 'none' ? null : me.principal;
    store.loginNeeded = false;
  } catch (error) {
    if (error.status !== 401) throw error;
  }
  publish();
}

// Check the credentials first and keep them only if the broker takes them: until then the login form stays
// as it is (a re-render of the page behind it would lose the form's error), and a 401 simply throws.
export async function logIn(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  const credentials = btoa(String.fromCharCode(...bytes));
  const me = await api('/whoami', { credentials });
  sessionStorage.setItem(CREDENTIALS, credentials);
  store.principal = me.auth === 'none' ? null : me.principal;
  store.loginNeeded = false;
  publish();
  await refreshNow();
}

export function logOut() {
  sessionStorage.removeItem(CREDENTIALS);
  store.principal = null;
  store.loginNeeded = true;
  store.cluster = null;
  publish();
}

// ------------------------------------------------------------------ the cluster view

function groupKey(entry) {
  return entry.partition === null ? 'metadata' : entry.partition;
}

export function followerOf(leaderEntry, broker) {
  return leaderEntry.followers[String(broker)] || null;
}

// As the API's in_sync (the broker's liveness is checked by the caller): the follower holds every committed
// entry, or, under load, was sent them all and acknowledged within an election timeout. Recent traffic alone
// does not count: a quiesced group sends none, and its caught-up followers stay in sync.
export function followerInSync(leaderEntry, follower, electionTimeoutMs) {
  if (!follower) return false;
  if (follower.match_index >= leaderEntry.commit_index) return true;
  return follower.state === 'replicate' && follower.next_index > leaderEntry.commit_index
    && follower.last_contact_ms !== null && follower.last_contact_ms < electionTimeoutMs;
}

// Brokers, partitions and Raft groups, joined from /brokers, /metadata and every broker's /raft.
export async function loadCluster() {
  const [brokersDoc, meta] = await Promise.all([api('/brokers'), api('/metadata')]);
  const ids = brokersDoc.brokers;
  const views = await Promise.allSettled(ids.map((id) => api(`/brokers/${id}/raft`)));
  const raft = {};
  const unreachable = {};
  let raftRefused = null; // the user may not see the Raft state (DESCRIBE on the cluster): not a broker problem
  ids.forEach((id, i) => {
    if (views[i].status === 'fulfilled') raft[id] = views[i].value;
    else if (views[i].reason.status === 403) raftRefused = views[i].reason.message;
    else unreachable[id] = views[i].reason.message;
  });
  const details = Object.fromEntries(brokersDoc.details.map((d) => [d.id, d]));
  const alive = (id) => Boolean(details[id] && details[id].alive) && !(id in unreachable);

  const groups = new Map(); // key -> {key, name, replicas: {broker: entry}, leader, leaderEntry, term}
  for (const [id, doc] of Object.entries(raft)) {
    for (const entry of doc.groups) {
      const key = groupKey(entry);
      if (!groups.has(key)) groups.set(key, { key, name: entry.group, replicas: {}, leader: null, leaderEntry: null, term: 0 });
      const group = groups.get(key);
      group.replicas[id] = entry;
      group.term = Math.max(group.term, entry.term);
      if (entry.role === 'leader' && (!group.leaderEntry || entry.term > group.leaderEntry.term)) {
        group.leaderEntry = entry;
        group.leader = Number(id);
        group.electionTimeoutMs = doc.election_timeout_ms;
      }
    }
  }

  const partitions = [];
  for (const [topic, t] of Object.entries(meta.topics)) {
    t.partitions.forEach((p, index) => {
      const group = groups.get(`${topic}/${index}`);
      const leader = group && group.leader !== null ? group.leader : p.leader;
      const lead = group && group.leader === leader ? group.leaderEntry : null;
      const inSync = {};
      for (const b of p.replicas) {
        if (!alive(b)) inSync[b] = false;
        else if (b === leader) inSync[b] = true;
        else if (!lead) inSync[b] = null;
        else {
          inSync[b] = followerInSync(lead, followerOf(lead, b), group.electionTimeoutMs);
        }
      }
      const leaderless = leader === null || leader === undefined || !alive(leader);
      partitions.push({
        topic, partition: index, replicas: p.replicas, leader: leaderless ? null : leader, inSync, group,
        highWatermark: lead ? lead.high_watermark : null,
        logStartOffset: lead ? lead.log_start_offset : null,
        sizeBytes: lead ? lead.size_bytes : null,
        leaderless,
        underReplicated: !leaderless && p.replicas.some((b) => inSync[b] === false),
      });
    });
  }

  const brokers = ids.map((id) => ({
    id,
    url: details[id] ? details[id].url : '',
    alive: alive(id),
    membership: details[id] ? details[id].membership : 'active', // active, draining (being decommissioned)
    metadataSeat: details[id] ? details[id].metadata_role : 'none', // voter, learner or none
    problem: details[id] && !details[id].alive ? 'no Raft traffic from it within an election timeout'
      : unreachable[id] ? `not answering: ${unreachable[id]}` : null,
    metadataRole: raft[id] ? (groups.get('metadata')?.replicas[id]?.role ?? 'unknown') : 'unreachable',
    leaders: partitions.filter((p) => p.leader === id).length,
    replicas: partitions.filter((p) => p.replicas.includes(id)).length,
  }));
  const sortedGroups = [...groups.values()].sort((a, b) => (a.key === 'metadata' ? -1 : b.key === 'metadata' ? 1 : a.key.localeCompare(b.key, undefined, { numeric: true })));
  return {
    at: Date.now(), brokers, partitions, groups: sortedGroups, metadataLeader: brokersDoc.metadata_leader,
    topics: Object.keys(meta.topics).sort(), raftRefused,
    decommissioned: brokersDoc.details.filter((d) => d.membership === 'decommissioned').map((d) => ({ id: d.id, url: d.url })),
  };
}

// ------------------------------------------------------------------ the shared poller

const listeners = new Set();
export const store = {
  cluster: null, // the latest loadCluster()
  error: null, // why the latest poll failed
  traffic: [], // [{at, producedRecords, ..., p50, p99}] cluster rates
  elections: [], // [{at, group, fromTerm, toTerm, fromLeader, toLeader}], newest last
  electionCounts: [], // [{at, count}] elections seen per poll
  loginNeeded: false, // the broker answered 401: show the login form
  principal: null, // who the console is logged in as (null: authentication is off, or not logged in)
  moves: null, // reassignments and drains, kept by reassignments.js (pollMoves)
};
let followUps = []; // what startPolling was given to run after each poll of the cluster view
let scrapes = {};

export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function publish() {
  for (const listener of listeners) listener(store);
}

function keep(list, item) {
  list.push(item);
  if (list.length > HISTORY) list.splice(0, list.length - HISTORY);
}

function noteElections(before, after) {
  const previous = new Map(before.groups.map((g) => [g.key, g]));
  let count = 0;
  for (const g of after.groups) {
    const old = previous.get(g.key);
    if (old && g.term > old.term) {
      count += 1;
      keep(store.elections, { at: after.at, group: g.key, fromTerm: old.term, toTerm: g.term, fromLeader: old.leader, toLeader: g.leader });
    }
  }
  keep(store.electionCounts, { at: after.at, count });
}

async function scrapeTraffic(brokerIds) {
  const texts = await Promise.allSettled(brokerIds.map((id) => api(`/brokers/${id}/metrics`)));
  const now = {};
  brokerIds.forEach((id, i) => {
    if (texts[i].status === 'fulfilled') now[id] = trafficSnapshot(texts[i].value, Date.now());
  });
  const rates = clusterRates(scrapes, now);
  scrapes = now;
  if (rates) keep(store.traffic, { at: Date.now(), ...rates });
}

async function pollOnce() {
  if (store.loginNeeded) return; // nothing to show before logging in (and no 401s to count)
  try {
    const cluster = await loadCluster();
    if (store.cluster) noteElections(store.cluster, cluster);
    store.cluster = cluster;
    store.error = null;
    await Promise.all([scrapeTraffic(cluster.brokers.map((b) => b.id)), ...followUps.map((poll) => poll(store))]);
  } catch (error) {
    store.error = error.message;
  }
  publish();
}

// Poll the cluster view every POLL_MS; each of `after(store)` runs after every poll (it keeps its own errors).
export function startPolling(...after) {
  followUps = after;
  whoAmI().catch(() => {}); // a cluster with authentication asks for a login first
  const loop = async () => {
    await pollOnce();
    setTimeout(loop, POLL_MS);
  };
  loop();
}

export function refreshNow() {
  return pollOnce();
}

// ------------------------------------------------------------------ helpers the pages share

export async function partitionOffsets(topic, partition, timestamp) {
  const query = timestamp === undefined ? '' : `?timestamp=${timestamp}`;
  return api(`/topics/${encodeURIComponent(topic)}/partitions/${partition}/offsets${query}`);
}

export async function fetchRecords(topic, partition, offset, { timeoutMs = 0, maxBytes = 1 << 20, signal } = {}) {
  return api(`/topics/${encodeURIComponent(topic)}/partitions/${partition}/records?offset=${offset}&max_bytes=${maxBytes}&timeout_ms=${timeoutMs}`,
    { accept: BINARY, signal });
}
