// Shared pieces of the pages: html``, hooks over the shared poller, formatting, small components.

import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { store, subscribe } from './api.js';

export const html = htm.bind(h);

// Re-render on every poll of the shared cluster view.
export function useStore() {
  const [, setTick] = useState(0);
  useEffect(() => subscribe(() => setTick((t) => t + 1)), []);
  return store;
}

// Call `load` now and every `intervalMs` while mounted (and again when `deps` change).
export function usePoll(load, intervalMs, deps) {
  const [state, setState] = useState({ data: null, error: null });
  const generation = useRef(0);
  useEffect(() => {
    const mine = ++generation.current;
    let timer = null;
    const run = async () => {
      try {
        const data = await load();
        if (mine === generation.current) setState({ data, error: null });
      } catch (error) {
        if (mine === generation.current) setState((s) => ({ data: s.data, error: error.message }));
      }
      if (mine === generation.current && intervalMs) timer = setTimeout(run, intervalMs);
    };
    run();
    return () => { generation.current += 1; clearTimeout(timer); };
  }, deps);
  return state;
}

export function formatBytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value < 10 && unit ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export function formatNumber(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function formatTime(ms) {
  if (ms === null || ms === undefined || ms < 0) return '–';
  const d = new Date(ms);
  return `${d.toISOString().slice(0, 10)} ${d.toTimeString().slice(0, 8)}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms % 86400000 === 0 && ms) return `${ms / 86400000} d`;
  if (ms % 3600000 === 0 && ms) return `${ms / 3600000} h`;
  if (ms % 1000 === 0 && ms) return `${ms / 1000} s`;
  return `${ms} ms`;
}

export function topicHref(topic) {
  return `#/topics/${encodeURIComponent(topic)}`;
}

export function Badge({ kind, children }) {
  return html`<span class=${`badge ${kind}`}>${children}</span>`;
}

export function ErrorBox({ error }) {
  return error ? html`<div class="error" role="alert">${error}</div>` : null;
}

// A button that asks "are you sure?" in place before running `action`.
export function ConfirmButton({ label, question, confirmLabel, action, testid }) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  if (!asking) return html`<button class="danger" data-testid=${testid} onClick=${() => setAsking(true)}>${label}</button>`;
  const run = async () => {
    setBusy(true);
    try { await action(); } finally { setBusy(false); setAsking(false); }
  };
  return html`<span class="confirm">${question}
    <button class="danger" data-testid=${`${testid}-confirm`} disabled=${busy} onClick=${run}>${confirmLabel}</button>
    <button onClick=${() => setAsking(false)}>Cancel</button></span>`;
}

// A form's submit handler that shows the error or the outcome next to the form.
export function useAction() {
  const [state, setState] = useState({ busy: false, error: null, done: null });
  const run = async (work) => {
    setState({ busy: true, error: null, done: null });
    try {
      const done = await work();
      setState({ busy: false, error: null, done });
    } catch (error) {
      setState({ busy: false, error: error.message, done: null });
    }
  };
  return [state, run];
}
