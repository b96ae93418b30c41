// Raft: every group (the metadata group first) with term, leader, each replica's commit and applied
// index, each follower's match index, lag and last contact as the leader sees them, and elections.

import { followerInSync, followerOf } from './api.js';
import { TimeChart } from './chart.js';
import { Badge, formatNumber, formatTime, html, useStore } from './ui.js';

const SHOWN_ELECTIONS = 20;

function Replica({ id, entry, lead, alive, timeoutMs }) {
  const follower = lead && lead !== entry ? followerOf(lead, id) : null;
  if (!alive) return html`<div class="replica"><${Badge} kind="bad">${id}: down</${Badge}></div>`;
  if (!entry) return html`<div class="replica"><${Badge} kind="unknown">${id}: no report</${Badge}></div>`;
  const role = entry.role === 'leader' ? 'info' : 'ok';
  const stale = lead && lead !== entry && !followerInSync(lead, follower, timeoutMs);
  return html`<div class="replica">
    <${Badge} kind=${stale ? 'bad' : role}>${id}: ${entry.role}</${Badge}>
    <span> commit ${formatNumber(entry.commit_index)} · applied ${formatNumber(entry.applied_index)}</span>
    ${follower ? html`<span> · match ${formatNumber(follower.match_index)} · lag ${formatNumber(follower.lag)} · contact ${follower.last_contact_ms === null ? 'never' : `${follower.last_contact_ms} ms ago`} (${follower.state})</span>` : null}
    ${entry.quiesced ? html`<span class="muted"> · quiesced</span>` : null}
    </div>`;
}

function GroupRow({ g, replicaIds, alive }) {
  const lead = g.leaderEntry;
  return html`<tr data-testid=${`raft-${g.key}`} data-leader=${g.leader === null ? '' : g.leader} class=${g.leader === null ? 'row-bad' : ''}>
    <td>${g.key === 'metadata' ? html`<b>metadata</b>` : g.key}<div class="muted">${g.name}</div></td>
    <td>${g.term}</td><td class="leader">${g.leader === null ? html`<${Badge} kind="bad">none</${Badge}>` : g.leader}</td>
    <td>${lead ? formatNumber(lead.commit_index) : '–'}</td>
    <td>${replicaIds.map((id) => html`<${Replica} id=${id} entry=${g.replicas[id]} alive=${alive(id)}
      timeoutMs=${g.electionTimeoutMs} lead=${lead} />`)}</td></tr>`;
}

export function Raft() {
  const store = useStore();
  const c = store.cluster;
  if (!c) return html`<p class="loading">Loading Raft state…</p>`;
  if (c.raftRefused) {
    return html`<h1>Raft groups</h1><p class="error" role="alert" data-testid="raft-refused">${c.raftRefused}
      The Raft state needs DESCRIBE on the cluster (an ACL, or a superuser).</p>`;
  }
  const alive = (id) => c.brokers.some((b) => b.id === id && b.alive);
  const replicasOf = new Map(c.partitions.map((p) => [`${p.topic}/${p.partition}`, p.replicas]));
  const allIds = c.brokers.map((b) => b.id);
  const recent = store.elections.slice(-SHOWN_ELECTIONS).reverse();
  return html`
    <h1>Raft groups</h1>
    <p class="muted">${c.groups.length} groups; each broker reports its own replicas (GET /brokers/{id}/raft), followers as their leader sees them.</p>
    <section class="charts">
      <${TimeChart} title="elections (term changes) per 2 s" testid="chart-elections" points=${store.electionCounts}
        lines=${[{ label: 'elections', value: (p) => p.count }]} />
      <div class="elections" data-testid="elections"><h2>Recent elections</h2>
        ${recent.length ? html`<ul>${recent.map((e) => html`<li>${formatTime(e.at)} <b>${e.group}</b> term ${e.fromTerm} → ${e.toTerm},
          leader ${e.fromLeader ?? 'none'} → ${e.toLeader ?? 'none'}</li>`)}</ul>` : html`<p class="muted">None since the console opened.</p>`}</div>
    </section>
    <table data-testid="raft-groups"><thead><tr><th>group</th><th>term</th><th>leader</th><th>commit</th><th>replicas</th></tr></thead>
      <tbody>${c.groups.map((g) => html`<${GroupRow} g=${g} replicaIds=${g.key === 'metadata' ? allIds : (replicasOf.get(g.key) || Object.keys(g.replicas).map(Number))} alive=${alive} />`)}</tbody></table>`;
}
