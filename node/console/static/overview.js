// Overview: brokers, topic and partition counts, partitions in trouble, live throughput and latency.

import { TimeChart } from './chart.js';
import { Badge, formatNumber, html, topicHref, useStore } from './ui.js';

const SHOWN_PARTITIONS = 300;

function Card({ label, value, kind = '', testid }) {
  return html`<div class=${`card ${kind}`} data-testid=${testid}><div class="value">${value}</div><div class="label">${label}</div></div>`;
}

function Replicas({ partition }) {
  return partition.replicas.map((b) => {
    const kind = partition.inSync[b] === false ? 'bad' : partition.inSync[b] === null ? 'unknown' : 'ok';
    return html`<${Badge} kind=${kind}>${b}${b === partition.leader ? '*' : ''}</${Badge}> `;
  });
}

export function PartitionRow({ p, extra = null }) {
  const state = p.leaderless ? html`<${Badge} kind="bad">leaderless</${Badge}>`
    : p.underReplicated ? html`<${Badge} kind="warn">under-replicated</${Badge}>` : html`<${Badge} kind="ok">ok</${Badge}>`;
  return html`<tr data-testid=${`partition-${p.topic}-${p.partition}`} data-leader=${p.leader === null ? '' : p.leader}
      class=${p.leaderless ? 'row-bad' : p.underReplicated ? 'row-warn' : ''}>
    <td><a href=${topicHref(p.topic)}>${p.topic}</a></td><td>${p.partition}</td>
    <td class="leader">${p.leader === null ? '–' : p.leader}</td><td><${Replicas} partition=${p} /></td><td>${state}</td>${extra}</tr>`;
}

// The metadata group: its leader, a voter or learner seat (and this broker's own Raft role when it is not the usual one).
function MetadataRole({ b, metadataLeader }) {
  if (b.id === metadataLeader) return html`<${Badge} kind="info">leader</${Badge}>`;
  return html`${b.metadataSeat === 'none' ? 'no seat' : b.metadataSeat}${b.metadataRole !== 'follower' && b.metadataSeat !== 'none'
    ? html` <span class="muted">(${b.metadataRole})</span>` : null}`;
}

function BrokerRow({ b, metadataLeader }) {
  return html`<tr data-testid=${`broker-${b.id}`} data-alive=${String(b.alive)} data-membership=${b.membership}
      class=${b.alive ? '' : 'row-bad'}>
    <td>${b.id}</td><td><code>${b.url}</code></td>
    <td>${b.alive ? html`<${Badge} kind="ok">alive</${Badge}>` : html`<${Badge} kind="bad">down</${Badge}> <span class="muted">${b.problem}</span>`}</td>
    <td>${b.membership === 'active' ? 'active'
      : html`<a href="#/reassignments"><${Badge} kind="warn">${b.membership}</${Badge}></a>`}</td>
    <td><${MetadataRole} b=${b} metadataLeader=${metadataLeader} /></td>
    <td>${b.leaders}</td><td>${b.replicas}</td></tr>`;
}

function DecommissionedRow({ b }) {
  return html`<tr data-testid=${`broker-${b.id}`} data-membership="decommissioned" class="row-gone">
    <td>${b.id}</td><td><code>${b.url}</code></td><td class="muted">left the cluster</td>
    <td><${Badge} kind="unknown">decommissioned</${Badge}></td><td>no seat</td><td>0</td><td>0</td></tr>`;
}

export function Overview() {
  const store = useStore();
  const c = store.cluster;
  if (!c) return html`<p class="loading">Loading the cluster…</p>`;
  const alive = c.brokers.filter((b) => b.alive).length;
  const leaderless = c.partitions.filter((p) => p.leaderless);
  const under = c.partitions.filter((p) => p.underReplicated);
  const troubled = [...leaderless, ...under];
  const t = store.traffic;
  return html`
    <h1>Overview</h1>
    <section class="cards">
      <${Card} label="brokers alive" value=${`${alive} / ${c.brokers.length}`} kind=${alive < c.brokers.length ? 'bad' : ''} testid="card-brokers" />
      <${Card} label="topics" value=${c.topics.length} testid="card-topics" />
      <${Card} label="partitions" value=${c.partitions.length} testid="card-partitions" />
      <${Card} label="leaderless" value=${leaderless.length} kind=${leaderless.length ? 'bad' : ''} testid="card-leaderless" />
      <${Card} label="under-replicated" value=${under.length} kind=${under.length ? 'warn' : ''} testid="card-under-replicated" />
      <${Card} label="metadata leader" value=${c.metadataLeader === null ? 'none' : `broker ${c.metadataLeader}`} kind=${c.metadataLeader === null ? 'bad' : ''} />
    </section>
    <h2>Brokers</h2>
    <table data-testid="brokers"><thead><tr><th>id</th><th>url</th><th>status</th><th>membership</th><th>metadata group</th><th>leaders</th><th>replicas</th></tr></thead>
      <tbody>${c.brokers.map((b) => html`<${BrokerRow} b=${b} metadataLeader=${c.metadataLeader} />`)}
        ${c.decommissioned.map((b) => html`<${DecommissionedRow} b=${b} />`)}</tbody></table>
    <h2>Throughput and latency <span class="muted">(all brokers, from /metrics every 2 s)</span></h2>
    <section class="charts">
      <${TimeChart} title="records / s" testid="chart-records" points=${t} lines=${[
        { label: 'in (produced)', value: (p) => p.producedRecords }, { label: 'out (fetched)', value: (p) => p.fetchedRecords }]} />
      <${TimeChart} title="bytes / s" testid="chart-bytes" points=${t} lines=${[
        { label: 'in', value: (p) => p.producedBytes }, { label: 'out', value: (p) => p.fetchedBytes }]} />
      <${TimeChart} title="produce latency on the leader (ms)" testid="chart-latency" points=${t} lines=${[
        { label: 'p50', value: (p) => (p.p50 === null ? null : p.p50 * 1000) }, { label: 'p99', value: (p) => (p.p99 === null ? null : p.p99 * 1000) }]} />
    </section>
    ${t.length ? html`<p class="muted" data-testid="rates" data-samples=${t.length}>now: ${formatNumber(t[t.length - 1].producedRecords, 1)} records/s in, ${formatNumber(t[t.length - 1].fetchedRecords, 1)} records/s out</p>` : null}
    <h2>Partitions in trouble</h2>
    ${troubled.length ? html`<table data-testid="troubled"><thead><tr><th>topic</th><th>partition</th><th>leader</th><th>replicas (* leader)</th><th>state</th></tr></thead>
      <tbody>${troubled.map((p) => html`<${PartitionRow} p=${p} />`)}</tbody></table>`
      : html`<p class="ok-text" data-testid="no-trouble">Every partition has a leader and all its replicas in sync.</p>`}
    <h2>Partition leaders</h2>
    <table data-testid="partitions"><thead><tr><th>topic</th><th>partition</th><th>leader</th><th>replicas (* leader; red: out of sync)</th><th>state</th></tr></thead>
      <tbody>${c.partitions.slice(0, SHOWN_PARTITIONS).map((p) => html`<${PartitionRow} p=${p} />`)}</tbody></table>
    ${c.partitions.length > SHOWN_PARTITIONS ? html`<p class="muted">First ${SHOWN_PARTITIONS} of ${c.partitions.length}; see each topic.</p>` : null}`;
}
