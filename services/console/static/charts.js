// Small inline SVG charts over time buckets: a line (or area) chart and a stacked bar chart.
// Each is an <svg role="img"> whose aria-label summarises the data; every bucket carries a
// <title> so hovering shows its values. Colours come from the stylesheet's variables.

import { h, svg } from "./ui.js";

const W = 380;
const H = 190;
const PAD = { left: 50, right: 8, top: 10, bottom: 24 };

function niceMax(value) {
  if (!value || value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

// A bucket's start as a short axis label: hours for hourly buckets, dates otherwise.
export function bucketLabel(iso, bucketSeconds) {
  const options = bucketSeconds < 21600 ? { hour: "numeric" } : { day: "numeric", month: "short" };
  return new Intl.DateTimeFormat(undefined, options).format(new Date(iso));
}

const full = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const tip = (iso) => full.format(new Date(iso));

function frame(buckets, max, format, bucketSeconds) {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const y = (v) => PAD.top + plotH - (plotH * (v || 0)) / max;
  const step = plotW / Math.max(buckets.length, 1);
  const x = (i) => PAD.left + step * i;
  const parts = [];
  for (const v of [0, max / 2, max]) {
    parts.push(svg("line", { class: "grid-line", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
    parts.push(svg("text", { class: "axis", x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  const every = Math.max(1, Math.ceil(buckets.length / 5));
  buckets.forEach((b, i) => {
    if (i % every !== 0) return;
    parts.push(svg("text", { class: "axis", x: x(i) + step / 2, y: H - 8, "text-anchor": "middle" },
      bucketLabel(b.start, bucketSeconds)));
  });
  return { parts, x, y, step };
}

function wrap(title, label, body) {
  return h("figure", { class: "chart card" },
    h("figcaption", { class: "chart-title" }, title),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label }, ...body));
}

// series: [{key, label, className}]; the label summarises peak values of every series.
export function lineChart(buckets, { title, series, format = String, bucketSeconds = 3600, area = false }) {
  const max = niceMax(Math.max(0, ...buckets.flatMap((b) => series.map((s) => b[s.key] || 0))));
  const { parts, x, y, step } = frame(buckets, max, format, bucketSeconds);
  for (const s of series) {
    const points = buckets.map((b, i) => [x(i) + step / 2, y(b[s.key])]);
    if (!points.length) continue;
    const line = points.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("");
    if (area) {
      const base = y(0).toFixed(1);
      parts.push(svg("path", { class: `area ${s.className}`,
        d: `${line}L${points.at(-1)[0].toFixed(1)},${base}L${points[0][0].toFixed(1)},${base}Z` }));
    }
    parts.push(svg("path", { class: s.className, d: line }));
  }
  buckets.forEach((b, i) => {
    const text = `${tip(b.start)}: ` +
      series.map((s) => `${s.label} ${format(b[s.key] || 0)}`).join(", ");
    parts.push(svg("rect", { class: "hover", x: x(i), y: PAD.top, width: step, height: H - PAD.top - PAD.bottom },
      svg("title", {}, text)));
  });
  const peaks = series.map((s) => `${s.label} peak ${format(Math.max(0, ...buckets.map((b) => b[s.key] || 0)))}`);
  return wrap(title, `${title}: ${buckets.length} buckets; ${peaks.join("; ")}`, parts);
}

// stacks: [{key, label, className}] drawn bottom-up; `total` (optional) is the bar's height key
// when the stacks are parts of it (errors inside executions).
export function barChart(buckets, { title, stacks, format = String, bucketSeconds = 3600 }) {
  const sum = (b) => stacks.reduce((t, s) => t + (b[s.key] || 0), 0);
  const max = niceMax(Math.max(0, ...buckets.map(sum)));
  const { parts, x, y, step } = frame(buckets, max, format, bucketSeconds);
  const gap = Math.min(2, step * 0.15);
  buckets.forEach((b, i) => {
    let base = 0;
    const group = [];
    for (const s of stacks) {
      const v = b[s.key] || 0;
      if (v > 0) {
        group.push(svg("rect", { class: `bar ${s.className}`, x: x(i) + gap / 2, width: Math.max(step - gap, 1),
          y: y(base + v), height: Math.max(y(base) - y(base + v), 0.5) }));
      }
      base += v;
    }
    const text = `${tip(b.start)}: ` +
      stacks.map((s) => `${s.label} ${format(b[s.key] || 0)}`).join(", ");
    group.push(svg("rect", { class: "hover", x: x(i), y: PAD.top, width: step, height: H - PAD.top - PAD.bottom }));
    parts.push(svg("g", {}, svg("title", {}, text), ...group));
  });
  const totals = stacks.map((s) => `${s.label} ${format(buckets.reduce((t, b) => t + (b[s.key] || 0), 0))}`);
  return wrap(title, `${title}: ${buckets.length} buckets; totals ${totals.join(", ")}`, parts);
}
