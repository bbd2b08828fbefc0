// One notification subscription: its settings, a test send, and its delivery log with every
// attempt (status, response, timing) and redelivery; its health and recovery of failed deliveries.
import { api } from "../api.js";
import {
  badge, clear, emptyState, errorBox, field, formatDuration, formatTime, h, loading, loadMoreButton,
  pageHeader, readOnlyNote, table, toast,
} from "../ui.js";
import {
  describeFilters, describeHealth, describeRule, describeTarget, describeWorkflows, eventLabel,
  outcomeBadge, sendTest, testResult, typeLabel,
} from "./subscriptions.js";

const STATUSES = ["delivered", "retrying", "failed"];

export async function render(ctx) {
  const canWrite = ctx.project && ctx.project.role !== "viewer";
  const id = ctx.params.id;
  const base = `/api/v1/notifications/${encodeURIComponent(id)}`;
  let sub;
  try {
    sub = await api.get(base, undefined, { signal: ctx.signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    clear(ctx.root, pageHeader("Notification"), errorBox(err, "The notification could not be loaded"),
      h("p", {}, h("a", { href: "/notifications" }, "All notifications")));
    return;
  }
  const status = STATUSES.includes(ctx.query.status) ? ctx.query.status : "";
  const state = { deliveries: [], cursor: null };
  const testSlot = h("div", { class: "test-result", "aria-live": "polite" });
  const listSlot = h("div", { class: "deliveries" }, loading("Loading deliveries…"));
  const moreSlot = h("div", { class: "load-more" });
  const notice = h("div", { "aria-live": "polite" });

  const testButton = h("button", { type: "button", class: "button", disabled: !canWrite }, "Send test");
  testButton.addEventListener("click", async () => {
    testButton.disabled = true;
    try {
      const done = await sendTest(sub, ctx.signal, (result) => clear(testSlot, testResult(result)));
      if (done) await reload();
    } catch (err) {
      if (err.name !== "AbortError") clear(testSlot, errorBox(err, "The test was not sent"));
    } finally {
      testButton.disabled = !canWrite;
    }
  });
  const edit = canWrite ? h("a", { class: "button", href: `/notifications/${encodeURIComponent(id)}/edit` }, "Edit") : null;

  const settings = h("section", { class: "card" }, h("h2", {}, "Settings"),
    h("dl", { class: "meta" },
      h("dt", {}, "Type"), h("dd", {}, typeLabel(sub.notificationType)),
      h("dt", {}, "Target"), h("dd", {}, describeTarget(sub)),
      sub.notificationType === "webhook" ? [h("dt", {}, "Signing secret"),
        h("dd", {}, sub.webhookConfig && sub.webhookConfig.hasSecret ? "Set (never shown)" : "None")] : null,
      h("dt", {}, "State"), h("dd", {}, sub.active ? badge("active", "ok") : badge("disabled", "neutral"),
        sub.disabledReason ? ` ${sub.disabledReason}` : ""),
      h("dt", {}, "Health"), h("dd", {}, describeHealth(sub.health),
        sub.health && sub.health.lastSuccessAt ? h("span", { class: "muted small" }, " Last success ", formatTime(sub.health.lastSuccessAt)) : null),
      h("dt", {}, "Workflows"), h("dd", {}, describeWorkflows(sub)),
      h("dt", {}, "Levels; triggers"), h("dd", {}, describeFilters(sub)),
      h("dt", {}, "Rule"), h("dd", {}, describeRule(sub.alertConfig)),
      h("dt", {}, "Includes"), h("dd", {}, includes(sub)),
      h("dt", {}, "Created"), h("dd", {}, formatTime(sub.createdAt)),
      h("dt", {}, "Updated"), h("dd", {}, formatTime(sub.updatedAt))));
  const testCard = h("section", { class: "card" }, h("h2", {}, "Test"),
    h("p", { class: "muted" }, "Sends a sample event (marked test) to the destination now; it appears in the delivery log below."),
    testButton, testSlot);

  // Recover: send again every delivery that ended failed since a time (the same delivery ids).
  const since = h("input", { type: "datetime-local", name: "since", step: "1", required: true,
    value: toLocalInput(new Date(Date.now() - 24 * 3600 * 1000)) });
  const recoverSlot = h("div", { class: "recover-result", "aria-live": "polite" });
  const recoverButton = h("button", { type: "submit", class: "button", disabled: !canWrite }, "Recover");
  const recoverForm = h("form", { class: "stack" }, field("Since", since), recoverButton, recoverSlot);
  recoverForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const from = new Date(since.value);
    if (Number.isNaN(from.getTime())) return;
    recoverButton.disabled = true;
    try {
      const done = await api.send("POST", `${base}/recover`, { since: from.toISOString() }, { signal: ctx.signal });
      clear(recoverSlot, h("p", {}, `${done.deliveries} failed deliver${done.deliveries === 1 ? "y" : "ies"} queued again.`));
      setTimeout(() => reload().catch(() => {}), 1500);
    } catch (err) {
      if (err.name !== "AbortError") clear(recoverSlot, errorBox(err, "The failed deliveries were not queued again"));
    } finally {
      recoverButton.disabled = !canWrite;
    }
  });
  const recoverCard = h("section", { class: "card" }, h("h2", {}, "Recover failed deliveries"),
    h("p", { class: "muted" }, "Sends again every delivery that ended failed since this time (at most 1,000 at once), under the same delivery ids."),
    recoverForm);

  const filter = h("select", { name: "status" }, h("option", { value: "" }, "Any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  filter.addEventListener("change", () => ctx.setQuery({ status: filter.value }, { replace: true }));

  async function redeliver(delivery, button) {
    button.disabled = true;
    try {
      const queued = await api.send("POST", `/api/v1/deliveries/${encodeURIComponent(delivery.id)}/redeliver`,
        undefined, { signal: ctx.signal });
      toast(`Delivery ${queued.deliveryId} queued again.`);
      clear(notice);
      setTimeout(() => reload().catch(() => {}), 1500);
    } catch (err) {
      if (err.name !== "AbortError") clear(notice, errorBox(err, "The delivery was not queued again"));
    } finally {
      button.disabled = !canWrite;
    }
  }

  function attemptsTable(delivery) {
    return table([
      { label: "Round", cell: (a) => a.round === 0 ? "first" : h("span", { title: `round ${a.round}` }, "redelivery") },
      { label: "Attempt", cell: (a) => String(a.attempt), class: "num" },
      { label: "Outcome", cell: (a) => outcomeBadge(a.outcome) },
      { label: "At", cell: (a) => formatTime(a.attemptedAt) },
      { label: "Took", cell: (a) => formatDuration(a.durationMs), class: "num" },
      { label: "Response", cell: (a) => h("div", { class: "stack" },
        a.responseCode !== null ? h("strong", {}, `HTTP ${a.responseCode}`) : null,
        a.error ? h("span", { class: "muted" }, a.error) : null,
        a.responseBody ? h("pre", { class: "response-body" }, a.responseBody) : null,
        a.nextAttemptAt ? h("span", { class: "muted small" }, "Next attempt ", formatTime(a.nextAttemptAt)) : null) },
    ], delivery.attempts, { caption: `Attempts of ${delivery.id}` });
  }

  function deliveryItem(delivery) {
    const button = h("button", { type: "button", class: "button small", disabled: !canWrite,
      "aria-label": `Redeliver ${delivery.id}` }, "Redeliver");
    button.addEventListener("click", (event) => { event.preventDefault(); redeliver(delivery, button); });
    const last = delivery.attempts[delivery.attempts.length - 1];
    return h("details", { class: "delivery" },
      h("summary", {}, outcomeBadge(delivery.status), h("strong", {}, eventLabel(delivery.eventType)),
        h("code", { class: "small" }, delivery.id), formatTime(delivery.createdAt),
        h("span", { class: "muted small" }, `${delivery.attempts.length} attempt${delivery.attempts.length === 1 ? "" : "s"}`,
          last && last.responseCode !== null ? `, last HTTP ${last.responseCode}` : ""),
        h("span", { class: "spacer" }), button),
      attemptsTable(delivery));
  }

  function draw() {
    if (!state.deliveries.length) {
      clear(listSlot, emptyState(status ? `No ${status} deliveries` : "No deliveries yet",
        "Every notification sent to this destination is logged here with each attempt. Use “Send test” to try the destination now."));
      return;
    }
    clear(listSlot, state.deliveries.map(deliveryItem));
  }

  async function loadPage() {
    const page = await api.list(`${base}/deliveries`, { limit: 20, cursor: state.cursor, status },
      { signal: ctx.signal });
    state.deliveries.push(...page.data);
    state.cursor = page.nextCursor;
    draw();
    clear(moreSlot, page.hasMore ? loadMoreButton(loadPage) : null);
  }

  async function reload() {
    state.deliveries = [];
    state.cursor = null;
    await loadPage();
  }

  clear(ctx.root,
    pageHeader(`${typeLabel(sub.notificationType)} notification`, edit,
      h("a", { class: "button ghost", href: "/notifications" }, "All notifications")),
    h("p", { class: "muted" }, h("code", {}, sub.id)),
    canWrite ? null : readOnlyNote("Viewers cannot change notifications."),
    h("div", { class: "detail-grid" }, settings, h("div", { class: "stack" }, testCard, recoverCard)),
    h("div", { class: "page-header" }, h("h2", {}, "Deliveries"), h("div", { class: "filters" }, field("Status", filter))),
    notice, listSlot, moreSlot);
  try {
    await loadPage();
  } catch (err) {
    if (err.name === "AbortError") throw err;
    clear(listSlot, errorBox(err, "The deliveries could not be loaded"));
  }
}

const pad = (n) => String(n).padStart(2, "0");
function toLocalInput(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function includes(sub) {
  const names = [["includeFinalOutput", "final output"], ["includeTraceSpans", "trace spans"],
    ["includeRateLimits", "rate limits"], ["includeUsageData", "usage"]]
    .filter(([name]) => sub[name]).map(([, label]) => label);
  return names.length ? names.join(", ") : "execution fields only";
}
