// Overview: the project's executions, errors, durations and cost over a range, its workflows'
// health, and the alerts firing now. With no executions yet, how to send the first one.

import { api } from "../api.js";
import { currentRange, healthStrip, rangePicker, statCards, statCharts } from "../statsview.js";
import {
  badge, clear, copyButton, emptyState, errorBox, formatNumber, formatPercent, formatTime, h,
  pageHeader, table,
} from "../ui.js";

function firstEventCurl() {
  const now = new Date();
  const started = new Date(now.getTime() - 2500).toISOString();
  const event = {
    type: "workflow.execution.completed", executionId: "exec-1", workflowId: "wf-hello",
    workflowName: "Hello", trigger: "manual", level: "info", startedAt: started, endedAt: now.toISOString(),
  };
  return `curl -s -X POST ${location.origin}/api/v1/events \\\n` +
    "  -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \\\n" +
    `  -d '${JSON.stringify(event)}'`;
}

function firstSteps() {
  const curl = firstEventCurl();
  return emptyState("No executions yet",
    "Report an execution with an API key (API keys page, or the key `codecourier up` printed):",
    h("pre", {}, h("code", {}, curl)),
    h("p", {}, copyButton(curl, "Copy the command"), " ", h("a", { href: "/keys" }, "Manage API keys")));
}

async function latestAlerts(signal) {
  const page = await api.list("/api/v1/alerts", { state: "firing", limit: 5 }, { signal });
  return { alerts: page.data || [], more: Boolean(page.hasMore) };
}

function alertsBlock(result) {
  if (result instanceof Error) {
    return h("p", { class: "muted" }, "Alerts could not be read here. ", h("a", { href: "/alerts" }, "Open Alerts"));
  }
  if (!result.alerts.length) {
    return h("p", { class: "muted" }, "No alert is firing. ", h("a", { href: "/alerts" }, "All alerts"));
  }
  return h("div", {},
    table([
      { label: "Fired", cell: (a) => formatTime(a.firedAt) },
      { label: "Rule", cell: (a) => a.rule },
      { label: "Workflow", cell: (a) => h("a", { href: `/workflows/${encodeURIComponent(a.workflowId)}` }, a.workflowId) },
      { label: "State", cell: (a) => [badge(a.state, "error"), a.acknowledged ? badge("acknowledged", "neutral") : null] },
    ], result.alerts, { caption: "Firing alerts" }),
    h("p", {}, h("a", { href: "/alerts?state=firing" }, result.more ? "All firing alerts" : "All alerts")));
}

function workflowsTable(rows, names) {
  if (!rows.length) return h("p", { class: "muted" }, "No workflow ran in this range.");
  return table([
    { label: "Workflow", cell: (w) => h("a", { href: `/workflows/${encodeURIComponent(w.workflowId)}` },
      names.get(w.workflowId) || w.workflowId) },
    { label: "Executions", class: "num", cell: (w) => formatNumber(w.executions) },
    { label: "Error rate", class: "num", cell: (w) => formatPercent(w.errorRate) },
    { label: "Last run", cell: (w) => formatTime(w.lastExecutionAt) },
    { label: "Health", cell: (w) => healthStrip(w.health) },
  ], rows, { caption: "Workflows by executions" });
}

export async function render(ctx) {
  const range = currentRange(ctx.query);
  const { signal } = ctx;
  const [stats, workflows, alerts] = await Promise.all([
    api.get("/api/v1/stats", { range }, { signal }),
    api.list("/api/v1/workflows", { limit: 100 }, { signal }).catch(() => ({ data: [] })),
    latestAlerts(signal).catch((err) => (err.name === "AbortError" ? Promise.reject(err) : err)),
  ]).catch((err) => {
    if (err.name === "AbortError") throw err;
    clear(ctx.root, pageHeader("Overview"), errorBox(err, "The overview could not be loaded"));
    return [];
  });
  if (!stats) return;
  const names = new Map((workflows.data || []).map((w) => [w.id, w.name || w.id]));
  const header = pageHeader("Overview", rangePicker(ctx));
  if (!stats.totals.executions && !(workflows.data || []).length) {
    clear(ctx.root, header, firstSteps());
    return;
  }
  clear(ctx.root, header,
    statCards(stats.totals),
    statCharts(stats),
    h("div", { class: "grid overview-lower" },
      h("section", { "aria-labelledby": "ov-workflows" },
        h("h2", { id: "ov-workflows" }, "Workflows"), workflowsTable(stats.workflows || [], names)),
      h("section", { "aria-labelledby": "ov-alerts" },
        h("h2", { id: "ov-alerts" }, "Recent alerts"), alertsBlock(alerts))));
}
