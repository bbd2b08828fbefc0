// What the Overview and a Workflow page share: the range picker (?range=), the stat cards and
// the charts drawn from GET /api/v1/stats, and a workflow's health strip.

import { barChart, lineChart } from "./charts.js";
import { formatCost, formatDuration, formatNumber, formatPercent, h } from "./ui.js";

export const RANGES = [["24h", "24 h"], ["7d", "7 d"], ["30d", "30 d"]];

export function currentRange(query) {
  return RANGES.some(([value]) => value === query.range) ? query.range : "24h";
}

export function rangePicker(ctx) {
  const range = currentRange(ctx.query);
  return h("div", { class: "segmented", role: "group", "aria-label": "Range" },
    RANGES.map(([value, label]) => h("button", {
      type: "button", class: "button small", "aria-pressed": String(value === range),
      onclick: () => { if (value !== range) ctx.setQuery({ range: value === "24h" ? "" : value }); },
    }, label)));
}

function stat(label, value, note) {
  return h("div", { class: "card stat" }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), note ? h("div", { class: "muted small" }, note) : null);
}

export function statCards(totals) {
  return h("div", { class: "grid cols-4 stat-cards" },
    stat("Executions", formatNumber(totals.executions)),
    stat("Error rate", formatPercent(totals.errorRate), `${formatNumber(totals.errors)} ${totals.errors === 1 ? "error" : "errors"}`),
    stat("Duration p50 / p95",
      `${formatDuration(totals.p50DurationMs)} / ${formatDuration(totals.p95DurationMs)}`),
    stat("Cost", formatCost(totals.costUsd)));
}

export function statCharts(stats) {
  const buckets = (stats.series || []).map((b) => ({
    ...b, ok: Math.max(0, (b.executions || 0) - (b.errors || 0)),
  }));
  const bucketSeconds = stats.bucketSeconds || 3600;
  return h("div", { class: "grid cols-3 charts" },
    barChart(buckets, { title: "Executions", bucketSeconds, format: (v) => formatNumber(Math.round(v)),
      stacks: [{ key: "ok", label: "succeeded", className: "ok" },
        { key: "errors", label: "errors", className: "error" }] }),
    lineChart(buckets, { title: "Duration", bucketSeconds, format: formatDuration,
      series: [{ key: "p50DurationMs", label: "p50", className: "series-1" },
        { key: "p95DurationMs", label: "p95", className: "series-2" }] }),
    lineChart(buckets, { title: "Cost", bucketSeconds, area: true, format: formatCost,
      series: [{ key: "costUsd", label: "cost", className: "series-3" }] }));
}

// Error rate per bucket, oldest first: null = did not run.
export function healthStrip(health) {
  const cells = health || [];
  const bad = cells.filter((r) => r !== null && r > 0).length;
  return h("span", { class: "health", role: "img",
    "aria-label": `Health: ${cells.filter((r) => r !== null).length} active buckets, ${bad} with errors` },
  cells.map((rate) => h("span", {
    class: rate === null || rate === undefined ? "" : rate === 0 ? "ok" : rate < 0.1 ? "warn" : "error",
    title: rate === null || rate === undefined ? "No executions" : `Error rate ${formatPercent(rate)}`,
  })));
}
