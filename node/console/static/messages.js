// Message browser: read a partition (or all) from the newest N, an offset or a time; decode keys,
// values and headers; follow new records live; produce a record.

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, BINARY, fetchRecords, partitionOffsets } from './api.js';
import { decode, fromBase64, MODES, toBase64 } from './decode.js';
import { ErrorBox, formatTime, html, useAction, useStore } from './ui.js';

const SHOWN = 500;
const TAIL_WAIT_MS = 1500;

// Records of [from, until), at most `limit`; and the offset to read next.
async function readRange(topic, partition, from, until, limit) {
  const records = [];
  let offset = from;
  while (offset < until && records.length < limit) {
    const batch = await fetchRecords(topic, partition, offset);
    if (!batch.length) break;
    for (const r of batch) {
      if (r.offset >= until || records.length >= limit) break;
      records.push(r);
    }
    offset = records.length ? records[records.length - 1].offset + 1 : until;
  }
  return { records, next: offset };
}

async function readPartition(topic, partition, start) {
  const offsets = await partitionOffsets(topic, partition, start.mode === 'timestamp' ? start.timestamp : undefined);
  const { beginning_offset: begin, end_offset: end } = offsets;
  if (start.mode === 'newest') return readRange(topic, partition, Math.max(begin, end - start.count), end, start.count);
  const from = start.mode === 'offset' ? Math.min(Math.max(start.offset, begin), end) : offsets.timestamp_offset;
  return readRange(topic, partition, from, end, start.count);
}

function newestFirst(a, b) {
  return (b.timestamp ?? 0) - (a.timestamp ?? 0) || a.partition - b.partition || b.offset - a.offset;
}

function Cell({ b64, mode }) {
  const { text, as } = decode(fromBase64(b64), mode);
  return text === null ? html`<span class="muted">null</span>` : html`<span title=${as} class=${`decoded ${as.split(' ')[0]}`}>${text}</span>`;
}

function RecordRow({ r, mode }) {
  return html`<tr data-testid=${`record-${r.partition}-${r.offset}`}>
    <td>${r.partition}</td><td>${r.offset}</td><td class="nowrap">${formatTime(r.timestamp)}</td>
    <td><${Cell} b64=${r.key} mode=${mode} /></td><td class="value"><${Cell} b64=${r.value} mode=${mode} /></td>
    <td>${(r.headers || []).map((hd) => html`<div><code>${hd.key}</code>: <${Cell} b64=${hd.value} mode=${mode} /></div>`)}</td></tr>`;
}

function parseHeaders(text) {
  return text.split('\n').map((line) => line.trim()).filter(Boolean).map((line) => {
    const at = line.indexOf(':');
    if (at < 1) throw new Error(`Header line '${line}' is not 'name: value'.`);
    return { key: line.slice(0, at).trim(), value: toBase64(line.slice(at + 1).trim()) };
  });
}

function ProduceForm({ topic, partitions, onProduced }) {
  const [form, setForm] = useState({ key: '', value: '', headers: '', partition: '' });
  const [state, run] = useAction();
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  const submit = (e) => {
    e.preventDefault();
    run(async () => {
      const record = { key: form.key === '' ? null : toBase64(form.key), value: toBase64(form.value), headers: parseHeaders(form.headers) };
      if (form.partition !== '') record.partition = Number(form.partition);
      const doc = await api(`/topics/${encodeURIComponent(topic)}`, { method: 'POST', body: { records: [record] }, contentType: BINARY });
      const [written] = doc.offsets;
      if (written.error) throw new Error(written.error);
      onProduced();
      return `Written to partition ${written.partition} at offset ${written.offset}.`;
    });
  };
  return html`<form class="produce" onSubmit=${submit} data-testid="produce">
    <h2>Produce a record to ${topic}</h2>
    <label>key <input name="key" placeholder="none" value=${form.key} onInput=${set('key')} /></label>
    <label>partition <select name="partition" value=${form.partition} onChange=${set('partition')}>
      <option value="">by key (round robin without)</option>${partitions.map((p) => html`<option value=${p}>${p}</option>`)}</select></label>
    <label class="wide">value <textarea name="value" rows="3" value=${form.value} onInput=${set('value')}></textarea></label>
    <label class="wide">headers, one 'name: value' a line <textarea name="headers" rows="2" value=${form.headers} onInput=${set('headers')}></textarea></label>
    <button type="submit" disabled=${state.busy}>Produce</button>
    ${state.done ? html`<span class="ok-text" data-testid="produced">${state.done}</span>` : null}<${ErrorBox} error=${state.error} /></form>`;
}

export function Messages({ query }) {
  const store = useStore();
  const topics = store.cluster ? store.cluster.topics : [];
  const [topic, setTopic] = useState(query.topic || '');
  const [partition, setPartition] = useState(query.partition ?? 'all');
  const [start, setStart] = useState({ mode: 'newest', count: 50, offset: 0, time: '' });
  const [mode, setMode] = useState('auto');
  const [records, setRecords] = useState([]);
  const [status, setStatus] = useState({ loading: false, error: null });
  const [tail, setTail] = useState(false);
  const positions = useRef({});
  const chosen = topic || topics[0] || '';
  const count = store.cluster ? store.cluster.partitions.filter((p) => p.topic === chosen).length : 0;
  const numbers = [...Array(count).keys()];
  const targets = partition === 'all' ? numbers : [Number(partition)];

  const load = async () => {
    if (!chosen || !targets.length) return;
    setStatus({ loading: true, error: null });
    const spec = { mode: start.mode, count: Math.max(1, Number(start.count) || 50), offset: Number(start.offset) || 0,
      timestamp: start.time ? new Date(start.time).getTime() : 0 };
    try {
      const results = await Promise.all(targets.map((p) => readPartition(chosen, p, spec)));
      positions.current = Object.fromEntries(targets.map((p, i) => [p, results[i].next]));
      let all = results.flatMap((r) => r.records).sort(newestFirst);
      if (spec.mode === 'newest') all = all.slice(0, spec.count);
      setRecords(all.slice(0, SHOWN));
      setStatus({ loading: false, error: null });
    } catch (error) {
      setStatus({ loading: false, error: error.message });
    }
  };

  useEffect(() => { load(); }, [chosen, partition, count]);

  useEffect(() => {
    if (!tail || !chosen) return undefined;
    const abort = new AbortController();
    const follow = async (p) => {
      while (!abort.signal.aborted) {
        try {
          const batch = await fetchRecords(chosen, p, positions.current[p] ?? 0, { timeoutMs: TAIL_WAIT_MS, signal: abort.signal });
          if (batch.length) {
            positions.current[p] = batch[batch.length - 1].offset + 1;
            setRecords((rs) => [...batch].sort(newestFirst).concat(rs).slice(0, SHOWN));
          }
          setStatus((s) => (s.error ? { ...s, error: null } : s));
        } catch (error) {
          if (error.name === 'AbortError') return;
          setStatus((s) => ({ ...s, error: `live tail of partition ${p}: ${error.message} (retrying)` }));
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    };
    targets.forEach((p) => follow(p));
    return () => abort.abort();
  }, [tail, chosen, partition, count]);

  const setField = (k) => (e) => setStart({ ...start, [k]: e.target.value });
  return html`
    <h1>Messages</h1>
    <form class="inline" data-testid="browse" onSubmit=${(e) => { e.preventDefault(); load(); }}>
      <label>topic <select name="topic" value=${chosen} onChange=${(e) => { setTopic(e.target.value); setPartition('all'); }}>
        ${topics.map((t) => html`<option value=${t}>${t}</option>`)}</select></label>
      <label>partition <select name="partition" value=${partition} onChange=${(e) => setPartition(e.target.value)}>
        <option value="all">all</option>${numbers.map((p) => html`<option value=${p}>${p}</option>`)}</select></label>
      <label>start <select name="start" value=${start.mode} onChange=${setField('mode')}>
        <option value="newest">newest N</option><option value="offset">at offset</option><option value="timestamp">at time</option></select></label>
      ${start.mode === 'offset' ? html`<label>offset <input name="offset" type="number" min="0" value=${start.offset} onInput=${setField('offset')} /></label>` : null}
      ${start.mode === 'timestamp' ? html`<label>time <input name="time" type="datetime-local" step="1" value=${start.time} onInput=${setField('time')} /></label>` : null}
      <label>N <input name="count" type="number" min="1" max="500" value=${start.count} onInput=${setField('count')} /></label>
      <label>show as <select name="decode" value=${mode} onChange=${(e) => setMode(e.target.value)}>
        ${MODES.map((m) => html`<option value=${m}>${m}</option>`)}</select></label>
      <button type="submit" disabled=${status.loading}>Load</button>
      <label class="check"><input type="checkbox" name="tail" checked=${tail} onChange=${(e) => setTail(e.target.checked)} /> live tail</label>
    </form>
    ${chosen ? html`<${ProduceForm} topic=${chosen} partitions=${numbers} onProduced=${() => { if (!tail) load(); }} />` : html`<p class="muted">No topics yet.</p>`}
    <${ErrorBox} error=${status.error} />
    <p class="muted" data-testid="record-count">${status.loading ? 'Loading…' : `${records.length} records${tail ? ', following new ones' : ''}`}</p>
    <table data-testid="records" class="records"><thead><tr><th>partition</th><th>offset</th><th>timestamp</th><th>key</th><th>value</th><th>headers</th></tr></thead>
      <tbody>${records.map((r) => html`<${RecordRow} key=${`${r.partition}-${r.offset}`} r=${r} mode=${mode} />`)}</tbody></table>`;
}
