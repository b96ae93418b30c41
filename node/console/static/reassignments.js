// Reassignments: replica moves and broker decommissions in progress with their progress, the moves' cancel
// button, and what finished since the console opened.
//
// pollMoves runs after every poll of the cluster view (app.js gives it to startPolling), on every page, so
// that a move that ends while another page is open is still listed as finished. The broker reports only
// moves in progress (GET /reassignments, from the metadata leader's job driver) and each draining broker's
// drain (GET /brokers/{id}/decommission); how a move ended is read from its last view (cancelled: its target
// became where it started) or from the partition's replicas afterwards: its target (completed), or the topic is gone.

import { api, refreshNow } from './api.js';
import { Badge, ConfirmButton, ErrorBox, formatBytes, formatTime, html, topicHref, useAction, useStore } from './ui.js';

const KEPT_FINISHED = 50;
const SETTLE_MS = 30000; // a move whose outcome the metadata does not show by then is just "finished"

const moves = {
  at: null, // when the last poll answered
  error: null, // why the last poll failed (e.g. the user may not DESCRIBE the cluster)
  jobs: [], // the job views of GET /reassignments
  drains: [], // GET /brokers/{id}/decommission of every draining broker
  finishedJobs: [], // [{job (its last view), at, outcome}], newest first
  finishedDrains: [], // [{status (its last one), at, outcome}], newest first
};
const wanted = new Map(); // job id -> its target when first seen (a cancel makes the target where it started)
let polls = 0; // polls started: only the latest one's answer is kept (a refresh may overlap the regular poll)

const sameBrokers = (a, b) => a.length === b.length && a.every((x) => b.includes(x));

function moveOutcome(entry, cluster, now) {
  const { job } = entry;
  if (job.cancelled) return 'cancelled';
  if (!cluster.topics.includes(job.topic)) return 'topic deleted';
  const p = cluster.partitions.find((x) => x.topic === job.topic && x.partition === job.partition);
  if (p && sameBrokers(p.replicas, job.target)) return 'completed';
  if (p && sameBrokers(p.replicas, job.before)) return 'cancelled';
  return now - entry.at > SETTLE_MS ? 'finished' : null;
}

function drainOutcome(broker, cluster) {
  if (cluster.decommissioned.some((d) => d.id === broker)) return 'decommissioned';
  const member = cluster.brokers.find((b) => b.id === broker);
  return member && member.membership === 'active' ? 'recommissioned' : 'ended';
}

function keepFinished(list, entries) {
  list.unshift(...entries);
  list.splice(KEPT_FINISHED);
}

export async function pollMoves(store) {
  const cluster = store.cluster;
  store.moves = moves;
  const draining = cluster.brokers.filter((b) => b.membership === 'draining').map((b) => b.id);
  const poll = ++polls;
  let jobs;
  let drains;
  try {
    [jobs, drains] = await Promise.all([
      api('/reassignments').then((doc) => doc.reassignments),
      Promise.all(draining.map((id) => api(`/brokers/${id}/decommission`))),
    ]);
  } catch (error) {
    const refused = error.status === 403 ? ' Replica moves need DESCRIBE on the cluster (an ACL, or a superuser).' : '';
    if (poll === polls) moves.error = `${error.message}${refused}`;
    return;
  }
  if (poll !== polls) return;
  const now = Date.now();
  for (const job of jobs) {
    if (!wanted.has(job.id)) wanted.set(job.id, job.cancelled ? null : job.target);
    job.wanted = wanted.get(job.id); // null: cancelled before the console saw where it was going
  }
  const running = new Set(jobs.map((j) => j.id));
  for (const id of wanted.keys()) if (!running.has(id)) wanted.delete(id);
  keepFinished(moves.finishedJobs, moves.jobs.filter((j) => !running.has(j.id)).map((job) => ({ job, at: now, outcome: null })));
  for (const entry of moves.finishedJobs) {
    if (entry.outcome === null) entry.outcome = moveOutcome(entry, cluster, now);
  }
  const drainingNow = new Set(drains.map((d) => d.broker));
  keepFinished(moves.finishedDrains, moves.drains.filter((d) => !drainingNow.has(d.broker))
    .map((status) => ({ status, at: now, outcome: drainOutcome(status.broker, cluster) })));
  Object.assign(moves, { at: now, error: null, jobs, drains });
}

export function movesInProgress(store) {
  return store.moves ? store.moves.jobs.length + store.moves.drains.length : 0;
}

// ------------------------------------------------------------------ the page

function Bar({ value, label, kind = '', testid }) {
  const percent = Math.round(Math.max(0, Math.min(1, value)) * 1000) / 10;
  return html`<div class=${`bar ${kind}`} role="progressbar" aria-valuemin="0" aria-valuemax="100"
      aria-valuenow=${percent} data-testid=${testid}>
    <div class="fill" style=${`width: ${percent}%`}></div><span>${percent}% · ${label}</span></div>`;
}

// Bytes copied to the new replicas of the leader's size; with nothing to copy (replicas only removed, or an
// empty partition), the replica changes done of those to make; once cancelled, the new replicas taken away again.
function moveProgress(job) {
  if (job.cancelled) {
    const left = job.replicas.filter((r) => !r.in_target).length;
    const total = Math.max(left, (job.wanted || []).filter((b) => !job.before.includes(b)).length);
    return { value: total ? (total - left) / total : 1, label: `going back: ${total - left} of ${total} new replicas removed` };
  }
  if (job.bytes_total > 0) {
    return { value: job.bytes_copied / job.bytes_total, label: `${formatBytes(job.bytes_copied)} of ${formatBytes(job.bytes_total)} copied` };
  }
  const role = new Map(job.replicas.map((r) => [r.broker, r.role]));
  const steps = job.adding.length + job.removing.length;
  const done = job.adding.filter((b) => role.get(b) === 'voter').length + job.removing.filter((b) => role.get(b) !== 'voter').length;
  return { value: steps ? done / steps : 1, label: `${done} of ${steps} replica changes` };
}

const STATE_KIND = { copying: 'info', removing: 'info', complete: 'ok', cancelling: 'warn', stuck: 'bad' };
const ROLE_KIND = { voter: 'ok', learner: 'info', waiting: 'unknown', leaving: 'warn' };
const OUTCOME_KIND = { completed: 'ok', decommissioned: 'ok', cancelled: 'warn', recommissioned: 'warn' };

// Where the move started → where it was going (a cancelled move goes back to where it started).
function Brokers({ job }) {
  const { before, wanted: target } = job;
  if (!target) return html`<span class="nowrap">[${before.join(', ')}] → ?</span>`;
  const change = (b) => (!before.includes(b) ? 'added' : !target.includes(b) ? 'removed' : '');
  const list = (ids) => ids.map((b, i) => html`${i ? ', ' : ''}<span class=${change(b)}>${b}</span>`);
  return html`<span class="nowrap">[${list(before)}] → [${list(target)}]</span>`;
}

function ReplicaState({ r }) {
  if (!r.alive) return html`<${Badge} kind="bad">${r.broker}: down</${Badge}> `;
  const copy = r.role === 'learner' && r.bytes_total ? ` ${Math.floor((100 * (r.bytes_copied || 0)) / r.bytes_total)}%` : '';
  const leaving = r.role === 'voter' && !r.in_target;
  return html`<${Badge} kind=${leaving ? 'warn' : ROLE_KIND[r.role] || 'unknown'}>${r.broker}: ${r.role}${copy}${leaving ? ', to be removed' : ''}</${Badge}> `;
}

function MoveRow({ job }) {
  const [cancel, run] = useAction();
  const progress = moveProgress(job);
  const where = `/topics/${encodeURIComponent(job.topic)}/partitions/${job.partition}/reassignment`;
  const cancelMove = () => run(async () => {
    await api(where, { method: 'DELETE' });
    await refreshNow();
  });
  return html`<tr data-testid=${`move-${job.topic}-${job.partition}`} data-job=${job.id} data-state=${job.state}
      class=${job.state === 'stuck' ? 'row-bad' : ''}>
    <td><a href=${topicHref(job.topic)}>${job.topic}</a> / ${job.partition}<div class="muted">job ${job.id} · ${job.reason}</div></td>
    <td><${Brokers} job=${job} /><div class="muted">leader ${job.leader ?? 'none'}</div></td>
    <td><${Badge} kind=${STATE_KIND[job.state] || 'unknown'}>${job.state}</${Badge}>
      ${job.stuck_reason ? html`<div class="error stuck" data-testid="stuck-reason">${job.stuck_reason}</div>` : null}</td>
    <td class="progress"><${Bar} value=${progress.value} label=${progress.label} kind=${job.state === 'stuck' ? 'bad' : ''}
      testid=${`move-bar-${job.id}`} /><div>${job.replicas.map((r) => html`<${ReplicaState} r=${r} />`)}</div></td>
    <td class="nowrap">${job.elapsed_s} s</td>
    <td>${job.cancelled ? html`<span class="muted">going back to [${job.before.join(', ')}]</span>`
      : html`<${ConfirmButton} label="Cancel" testid=${`cancel-${job.id}`} confirmLabel="Yes, cancel the move"
          question=${`Stop moving ${job.topic}/${job.partition} and go back to [${job.before.join(', ')}]?`} action=${cancelMove} />`}
      <${ErrorBox} error=${cancel.error} /></td></tr>`;
}

// Replicas moved off of those on the broker when the drain started; the bar also counts the copies under way.
function DrainRow({ d }) {
  const total = d.partitions_total || 0;
  const moved = total - d.partitions_remaining;
  const copying = d.reassignments.reduce((sum, job) => sum + (job.bytes_total ? job.bytes_copied / job.bytes_total : 0), 0);
  const seat = d.metadata_voter ? ' · still a metadata voter' : '';
  return html`<tr data-testid=${`drain-${d.broker}`}>
    <td>broker ${d.broker}</td><td class="nowrap">${formatTime(d.started_ms)}</td>
    <td class="progress"><${Bar} value=${total ? Math.min(total, moved + copying) / total : 1} label=${`${moved} of ${total} replicas moved off${seat}`}
      testid=${`drain-bar-${d.broker}`} />
      ${d.bytes_total ? html`<div class="muted">moves in flight: ${formatBytes(d.bytes_copied)} of ${formatBytes(d.bytes_total)} copied</div>` : null}</td>
    <td>${d.reassignments.map((job) => html`<div>${job.topic}/${job.partition}: ${job.state}</div>`)}</td></tr>`;
}

function FinishedMoves({ entries }) {
  if (!entries.length) return html`<p class="muted">None since this console opened.</p>`;
  return html`<table data-testid="finished-moves"><thead><tr><th>partition</th><th>replicas</th><th>outcome</th><th>ended</th><th>took</th></tr></thead>
    <tbody>${entries.map(({ job, at, outcome }) => html`<tr data-testid=${`finished-${job.id}`} data-outcome=${outcome || ''}>
      <td><a href=${topicHref(job.topic)}>${job.topic}</a> / ${job.partition}<div class="muted">job ${job.id} · ${job.reason}</div></td>
      <td><${Brokers} job=${job} /></td>
      <td><${Badge} kind=${OUTCOME_KIND[outcome] || 'unknown'}>${outcome || 'finishing'}</${Badge}></td>
      <td class="nowrap">${formatTime(at)}</td><td class="nowrap">about ${Math.round((at - job.created_ms) / 1000)} s</td></tr>`)}</tbody></table>`;
}

export function Reassignments() {
  const store = useStore();
  const m = store.moves;
  if (!m || m.at === null) {
    return html`<h1>Reassignments</h1>${m && m.error ? html`<${ErrorBox} error=${m.error} />` : html`<p class="loading">Loading replica moves…</p>`}`;
  }
  const drainsDone = m.finishedDrains;
  return html`
    <h1>Reassignments</h1>
    <p class="muted">Replica moves (reassignments, rebalancing, replication factor changes, decommissions) as the metadata leader
      reports them, every 2 s. Start them with the CLI (<code>raftka topics reassign</code>, <code>raftka cluster rebalance</code>, <code>raftka cluster decommission</code>) or the HTTP API.</p>
    <${ErrorBox} error=${m.error && `Not refreshed: ${m.error}`} />
    <h2>In progress</h2>
    ${m.jobs.length ? html`<table data-testid="moves"><thead><tr><th>partition</th><th>replicas (from → to)</th><th>state</th>
        <th>progress</th><th>running</th><th></th></tr></thead>
      <tbody>${m.jobs.map((job) => html`<${MoveRow} key=${job.id} job=${job} />`)}</tbody></table>`
      : html`<p class="ok-text" data-testid="no-moves">No replica is moving.</p>`}
    <h2>Decommissions</h2>
    ${m.drains.length ? html`<table data-testid="drains"><thead><tr><th>broker</th><th>started</th><th>progress</th><th>moves</th></tr></thead>
      <tbody>${m.drains.map((d) => html`<${DrainRow} d=${d} />`)}</tbody></table>`
      : html`<p class="muted" data-testid="no-drains">No broker is being decommissioned.</p>`}
    ${drainsDone.length ? html`<ul data-testid="finished-drains">${drainsDone.map(({ status, at, outcome }) => html`
      <li data-testid=${`drain-done-${status.broker}`} data-outcome=${outcome}>broker ${status.broker}:
        <${Badge} kind=${OUTCOME_KIND[outcome] || 'unknown'}>${outcome}</${Badge}> at ${formatTime(at)}
        ${outcome === 'decommissioned' ? `(${status.partitions_total || 0} replicas moved off)` : '(the drain stopped; its moves go back)'}</li>`)}</ul>` : null}
    <h2>Finished since this console opened</h2>
    <${FinishedMoves} entries=${m.finishedJobs} />`;
}
