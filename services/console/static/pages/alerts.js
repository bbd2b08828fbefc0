// Alerts, until they are a resource of their own: the recent notifications of the subscriptions
// that have an alert rule, read from their delivery logs, newest first; then the Silences.
import { api } from "../api.js";
import {
  clear, emptyState, errorBox, formatTime, h, loading, pageHeader, table,
} from "../ui.js";
import {
  bounded, describeRule, describeTarget, eventLabel, outcomeBadge, ruleOf, typeLabel,
} from "./subscriptions.js";
import { silencesSection } from "./silences.js";

const PER_SUBSCRIPTION = 25;
const AT_ONCE = 4;

export async function render(ctx) {
  const canWrite = ctx.project && ctx.project.role !== "viewer";
  const listSlot = h("div", {}, loading("Reading the delivery logs of alert subscriptions…"));
  clear(ctx.root,
    pageHeader("Alerts", canWrite ? h("a", { class: "button", href: "/notifications/new" }, "New alert rule") : null),
    h("p", { class: "muted lead", role: "note" },
      "Recent alert notifications, read from the delivery logs of subscriptions with a rule; acknowledgement comes with alert history."),
    listSlot,
    silencesSection(ctx, canWrite));

  let subs;
  try {
    subs = await allSubscriptions(ctx.signal);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    clear(listSlot, errorBox(err, "The notifications could not be loaded"));
    return;
  }
  const alerting = subs.filter((s) => s.alertConfig);
  if (!alerting.length) {
    clear(listSlot, emptyState("No alert rules yet",
      "An alert rule notifies you when something goes wrong instead of on every execution: 3 failures in a row, an error rate above 20% over an hour, an execution slower than 30 s, a workflow silent for a day.",
      canWrite ? h("a", { class: "button primary", href: "/notifications/new" }, "Create an alert rule")
        : h("p", { class: "muted" }, "Viewers cannot change notifications; ask a member or owner.")));
    return;
  }
  const results = await bounded(alerting, AT_ONCE, async (sub) => {
    const page = await api.list(`/api/v1/notifications/${encodeURIComponent(sub.id)}/deliveries`,
      { limit: PER_SUBSCRIPTION }, { signal: ctx.signal });
    return page.data.map((delivery) => ({ sub, delivery }));
  });
  const failures = results.filter((r) => r.error);
  const rows = results.flatMap((r) => r.value || [])
    .sort((a, b) => b.delivery.createdAt.localeCompare(a.delivery.createdAt));
  const columns = [
    { label: "Time", cell: (r) => formatTime(r.delivery.createdAt) },
    { label: "Rule", cell: (r) => h("span", { class: "stack" },
      h("strong", {}, (ruleOf(r.sub.alertConfig.rule) || { label: r.sub.alertConfig.rule }).label),
      h("span", { class: "muted small" }, describeRule(r.sub.alertConfig))) },
    { label: "Event", cell: (r) => eventLabel(r.delivery.eventType) },
    { label: "Workflow", cell: (r) => workflowCell(r.sub) },
    { label: "Sent to", cell: (r) => h("span", { class: "stack" },
      h("a", { href: `/notifications/${encodeURIComponent(r.sub.id)}` }, `${typeLabel(r.sub.notificationType)} ${r.sub.id}`),
      h("span", { class: "muted small" }, describeTarget(r.sub))) },
    { label: "Status", cell: (r) => outcomeBadge(r.delivery.status) },
  ];
  clear(listSlot,
    failures.map((f) => errorBox(f.error, "A delivery log could not be read")),
    rows.length ? table(columns, rows, { caption: "Recent alert notifications" })
      : emptyState("No alerts sent yet",
        `${alerting.length} subscription${alerting.length === 1 ? " has" : "s have"} an alert rule and none has fired. Use “Send test” on a notification to check that its destination receives.`),
    rows.length ? h("p", { class: "muted small" },
      `The latest ${PER_SUBSCRIPTION} deliveries of each alert subscription, test sends included; the delivery log does not name the workflow or execution of each alert, so they are shown when a subscription watches a single workflow.`) : null);
}

function workflowCell(sub) {
  if (sub.allWorkflows || (sub.workflowIds || []).length !== 1) {
    return h("span", { class: "muted" }, sub.allWorkflows ? "any workflow" : `one of ${sub.workflowIds.length}`);
  }
  const id = sub.workflowIds[0];
  return h("a", { href: `/workflows/${encodeURIComponent(id)}` }, id);
}

async function allSubscriptions(signal) {
  const subs = [];
  let cursor = null;
  do {
    const page = await api.list("/api/v1/notifications", { limit: 100, cursor }, { signal });
    subs.push(...page.data);
    cursor = page.hasMore ? page.nextCursor : null;
  } while (cursor);
  return subs;
}
