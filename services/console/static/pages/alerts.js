// Alerts: firing and recent alerts from GET /api/v1/alerts (one row per alert episode, newest
// first, state filter in the URL), with Acknowledge for members and owners; then the Silences.
import { api } from "../api.js";
import {
  badge, clear, emptyState, errorBox, formatTime, h, loadMoreButton, loading, pageHeader, table,
  toast,
} from "../ui.js";
import { ruleOf } from "./subscriptions.js";
import { silencesSection } from "./silences.js";

const STATES = [["", "Any state"], ["firing", "Firing"], ["resolved", "Resolved"]];
const PAGE = 50;

export async function render(ctx) {
  const canWrite = ctx.project && ctx.project.role !== "viewer";
  const state = STATES.some(([v]) => v && v === ctx.query.state) ? ctx.query.state : "";
  const listSlot = h("div", {}, loading("Loading alerts…"));
  const moreSlot = h("div", { class: "load-more" });
  const filter = h("select", { name: "state", "aria-label": "Alert state" },
    STATES.map(([value, label]) => h("option", { value, selected: value === state }, label)));
  filter.addEventListener("change", () => ctx.setQuery({ state: filter.value }, { replace: true }));
  clear(ctx.root,
    pageHeader("Alerts", canWrite ? h("a", { class: "button", href: "/notifications/new" }, "New alert rule") : null),
    h("p", { class: "muted lead", role: "note" },
      "Each alert is one episode of a rule for one workflow, from its first notification until the condition clears. Acknowledging one stops its repeat notifications; its resolve is still sent."),
    h("div", { class: "filters" }, filter),
    listSlot, moreSlot,
    silencesSection(ctx, canWrite));

  const rows = [];
  let cursor = null;
  const columns = [
    { label: "State", cell: (a) => h("span", { class: "stack" },
      badge(a.state, a.state === "firing" ? "error" : "ok"),
      a.acknowledged ? badge("acknowledged", "neutral") : null,
      a.silenced ? badge("silenced", "muted") : null) },
    { label: "Rule", cell: (a) => h("span", { class: "stack" },
      h("strong", {}, (ruleOf(a.rule) || { label: a.rule }).label),
      h("span", { class: "muted small" }, a.reason)) },
    { label: "Workflow", cell: (a) => h("span", { class: "stack" },
      h("a", { href: `/workflows/${encodeURIComponent(a.workflowId)}` }, a.workflowId),
      a.executionId ? h("a", { class: "mono small", href: `/executions/${encodeURIComponent(a.executionId)}` },
        a.executionId) : null) },
    { label: "Fired", cell: (a) => formatTime(a.firedAt) },
    { label: "Resolved", cell: (a) => a.resolvedAt ? formatTime(a.resolvedAt) : h("span", { class: "muted" }, "—") },
    { label: "Notifications", class: "num", cell: (a) => h("span", { class: "stack" }, String(a.notificationCount),
      a.lastNotifiedAt ? h("span", { class: "muted small" }, `last ${formatTime(a.lastNotifiedAt)}`) : null) },
    { label: "Sent by", cell: (a) => h("a", { href: `/notifications/${encodeURIComponent(a.subscriptionId)}` }, a.subscriptionId) },
    { label: "", cell: (a) => ackCell(a) },
  ];

  function ackCell(alert) {
    if (alert.acknowledged) {
      return alert.acknowledgedBy ? h("span", { class: "muted small" }, `by ${alert.acknowledgedBy}`) : null;
    }
    if (!canWrite || alert.state !== "firing") return null;
    const button = h("button", { type: "button", class: "button small" }, "Acknowledge");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const acked = await api.send("POST", `/api/v1/alerts/${encodeURIComponent(alert.id)}/acknowledge`,
          undefined, { signal: ctx.signal });
        Object.assign(alert, acked);
        toast("Alert acknowledged: no more repeats until it resolves.");
        draw();
      } catch (err) {
        if (err.name === "AbortError") return;
        button.disabled = false;
        toast(err.message || "The alert was not acknowledged", "error");
      }
    });
    return button;
  }

  function draw() {
    if (!rows.length) {
      clear(listSlot, emptyState(state ? `No ${state} alerts` : "No alerts yet",
        "An alert appears here when a notification subscription with an alert rule fires: 3 failures in a row, an error rate above a threshold, a slow or silent workflow.",
        canWrite ? h("a", { class: "button primary", href: "/notifications/new" }, "Create an alert rule") : null));
    } else {
      clear(listSlot, table(columns, rows, { caption: state ? `${state[0].toUpperCase()}${state.slice(1)} alerts` : "Alerts" }));
    }
    clear(moreSlot, cursor ? loadMoreButton(load) : null);
  }

  async function load() {
    const page = await api.list("/api/v1/alerts", { state: state || undefined, limit: PAGE, cursor },
      { signal: ctx.signal });
    rows.push(...page.data);
    cursor = page.hasMore ? page.nextCursor : null;
    draw();
  }

  try {
    await load();
  } catch (err) {
    if (err.name === "AbortError") throw err;
    clear(listSlot, errorBox(err, "The alerts could not be loaded"));
  }
}
