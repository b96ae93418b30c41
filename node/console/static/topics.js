// Topics: the list with create and delete, and one topic's partitions and configs (view and edit).

import { useState } from 'preact/hooks';
import { api, refreshNow } from './api.js';
import { PartitionRow } from './overview.js';
import {
  ConfirmButton, ErrorBox, formatBytes, formatDuration, formatNumber, html, topicHref, useAction, usePoll, useStore,
} from './ui.js';

const path = (topic) => `/topics/${encodeURIComponent(topic)}`;

async function deleteTopic(name) {
  await api(path(name), { method: 'DELETE' });
  await refreshNow();
}

function sizeOf(partitions) {
  return partitions.some((p) => p.sizeBytes === null) ? null : partitions.reduce((s, p) => s + p.sizeBytes, 0);
}

function CreateTopic({ brokers }) {
  const [form, setForm] = useState({ name: '', partitions: '3', rf: String(Math.min(3, brokers)), retention: '' });
  const [state, run] = useAction();
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });
  const submit = (e) => {
    e.preventDefault();
    run(async () => {
      const body = { name: form.name.trim(), partitions: Number(form.partitions), replication_factor: Number(form.rf) };
      if (form.retention.trim()) body.configs = { 'retention.ms': form.retention.trim() };
      const created = await api('/topics', { method: 'POST', body });
      await refreshNow();
      setForm({ ...form, name: '' });
      return `Created topic '${created.name}' with ${created.partitions} partitions.`;
    });
  };
  return html`<form class="inline" onSubmit=${submit} data-testid="create-topic">
    <label>name <input name="name" required value=${form.name} onInput=${set('name')} /></label>
    <label>partitions <input name="partitions" type="number" min="1" value=${form.partitions} onInput=${set('partitions')} /></label>
    <label>replication <input name="replication_factor" type="number" min="1" value=${form.rf} onInput=${set('rf')} /></label>
    <label>retention.ms <input name="retention" placeholder="default" value=${form.retention} onInput=${set('retention')} /></label>
    <button type="submit" disabled=${state.busy}>Create topic</button>
    ${state.done ? html`<span class="ok-text">${state.done}</span>` : null}
    <${ErrorBox} error=${state.error} /></form>`;
}

export function Topics() {
  const store = useStore();
  const c = store.cluster;
  const names = c ? c.topics : [];
  const details = usePoll(async () => {
    const docs = await Promise.allSettled(names.map((n) => api(path(n))));
    return Object.fromEntries(names.map((n, i) => [n, docs[i].status === 'fulfilled' ? docs[i].value : null]));
  }, 10000, [names.join(',')]);
  const [deleteState, runDelete] = useAction();
  if (!c) return html`<p class="loading">Loading topics…</p>`;
  return html`
    <h1>Topics</h1>
    <${CreateTopic} brokers=${c.brokers.length} />
    <${ErrorBox} error=${deleteState.error || details.error} />
    <table data-testid="topics"><thead><tr><th>topic</th><th>partitions</th><th>replication</th><th>size</th>
      <th>retention.ms</th><th>retention.bytes</th><th>state</th><th></th></tr></thead><tbody>
      ${names.map((name) => {
        const parts = c.partitions.filter((p) => p.topic === name);
        const doc = details.data && details.data[name];
        const configs = doc ? doc.configs : {};
        const leaderless = parts.filter((p) => p.leaderless).length;
        const under = parts.filter((p) => p.underReplicated).length;
        return html`<tr data-testid=${`topic-${name}`} class=${leaderless ? 'row-bad' : under ? 'row-warn' : ''}>
          <td><a href=${topicHref(name)}>${name}</a></td><td>${parts.length}</td>
          <td>${doc ? doc.replication_factor : '…'}</td><td>${formatBytes(sizeOf(parts))}</td>
          <td>${configs['retention.ms'] === undefined ? '…' : formatDuration(Number(configs['retention.ms']))}</td>
          <td>${configs['retention.bytes'] === undefined ? '…' : Number(configs['retention.bytes']) < 0 ? 'unlimited' : formatBytes(Number(configs['retention.bytes']))}</td>
          <td>${leaderless ? `${leaderless} leaderless` : under ? `${under} under-replicated` : 'ok'}</td>
          <td><a href=${`#/messages?topic=${encodeURIComponent(name)}`}>messages</a>
            <${ConfirmButton} label="Delete" testid=${`delete-${name}`} question=${`Delete '${name}' and all its records?`}
              confirmLabel="Yes, delete" action=${() => runDelete(() => deleteTopic(name))} /></td></tr>`;
      })}</tbody></table>
    ${names.length ? null : html`<p class="muted">No topics yet.</p>`}`;
}

function Configs({ name, configs, onSaved }) {
  const [edits, setEdits] = useState({});
  const [state, run] = useAction();
  const changed = Object.keys(edits).filter((k) => edits[k] !== String(configs[k]));
  const save = (e) => {
    e.preventDefault();
    run(async () => {
      const body = { configs: Object.fromEntries(changed.map((k) => [k, edits[k]])) };
      await api(`${path(name)}/configs`, { method: 'PUT', body });
      setEdits({});
      onSaved();
      return `Saved ${changed.join(', ')}.`;
    });
  };
  return html`<form onSubmit=${save} data-testid="configs">
    <table><thead><tr><th>config</th><th>value</th></tr></thead><tbody>
      ${Object.keys(configs).sort().map((k) => html`<tr><td><code>${k}</code></td><td>
        <input name=${k} value=${k in edits ? edits[k] : String(configs[k])} onInput=${(e) => setEdits({ ...edits, [k]: e.target.value })} /></td></tr>`)}
    </tbody></table>
    <button type="submit" disabled=${!changed.length || state.busy}>Save configs</button>
    ${state.done ? html`<span class="ok-text">${state.done}</span>` : null}<${ErrorBox} error=${state.error} /></form>`;
}

export function TopicDetail({ name }) {
  const store = useStore();
  const [version, setVersion] = useState(0);
  const topic = usePoll(() => api(path(name)), 0, [name, version]);
  const [deleteState, runDelete] = useAction();
  const c = store.cluster;
  const parts = c ? c.partitions.filter((p) => p.topic === name) : [];
  if (topic.error && !topic.data) return html`<h1>Topic ${name}</h1><${ErrorBox} error=${topic.error} />`;
  if (deleteState.done) return html`<h1>Topic ${name}</h1><p class="ok-text">Deleted. <a href="#/topics">Back to topics</a></p>`;
  return html`
    <h1>Topic ${name}</h1>
    <p><a href=${`#/messages?topic=${encodeURIComponent(name)}`}>Browse and produce messages</a> ·
      ${topic.data ? `replication factor ${topic.data.replication_factor}` : ''} ·
      size ${formatBytes(sizeOf(parts))} ·
      <${ConfirmButton} label="Delete topic" testid="delete-topic" question=${`Delete '${name}' and all its records?`}
        confirmLabel="Yes, delete" action=${() => runDelete(async () => { await deleteTopic(name); return true; })} /></p>
    <${ErrorBox} error=${deleteState.error} />
    <h2>Partitions</h2>
    <table data-testid="topic-partitions"><thead><tr><th>topic</th><th>partition</th><th>leader</th><th>replicas (* leader; red: out of sync)</th>
      <th>state</th><th>high watermark</th><th>log start</th><th>size</th><th>term</th></tr></thead>
      <tbody>${parts.map((p) => html`<${PartitionRow} p=${p} extra=${html`<td>${formatNumber(p.highWatermark)}</td>
        <td>${formatNumber(p.logStartOffset)}</td><td>${formatBytes(p.sizeBytes)}</td><td>${p.group ? p.group.term : '–'}</td>`} />`)}</tbody></table>
    <h2>Configs</h2>
    ${topic.data ? html`<${Configs} name=${name} configs=${topic.data.configs} onSaved=${() => setVersion(version + 1)} />` : html`<p class="loading">Loading…</p>`}`;
}
