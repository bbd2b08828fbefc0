// One workflow: its stats over a range and its latest executions.

import { api } from "../api.js";
import { currentRange, rangePicker, statCards, statCharts } from "../statsview.js";
import {
  badge, clear, copyable, emptyState, errorBox, formatCost, formatDuration, formatTime, h,
  pageHeader, table,
} from "../ui.js";

export async function render(ctx) {
  const id = ctx.params.workflowId;
  const { signal } = ctx;
  const range = currentRange(ctx.query);
  let workflow;
  let stats;
  let logs;
  try {
    [workflow, stats, logs] = await Promise.all([
      api.get(`/api/v1/workflows/${encodeURIComponent(id)}`, undefined, { signal }),
      api.get("/api/v1/stats", { range, workflowId: id }, { signal }).catch((err) =>
        (err.name === "AbortError" ? Promise.reject(err) : err)),
      api.list("/api/v1/logs", { workflowIds: id, limit: 20 }, { signal }),
    ]);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    if (err.status === 404) {
      clear(ctx.root, pageHeader("Workflow not found"), emptyState("No such workflow",
        `No execution of a workflow “${id}” was reported in this project.`,
        err.requestId ? h("p", { class: "request-id" }, "Request ID: ", h("code", {}, err.requestId)) : null,
        h("p", {}, h("a", { href: "/workflows" }, "All workflows"))));
      return;
    }
    clear(ctx.root, pageHeader("Workflow"), errorBox(err, "The workflow could not be loaded"));
    return;
  }
  const allLogs = `/logs?workflowIds=${encodeURIComponent(id)}`;
  const rows = logs.data || [];
  clear(ctx.root,
    pageHeader(workflow.name || id, rangePicker(ctx),
      h("a", { class: "button primary", href: `/notifications/new?workflowIds=${encodeURIComponent(id)}` }, "Alert on this workflow")),
    h("p", { class: "workflow-meta" }, copyable(id, "Copy workflow ID"),
      workflow.description ? h("span", { class: "muted" }, ` ${workflow.description}`) : null),
    stats instanceof Error ? errorBox(stats, "Statistics could not be loaded") : [statCards(stats.totals), statCharts(stats)],
    h("div", { class: "section-head" }, h("h2", {}, "Latest executions"), h("a", { href: allLogs }, "View all logs")),
    rows.length ? table([
      { label: "Started", cell: (l) => formatTime(l.startedAt) },
      { label: "Level", cell: (l) => badge(l.level, l.level === "error" ? "error" : "ok") },
      { label: "Trigger", cell: (l) => l.trigger },
      { label: "Duration", class: "num", cell: (l) => formatDuration(l.totalDurationMs) },
      { label: "Cost", class: "num", cell: (l) => formatCost(l.cost && l.cost.total) },
      { label: "Execution", cell: (l) => h("a", { href: `/executions/${encodeURIComponent(l.executionId)}`, class: "mono" }, l.executionId) },
    ], rows, { caption: "Latest executions" }) : h("p", { class: "muted" }, "No executions stored yet."));
}
