// Workflows seen in events: executions, last run and the error rate of the last 7 days.

import { api } from "../api.js";
import {
  clear, emptyState, errorBox, formatNumber, formatPercent, formatTime, h, loading, pageHeader,
  table, tableRow,
} from "../ui.js";

const PAGE = 50;

export async function render(ctx) {
  const { signal } = ctx;
  const [first, stats] = await Promise.all([
    api.list("/api/v1/workflows", { limit: PAGE }, { signal }),
    api.get("/api/v1/stats", { range: "7d" }, { signal }).catch((err) =>
      (err.name === "AbortError" ? Promise.reject(err) : null)),
  ]).catch((err) => {
    if (err.name === "AbortError") throw err;
    clear(ctx.root, pageHeader("Workflows"), errorBox(err, "Workflows could not be loaded"));
    return [];
  });
  if (!first) return;
  const rates = new Map(((stats && stats.workflows) || []).map((w) => [w.workflowId, w]));
  if (!(first.data || []).length) {
    clear(ctx.root, pageHeader("Workflows"), emptyState("No workflows yet",
      "A workflow appears here once one of its executions is reported.", h("a", { href: "/" }, "How to send an event")));
    return;
  }
  const columns = [
    { label: "Name", cell: (w) => h("a", { href: `/workflows/${encodeURIComponent(w.id)}` }, w.name || w.id) },
    { label: "ID", cell: (w) => h("code", {}, w.id) },
    { label: "Executions", class: "num", cell: (w) => formatNumber(w.executionCount) },
    { label: "Last run", cell: (w) => formatTime(w.lastExecutionAt) },
    { label: "Error rate (7 d)", class: "num", cell: (w) => (rates.has(w.id) ? formatPercent(rates.get(w.id).errorRate) : "—") },
  ];
  const tableEl = table(columns, first.data, { caption: "Workflows" });
  const tbody = tableEl.querySelector("tbody");
  const more = h("button", { type: "button", class: "button", hidden: !first.hasMore }, "Load more");
  const status = h("div", { "aria-live": "polite" });
  let cursor = first.nextCursor;
  more.addEventListener("click", async () => {
    more.disabled = true;
    clear(status, loading());
    try {
      const page = await api.list("/api/v1/workflows", { limit: PAGE, cursor }, { signal });
      const fragment = document.createDocumentFragment();
      for (const w of page.data || []) fragment.append(tableRow(columns, w));
      tbody.append(fragment);
      cursor = page.nextCursor;
      more.hidden = !page.hasMore;
      clear(status);
    } catch (err) {
      if (err.name !== "AbortError") clear(status, errorBox(err, "More workflows could not be loaded"));
    } finally {
      more.disabled = false;
    }
  });
  clear(ctx.root, pageHeader("Workflows"),
    stats ? null : h("p", { class: "muted small" }, "Error rates are unavailable right now."),
    tableEl, status, h("p", {}, more));
}
