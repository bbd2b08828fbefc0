// One execution: what ran, when, what it cost per model, its trace spans as a waterfall (a span's
// input and output in a side panel), its final output and the workflow's state at the time.

import { api } from "../api.js";
import {
  badge, clear, copyable, emptyState, errorBox, formatCost, formatDuration, formatNumber,
  formatTime, h, jsonTree, pageHeader, table,
} from "../ui.js";

const ms = (iso) => (iso ? new Date(iso).getTime() : NaN);
const spanDuration = (s) => s.duration ?? s.durationMs ?? (ms(s.endTime) - ms(s.startTime) || 0);
const isError = (s) => s.status === "error" || Boolean(s.error);

// Depth-first rows with offsets from the execution's start; spans without times follow the
// previous sibling (or start with their parent).
export function flattenSpans(spans, origin) {
  const rows = [];
  function walk(list, depth, parentStart) {
    let cursor = parentStart;
    for (const span of list || []) {
      if (!span || typeof span !== "object") continue;
      const start = Number.isFinite(ms(span.startTime)) ? ms(span.startTime) - origin : cursor;
      const duration = Math.max(0, Number(spanDuration(span)) || 0);
      rows.push({ span, depth, start, duration });
      cursor = start + duration;
      walk(span.children, depth + 1, start);
    }
  }
  walk(spans, 0, 0);
  return rows;
}

function spanPanel(panel, span) {
  const tokens = span.tokens || {};
  clear(panel,
    h("h2", { id: "span-title" }, span.name || "Span"),
    h("dl", { class: "meta" },
      h("dt", {}, "Type"), h("dd", {}, span.type || "—"),
      h("dt", {}, "Status"), h("dd", {}, isError(span) ? badge("error", "error") : badge(span.status || "success", "ok")),
      h("dt", {}, "Started"), h("dd", {}, formatTime(span.startTime)),
      h("dt", {}, "Duration"), h("dd", {}, formatDuration(spanDuration(span))),
      span.model ? [h("dt", {}, "Model"), h("dd", {}, span.model)] : null,
      span.cost !== undefined ? [h("dt", {}, "Cost"), h("dd", {}, formatCost(typeof span.cost === "object" ? span.cost.total : span.cost))] : null,
      tokens.total !== undefined ? [h("dt", {}, "Tokens"), h("dd", {}, `${formatNumber(tokens.prompt)} in / ${formatNumber(tokens.completion)} out`)] : null),
    span.error ? h("div", { class: "error-box" }, h("strong", {}, "Error"), h("p", {}, typeof span.error === "string" ? span.error : JSON.stringify(span.error))) : null,
    h("h3", {}, "Input"), span.input === undefined ? h("p", { class: "muted" }, "No input recorded.") : jsonTree(span.input, { openDepth: 2, name: "input" }),
    h("h3", {}, "Output"), span.output === undefined ? h("p", { class: "muted" }, "No output recorded.") : jsonTree(span.output, { openDepth: 2, name: "output" }));
}

function waterfall(spans, origin, total) {
  const rows = flattenSpans(spans, origin);
  const end = Math.max(total || 0, ...rows.map((r) => r.start + r.duration), 1);
  const panel = h("aside", { class: "span-panel card", "aria-labelledby": "span-title", "aria-live": "polite" },
    h("h2", { id: "span-title" }, "Span details"), h("p", { class: "muted" }, "Choose a span to see its input and output."));
  const buttons = rows.map(({ span, depth, start, duration }) => {
    const bar = h("span", { class: `wf-bar${isError(span) ? " error" : ""}`,
      style: { left: `${(100 * start) / end}%`, width: `${Math.max((100 * duration) / end, 0.4)}%` } });
    const button = h("button", { type: "button", class: `wf-row${isError(span) ? " error" : ""}`, "aria-pressed": "false" },
      h("span", { class: "wf-name", style: { paddingLeft: `${depth * 16}px` } },
        isError(span) ? h("span", { class: "wf-error" }, h("span", { "aria-hidden": "true" }, "⚠ "), "Error: ") : null,
        span.name || "(unnamed)", span.type ? h("span", { class: "muted small" }, ` ${span.type}`) : null),
      h("span", { class: "wf-track" }, bar),
      h("span", { class: "wf-dur" }, formatDuration(duration)));
    button.addEventListener("click", () => {
      for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
      spanPanel(panel, span);
    });
    return button;
  });
  buttons.forEach((button, i) => button.addEventListener("keydown", (event) => {
    const to = { ArrowDown: i + 1, ArrowUp: i - 1 }[event.key];
    if (to !== undefined && buttons[to]) { event.preventDefault(); buttons[to].focus(); }
  }));
  return h("div", { class: "waterfall-wrap" },
    h("div", { class: "waterfall", role: "group", "aria-label": `Trace spans (${rows.length}), total ${formatDuration(end)}` },
      h("div", { class: "wf-head muted small" }, h("span", {}, "Span"), h("span", {}, `0 → ${formatDuration(end)}`), h("span", {}, "Duration")),
      buttons),
    panel);
}

function costTable(cost) {
  const models = Object.entries((cost && cost.models) || {});
  if (!models.length) return h("p", { class: "muted" }, `Total ${formatCost(cost && cost.total)}; no per-model breakdown.`);
  const t = (m) => m.tokens || {};
  return table([
    { label: "Model", cell: ([name]) => h("code", {}, name) },
    { label: "Input", class: "num", cell: ([, m]) => formatCost(m.input) },
    { label: "Output", class: "num", cell: ([, m]) => formatCost(m.output) },
    { label: "Total", class: "num", cell: ([, m]) => formatCost(m.total) },
    { label: "Prompt tokens", class: "num", cell: ([, m]) => formatNumber(t(m).prompt) },
    { label: "Completion tokens", class: "num", cell: ([, m]) => formatNumber(t(m).completion) },
    { label: "Total tokens", class: "num", cell: ([, m]) => formatNumber(t(m).total) },
  ], models, { caption: "Cost and tokens per model" });
}

function notFound(ctx, err) {
  clear(ctx.root, pageHeader("Execution not found"),
    emptyState("No such execution", `Nothing in this project has the execution ID “${ctx.params.executionId}”. It may belong to another project, or not be stored yet.`,
      err && err.requestId ? h("p", { class: "request-id" }, "Request ID: ", h("code", {}, err.requestId)) : null,
      h("p", {}, h("a", { href: "/logs" }, "Back to logs"))));
}

export async function render(ctx) {
  const id = ctx.params.executionId;
  const { signal } = ctx;
  let list;
  let view;
  try {
    [list, view] = await Promise.all([
      api.list("/api/v1/logs", { executionId: id, details: "full", includeTraceSpans: "true",
        includeFinalOutput: "true", limit: 1 }, { signal }),
      api.get(`/api/v1/logs/executions/${encodeURIComponent(id)}`, undefined, { signal })
        .catch((err) => (err.status === 404 ? null : Promise.reject(err))),
    ]);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    if (err.status === 404) return notFound(ctx, err);
    clear(ctx.root, pageHeader("Execution"), errorBox(err, "The execution could not be loaded"));
    return;
  }
  const log = (list.data || [])[0];
  if (!log) return notFound(ctx, { requestId: list.requestId });
  const data = log.executionData || {};
  const workflowId = log.workflowId;
  const name = (log.workflow && log.workflow.name) || workflowId;
  const tokens = (log.cost && log.cost.tokens) || {};
  clear(ctx.root,
    pageHeader(`Execution of ${name}`,
      h("a", { class: "button", href: `/logs?workflowIds=${encodeURIComponent(workflowId)}` }, "Logs of this workflow"),
      h("a", { class: "button primary", href: `/notifications/new?workflowIds=${encodeURIComponent(workflowId)}` }, "Alert on this workflow")),
    h("section", { class: "card exec-meta", "aria-label": "Execution details" },
      h("dl", { class: "meta" },
        h("dt", {}, "Execution ID"), h("dd", {}, copyable(log.executionId, "Copy execution ID")),
        h("dt", {}, "Workflow"), h("dd", {}, h("a", { href: `/workflows/${encodeURIComponent(workflowId)}` }, name), " ", copyable(workflowId, "Copy workflow ID")),
        h("dt", {}, "Log ID"), h("dd", {}, copyable(log.id, "Copy log ID")),
        h("dt", {}, "Level"), h("dd", {}, badge(log.level, log.level === "error" ? "error" : "ok")),
        h("dt", {}, "Trigger"), h("dd", {}, log.trigger),
        h("dt", {}, "Started"), h("dd", {}, formatTime(log.startedAt)),
        h("dt", {}, "Ended"), h("dd", {}, formatTime(log.endedAt)),
        h("dt", {}, "Duration"), h("dd", {}, formatDuration(log.totalDurationMs)),
        h("dt", {}, "Cost"), h("dd", {}, formatCost(log.cost && log.cost.total),
          tokens.total !== undefined ? h("span", { class: "muted" }, ` · ${formatNumber(tokens.total)} tokens`) : null))),
    h("h2", {}, "Cost and tokens per model"), costTable(log.cost),
    h("h2", {}, "Trace spans"),
    Array.isArray(data.traceSpans) && data.traceSpans.length
      ? waterfall(data.traceSpans, ms(log.startedAt), log.totalDurationMs)
      : h("p", { class: "muted" }, "This execution reported no trace spans."),
    h("h2", {}, "Final output"),
    data.finalOutput === undefined || data.finalOutput === null
      ? h("p", { class: "muted" }, "No final output.") : jsonTree(data.finalOutput, { openDepth: 2, name: "finalOutput" }),
    h("h2", {}, "Workflow state"),
    view && view.workflowState ? jsonTree(view.workflowState, { openDepth: 1, name: "workflowState" })
      : h("p", { class: "muted" }, "No workflow state was reported."));
}
