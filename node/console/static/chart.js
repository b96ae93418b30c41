// A live time-series chart (uPlot, loaded as the global `uPlot` by index.html).

import { useEffect, useRef } from 'preact/hooks';
import { html } from './ui.js';

const MIN_WINDOW_S = 60; // a chart spans at least a minute, even with one point
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

// points: [{at, ...}]; lines: [{label, value: (point) => number|null}]
export function TimeChart({ title, points, lines, unit = '', height = 170, testid }) {
  const box = useRef(null);
  const plot = useRef(null);
  const shape = lines.map((l) => l.label).join('\u0000');
  const data = [points.map((p) => p.at / 1000), ...lines.map((l) => points.map((p) => l.value(p)))];

  useEffect(() => {
    const width = Math.max(300, box.current.clientWidth || 480);
    const options = {
      width, height,
      legend: { live: false },
      cursor: { show: false },
      scales: { x: { time: true, range: (u, min, max) => [Math.min(min, max - MIN_WINDOW_S), max] } },
      axes: [{ values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toTimeString().slice(0, 8)) }, { size: 60, values: (u, ticks) => ticks.map((t) => `${+t.toFixed(3)}${unit}`) }],
      series: [{}, ...lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true }))],
    };
    plot.current = new uPlot(options, data, box.current);
    return () => { plot.current.destroy(); plot.current = null; };
  }, [shape]);

  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  });

  return html`<figure class="chart" data-testid=${testid}><figcaption>${title}</figcaption><div ref=${box}></div></figure>`;
}
