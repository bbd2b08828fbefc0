// Logs: every filter of GET /api/v1/logs as a labelled control whose value lives in the URL,
// rows that page in as you scroll (or with Load more), a live mode that follows new completions,
// client-side export, and the way to configure notifications from what is filtered.

import { api } from "../api.js";
import {
  badge, clear, errorBox, field, formatCost, formatDuration, formatNumber, formatTime, h, loading,
  menuButton, pageHeader, toast,
} from "../ui.js";

const PAGE = 100;
const EXPORT_CAP = 10_000;
const LIVE_MS = 2000;
const TRIGGERS = ["api", "webhook", "schedule", "manual", "chat"];

// [URL and API parameter, accessible name, kind, extra]
const FILTERS = [
  ["level", "Level", "select", [["", "Any level"], ["info", "Info"], ["error", "Error"]]],
  ["workflowIds", "Workflow", "workflow"],
  ["triggers", "Trigger", "text", { list: "log-triggers", placeholder: "api, schedule" }],
  ["executionId", "Execution ID", "text", {}],
  ["startDate", "Start date", "date"],
  ["endDate", "End date", "date"],
  ["minDurationMs", "Min duration (ms)", "number", { min: "0", step: "1" }],
  ["maxDurationMs", "Max duration (ms)", "number", { min: "0", step: "1" }],
  ["minCost", "Min cost", "number", { min: "0", step: "any" }],
  ["maxCost", "Max cost", "number", { min: "0", step: "any" }],
  ["model", "Model", "text", { placeholder: "gpt-4o" }],
  ["order", "Order", "select", [["", "Newest first"], ["asc", "Oldest first"]]],
];

const memo = { workflows: null, at: 0, project: null, refocus: null };

async function workflowList(ctx) {
  const project = ctx.project && ctx.project.projectId;
  if (memo.workflows && memo.project === project && Date.now() - memo.at < 60_000) return memo.workflows;
  const page = await api.list("/api/v1/workflows", { limit: 1000 }, { signal: ctx.signal });
  Object.assign(memo, { workflows: page.data || [], at: Date.now(), project });
  return memo.workflows;
}

// The API's query from the URL's: only the filters, nothing else the URL may carry.
export function logFilters(query) {
  const out = {};
  for (const [name] of FILTERS) if (query[name]) out[name] = query[name];
  return out;
}

const pad = (n) => String(n).padStart(2, "0");
function toLocalInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function control(ctx, [name, label, kind, extra], workflows) {
  const value = ctx.query[name] || "";
  let input;
  if (kind === "select" || kind === "workflow") {
    let options = extra;
    if (kind === "workflow") {
      options = [["", "All workflows"], ...workflows.map((w) => [w.id, w.name ? `${w.name} (${w.id})` : w.id])];
      if (value && !workflows.some((w) => w.id === value)) options.push([value, value]);
    }
    input = h("select", { name }, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
  } else if (kind === "date") {
    input = h("input", { type: "datetime-local", name, step: "1", value: value ? toLocalInput(value) : "" });
  } else {
    input = h("input", { type: kind === "number" ? "number" : "text", name, value, ...extra });
  }
  input.id = `log-filter-${name}`;
  input.addEventListener("change", () => {
    let next = input.value.trim();
    if (kind === "date" && next) {
      const d = new Date(next);
      next = Number.isNaN(d.getTime()) ? "" : d.toISOString();
    }
    memo.refocus = input.id;
    ctx.setQuery({ [name]: next });
  });
  return field(label, input);
}

function workflowName(id) {
  const w = memo.workflows && memo.workflows.find((x) => x.id === id);
  return (w && w.name) || id;
}

function cell(content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.append(content instanceof Node ? content : document.createTextNode(String(content ?? "—")));
  return td;
}

function rowOf(item, fresh) {
  const tr = document.createElement("tr");
  if (item.level === "error") tr.className = "row-error";
  if (fresh) tr.classList.add("row-new");
  tr.append(
    cell(formatTime(item.startedAt)),
    cell(badge(item.level, item.level === "error" ? "error" : "ok")),
    cell(h("a", { href: `/workflows/${encodeURIComponent(item.workflowId)}` }, workflowName(item.workflowId))),
    cell(item.trigger),
    cell(formatDuration(item.totalDurationMs), "num"),
    cell(formatCost(item.cost && item.cost.total), "num"),
    cell(h("a", { href: `/executions/${encodeURIComponent(item.executionId)}`, class: "mono" }, item.executionId)),
  );
  return tr;
}

function rowsFragment(items, fresh = false) {
  const fragment = document.createDocumentFragment();
  for (const item of items) fragment.append(rowOf(item, fresh));
  return fragment;
}

function csvValue(v) {
  const text = v === null || v === undefined ? "" : String(v);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

const CSV_COLUMNS = [
  ["id", (i) => i.id], ["executionId", (i) => i.executionId], ["workflowId", (i) => i.workflowId],
  ["level", (i) => i.level], ["trigger", (i) => i.trigger], ["startedAt", (i) => i.startedAt],
  ["endedAt", (i) => i.endedAt], ["totalDurationMs", (i) => i.totalDurationMs],
  ["costTotal", (i) => i.cost && i.cost.total],
];

async function exportLogs(format, filters, status, signal) {
  const items = [];
  const progress = h("progress", { max: EXPORT_CAP, value: 0, "aria-label": "Export progress" });
  const text = h("span", {}, "Starting export…");
  clear(status, progress, " ", text);
  let cursor;
  do {
    const page = await api.list("/api/v1/logs", { ...filters, limit: 1000, cursor }, { signal });
    items.push(...(page.data || []).slice(0, EXPORT_CAP - items.length));
    progress.value = items.length;
    text.textContent = `${formatNumber(items.length)} rows (up to ${formatNumber(EXPORT_CAP)})`;
    cursor = page.hasMore ? page.nextCursor : null;
  } while (cursor && items.length < EXPORT_CAP);
  const body = format === "csv"
    ? [CSV_COLUMNS.map(([n]) => n).join(","),
      ...items.map((i) => CSV_COLUMNS.map(([, get]) => csvValue(get(i))).join(","))].join("\r\n") + "\r\n"
    : items.map((i) => JSON.stringify(i)).join("\n") + (items.length ? "\n" : "");
  const blob = new Blob([body], { type: format === "csv" ? "text/csv" : "application/x-ndjson" });
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: `logs-${new Date().toISOString().slice(0, 19).replaceAll(":", "")}.${format === "csv" ? "csv" : "ndjson"}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  const capped = items.length >= EXPORT_CAP && cursor ? ` (capped at ${formatNumber(EXPORT_CAP)})` : "";
  text.textContent = `Exported ${formatNumber(items.length)} rows as ${format.toUpperCase()}${capped}.`;
  progress.remove();
}

export async function render(ctx) {
  const filters = logFilters(ctx.query);
  const { signal } = ctx;
  const controller = new AbortController();
  signal.addEventListener("abort", () => controller.abort());
  // The first page is asked for at once, beside the workflow list (the filters' options).
  let firstPage = api.list("/api/v1/logs", { ...filters, limit: PAGE }, { signal: controller.signal });
  firstPage.catch(() => {}); // settled by next(), which shows the error
  const workflows = await workflowList(ctx).catch((err) => {
    if (err.name === "AbortError") throw err;
    return [];
  });
  const form = h("form", { class: "filters", "aria-label": "Log filters", onsubmit: (e) => e.preventDefault() },
    FILTERS.map((f) => control(ctx, f, workflows)),
    h("datalist", { id: "log-triggers" }, TRIGGERS.map((t) => h("option", { value: t }))),
    Object.keys(filters).length
      ? h("button", { type: "button", class: "button ghost", onclick: () =>
        ctx.setQuery(Object.fromEntries(FILTERS.map(([n]) => [n, ""]))) }, "Clear filters")
      : null);

  const status = h("p", { class: "muted small", role: "status", "aria-live": "polite" });
  const exportStatus = h("div", { class: "export-status", "aria-live": "polite" });
  const tbody = h("tbody");
  const tableEl = h("table", { class: "table logs-table" },
    h("caption", { class: "visually-hidden" }, "Logs"),
    h("thead", {}, h("tr", {}, ["Started", "Level", "Workflow", "Trigger", "Duration", "Cost", "Execution"]
      .map((label, i) => h("th", { scope: "col", class: i === 4 || i === 5 ? "num" : null }, label)))),
    tbody);
  const results = h("div", { class: "logs-results" }, loading("Loading logs…"));
  const loadMore = h("button", { type: "button", class: "button", hidden: true }, "Load more");
  const sentinel = h("div", { class: "sentinel", "aria-hidden": "true" });
  const live = h("button", { type: "button", class: "button live-toggle", "aria-pressed": "false" },
    h("span", { class: "live-dot", "aria-hidden": "true" }), "Live");
  const exportTo = (format) => exportLogs(format, filters, exportStatus, controller.signal)
    .catch((err) => { if (err.name !== "AbortError") clear(exportStatus, errorBox(err, "Export failed")); });
  const more = menuButton("More", [
    { label: "Configure notifications", onSelect: () => ctx.navigate(
      `/notifications/new?from=logs${filters.workflowIds ? `&workflowIds=${encodeURIComponent(filters.workflowIds)}` : ""}`) },
    { label: `Export NDJSON (up to ${formatNumber(EXPORT_CAP)} rows)`, onSelect: () => exportTo("ndjson") },
    { label: `Export CSV (up to ${formatNumber(EXPORT_CAP)} rows)`, onSelect: () => exportTo("csv") },
  ]);

  clear(ctx.root, pageHeader("Logs", live, more), form, exportStatus, status, results);
  if (memo.refocus) document.getElementById(memo.refocus)?.focus();
  memo.refocus = null;

  const state = { cursor: null, busy: false, shown: 0, done: false };
  function showCount() {
    status.textContent = `${formatNumber(state.shown)} ${state.shown === 1 ? "log" : "logs"} shown${state.done ? "" : "; more below"}.`;
  }
  async function next() {
    if (state.busy || state.done) return;
    state.busy = true;
    loadMore.disabled = true;
    try {
      const request = firstPage || api.list("/api/v1/logs",
        { ...filters, limit: PAGE, cursor: state.cursor || undefined }, { signal: controller.signal });
      firstPage = null;
      const page = await request;
      const items = page.data || [];
      if (!state.shown && !items.length) {
        clear(results, h("div", { class: "empty-state" }, h("h2", {}, "No logs match"),
          h("p", {}, Object.keys(filters).length ? "Try fewer filters." : "Executions appear here once reported.")));
      } else {
        if (!state.shown) clear(results, tableEl, loadMore, sentinel);
        tbody.append(rowsFragment(items));
      }
      state.shown += items.length;
      state.cursor = page.nextCursor;
      state.done = !page.hasMore || !page.nextCursor;
      loadMore.hidden = state.done;
      showCount();
    } catch (err) {
      if (err.name === "AbortError") return;
      (state.shown ? status : results).replaceChildren(errorBox(err, "Logs could not be loaded"));
      state.done = true;
    } finally {
      state.busy = false;
      loadMore.disabled = false;
    }
  }
  loadMore.addEventListener("click", next);
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) next();
  }, { rootMargin: "400px" });
  observer.observe(sentinel);

  // Live: find the resume point of completions (order=asc), then poll it and prepend.
  const follow = { on: false, timer: null, cursor: null, added: 0 };
  const liveFilters = { ...filters, order: "asc" };
  async function poll() {
    try {
      const page = await api.list("/api/v1/logs", { ...liveFilters, limit: PAGE, cursor: follow.cursor },
        { signal: controller.signal });
      if (!follow.on) return;
      follow.cursor = page.nextCursor || follow.cursor;
      const items = page.data || [];
      if (items.length) {
        if (!tbody.isConnected) clear(results, tableEl, loadMore, sentinel);
        tbody.prepend(rowsFragment(items.reverse(), true));
        follow.added += items.length;
        state.shown += items.length;
      }
      status.textContent = `Live: following new executions every ${LIVE_MS / 1000} s; ${formatNumber(follow.added)} new.`;
      follow.timer = setTimeout(poll, page.hasMore ? 0 : LIVE_MS);
    } catch (err) {
      if (err.name === "AbortError") return;
      stopLive();
      toast(`Live mode stopped: ${err.message}`, "error");
    }
  }
  async function startLive() {
    follow.on = true;
    live.setAttribute("aria-pressed", "true");
    status.textContent = "Live: catching up…";
    if (!liveFilters.startDate) liveFilters.startDate = new Date(Date.now() - 3600_000).toISOString();
    try {
      let page;
      let cursor;
      for (let i = 0; i < 20; i += 1) { // skip what is already listed below
        page = await api.list("/api/v1/logs", { ...liveFilters, limit: 1000, cursor }, { signal: controller.signal });
        cursor = page.nextCursor;
        if (!page.hasMore) break;
      }
      if (!follow.on) return;
      follow.cursor = cursor;
      poll();
    } catch (err) {
      if (err.name === "AbortError") return;
      stopLive();
      toast(`Live mode could not start: ${err.message}`, "error");
    }
  }
  function stopLive() {
    follow.on = false;
    clearTimeout(follow.timer);
    live.setAttribute("aria-pressed", "false");
    showCount();
  }
  live.addEventListener("click", () => (follow.on ? stopLive() : startLive()));

  await next();
  return () => {
    follow.on = false;
    clearTimeout(follow.timer);
    observer.disconnect();
    controller.abort();
  };
}
