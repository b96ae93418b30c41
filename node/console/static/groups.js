// Consumer groups: the list; one group's members, assignment, committed offsets and lag (with a
// chart over time), and resetting the offsets of an empty group.

import { useState } from 'preact/hooks';
import { api, partitionOffsets, POLL_MS } from './api.js';
import { TimeChart } from './chart.js';
import { ErrorBox, formatNumber, html, useAction, usePoll, useStore } from './ui.js';

const HISTORY = 180;
const CHARTED_PARTITIONS = 6;
const lagHistory = new Map(); // group -> [{at, total, byPartition}] while the console is open

const groupPath = (g) => `/groups/${encodeURIComponent(g)}`;

function remember(group, doc) {
  if (!lagHistory.has(group)) lagHistory.set(group, []);
  const points = lagHistory.get(group);
  const byPartition = Object.fromEntries(doc.offsets.map((o) => [`${o.topic}/${o.partition}`, o.lag]));
  points.push({ at: Date.now(), total: doc.offsets.reduce((s, o) => s + (o.lag ?? 0), 0), byPartition });
  if (points.length > HISTORY) points.splice(0, points.length - HISTORY);
  return points;
}

export function Groups() {
  const list = usePoll(() => api('/groups'), 3000, []);
  const [name, setName] = useState('');
  const groups = list.data ? list.data.groups : [];
  return html`
    <h1>Consumer groups</h1>
    <form class="inline" onSubmit=${(e) => { e.preventDefault(); if (name) window.location.hash = `#/groups/${encodeURIComponent(name)}`; }}>
      <label>open group <input name="group" value=${name} onInput=${(e) => setName(e.target.value)} placeholder="name" /></label>
      <button type="submit">Open</button></form>
    <${ErrorBox} error=${list.error} />
    <table data-testid="groups"><thead><tr><th>group</th><th>state</th><th>generation</th><th>members</th></tr></thead><tbody>
      ${groups.map((g) => html`<tr data-testid=${`group-${g.group}`}><td><a href=${`#/groups/${encodeURIComponent(g.group)}`}>${g.group}</a></td>
        <td>${g.state}</td><td>${g.generation}</td><td>${g.members}</td></tr>`)}</tbody></table>
    ${list.data && !groups.length ? html`<p class="muted">The coordinator knows no groups yet (a group whose members all left
      before the coordinator moved is still reachable by name).</p>` : null}`;
}

async function resetOffsets(group, topic, partitions, target, value) {
  const offsets = await Promise.all([...Array(partitions).keys()].map(async (p) => {
    const o = await partitionOffsets(topic, p, target === 'timestamp' ? new Date(value).getTime() : undefined);
    const offset = { earliest: o.beginning_offset, latest: o.end_offset, timestamp: o.timestamp_offset,
      offset: Math.min(Math.max(Number(value), o.beginning_offset), o.end_offset) }[target];
    return { topic, partition: p, offset };
  }));
  await api(`${groupPath(group)}/offsets`, { method: 'POST', body: { offsets, reset: true } });
  return `Reset ${topic} (${partitions} partitions) to ${target}${target === 'offset' || target === 'timestamp' ? ` ${value}` : ''}.`;
}

function ResetForm({ group, state, topics, partitionsOf, onDone }) {
  const [form, setForm] = useState({ topic: topics[0] || '', target: 'earliest', value: '' });
  const [outcome, run] = useAction();
  const empty = state === 'Empty';
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  const topic = form.topic || topics[0] || '';
  const submit = (e) => {
    e.preventDefault();
    run(async () => { const done = await resetOffsets(group, topic, partitionsOf(topic), form.target, form.value); onDone(); return done; });
  };
  return html`<form class="inline" onSubmit=${submit} data-testid="reset">
    <h2>Reset offsets</h2>
    ${empty ? null : html`<p class="muted">Only an empty group's offsets can be reset: stop its consumers first (state now: ${state}).</p>`}
    <label>topic <select name="topic" value=${topic} onChange=${set('topic')}>${topics.map((t) => html`<option value=${t}>${t}</option>`)}</select></label>
    <label>to <select name="target" value=${form.target} onChange=${set('target')}>
      <option value="earliest">earliest</option><option value="latest">latest</option>
      <option value="offset">offset</option><option value="timestamp">time</option></select></label>
    ${form.target === 'offset' ? html`<label>offset <input name="value" type="number" min="0" value=${form.value} onInput=${set('value')} /></label>` : null}
    ${form.target === 'timestamp' ? html`<label>time <input name="value" type="datetime-local" step="1" value=${form.value} onInput=${set('value')} /></label>` : null}
    <button type="submit" disabled=${!empty || outcome.busy || !topic}>Reset offsets</button>
    ${outcome.done ? html`<span class="ok-text">${outcome.done}</span>` : null}<${ErrorBox} error=${outcome.error} /></form>`;
}

export function GroupDetail({ name }) {
  const store = useStore();
  const [version, setVersion] = useState(0);
  const described = usePoll(async () => {
    const doc = await api(groupPath(name));
    remember(name, doc);
    return doc;
  }, POLL_MS, [name, version]);
  const doc = described.data;
  if (!doc) return html`<h1>Group ${name}</h1>${described.error ? html`<${ErrorBox} error=${described.error} />` : html`<p class="loading">Loading…</p>`}`;
  const points = lagHistory.get(name) || [];
  const total = doc.offsets.reduce((s, o) => s + (o.lag ?? 0), 0);
  const charted = doc.offsets.slice(0, CHARTED_PARTITIONS).map((o) => `${o.topic}/${o.partition}`);
  const cluster = store.cluster;
  const topics = [...new Set([...doc.offsets.map((o) => o.topic), ...doc.members.flatMap((m) => m.topics || []), ...(cluster ? cluster.topics : [])])];
  const partitionsOf = (t) => (cluster ? cluster.partitions.filter((p) => p.topic === t).length : 0);
  return html`
    <h1>Group ${name}</h1>
    <${ErrorBox} error=${described.error} />
    <p>state <b data-testid="group-state">${doc.state}</b> · generation ${doc.generation} · ${doc.members.length} members ·
      total lag <b data-testid="total-lag">${formatNumber(total)}</b></p>
    <${TimeChart} title="lag (records behind the end)" testid="chart-lag" points=${points}
      lines=${[{ label: 'total', value: (p) => p.total }, ...charted.map((k) => ({ label: k, value: (p) => p.byPartition[k] ?? null }))]} />
    <h2>Members</h2>
    <table data-testid="members"><thead><tr><th>member</th><th>topics</th><th>assigned partitions</th></tr></thead><tbody>
      ${doc.members.map((m) => html`<tr><td><code>${m.member_id}</code></td><td>${(m.topics || []).join(', ')}</td>
        <td>${m.assignment.map((a) => `${a.topic}/${a.partition}`).join(', ') || '–'}</td></tr>`)}</tbody></table>
    <h2>Committed offsets and lag</h2>
    <table data-testid="offsets"><thead><tr><th>topic</th><th>partition</th><th>committed</th><th>end</th><th>lag</th></tr></thead><tbody>
      ${doc.offsets.map((o) => html`<tr><td>${o.topic}</td><td>${o.partition}</td><td>${formatNumber(o.offset)}</td>
        <td>${formatNumber(o.end_offset)}</td><td data-testid=${`lag-${o.topic}-${o.partition}`} class=${o.lag ? 'lagging' : ''}>${formatNumber(o.lag)}</td></tr>`)}</tbody></table>
    <${ResetForm} group=${name} state=${doc.state} topics=${topics} partitionsOf=${partitionsOf} onDone=${() => setVersion(version + 1)} />`;
}
