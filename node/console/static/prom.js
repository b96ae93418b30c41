// Prometheus text format (what GET /metrics answers): parsing, and rates between two scrapes.

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescape(value) {
  return value.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
}

function number(text) {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

// name -> [{labels, value}]
export function parseMetrics(text) {
  const families = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, k, v] of (m[2] || '').matchAll(LABEL)) labels[k] = unescape(v);
    if (!families.has(m[1])) families.set(m[1], []);
    families.get(m[1]).push({ labels, value: number(m[3]) });
  }
  return families;
}

function total(families, name) {
  return (families.get(name) || []).reduce((sum, s) => sum + s.value, 0);
}

// Cumulative bucket counts by upper bound, summed over label sets.
function buckets(families, name) {
  const byBound = new Map();
  for (const s of families.get(`${name}_bucket`) || []) {
    const le = number(s.labels.le);
    byBound.set(le, (byBound.get(le) || 0) + s.value);
  }
  return [...byBound.entries()].sort((a, b) => a[0] - b[0]);
}

export const COUNTERS = {
  producedRecords: 'raftka_produced_records_total',
  producedBytes: 'raftka_produced_bytes_total',
  fetchedRecords: 'raftka_fetched_records_total',
  fetchedBytes: 'raftka_fetched_bytes_total',
};
export const LATENCY = 'raftka_produce_seconds';

// The numbers of one broker's scrape that the console charts.
export function trafficSnapshot(text, at) {
  const families = parseMetrics(text);
  const snap = { at, latency: buckets(families, LATENCY) };
  for (const [key, name] of Object.entries(COUNTERS)) snap[key] = total(families, name);
  return snap;
}

// The q-quantile of observations that fell in cumulative `deltas` [[bound, count]] (as histogram_quantile).
export function quantile(q, deltas) {
  const count = deltas.length ? deltas[deltas.length - 1][1] : 0;
  if (!count) return null;
  const rank = q * count;
  let previousBound = 0;
  let previousCount = 0;
  for (const [bound, cumulative] of deltas) {
    if (cumulative >= rank) {
      if (bound === Infinity) return previousBound;
      const inBucket = cumulative - previousCount;
      return previousBound + (bound - previousBound) * (inBucket ? (rank - previousCount) / inBucket : 0);
    }
    previousBound = bound;
    previousCount = cumulative;
  }
  return previousBound;
}

// Cluster rates between two scrapes of every broker: {brokerId: snapshot} before and after.
// A broker missing from either side, or whose counters went down (restarted), adds nothing.
export function clusterRates(before, after) {
  const rates = { producedRecords: 0, producedBytes: 0, fetchedRecords: 0, fetchedBytes: 0 };
  const latency = new Map();
  let seconds = 0;
  for (const [id, now] of Object.entries(after)) {
    const then = before[id];
    if (!then || now.at <= then.at || now.producedRecords < then.producedRecords
        || now.fetchedRecords < then.fetchedRecords) continue;
    const dt = (now.at - then.at) / 1000;
    seconds = Math.max(seconds, dt);
    for (const key of Object.keys(rates)) rates[key] += (now[key] - then[key]) / dt;
    const old = new Map(then.latency);
    for (const [bound, cumulative] of now.latency) {
      latency.set(bound, (latency.get(bound) || 0) + cumulative - (old.get(bound) || 0));
    }
  }
  if (!seconds) return null;
  const deltas = [...latency.entries()].sort((a, b) => a[0] - b[0]);
  return { ...rates, p50: quantile(0.5, deltas), p99: quantile(0.99, deltas) };
}
