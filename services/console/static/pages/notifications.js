// Notifications: every subscription with where it goes, what it matches, its rule and its latest
// delivery and its health; enable/disable, test send, secret rotation and deletion in place.
import { api } from "../api.js";
import {
  badge, clear, confirmDialog, emptyState, errorBox, formatTime, h, loading, loadMoreButton,
  pageHeader, readOnlyNote, secretPanel, table, toast,
} from "../ui.js";
import {
  bounded, describeFilters, describeHealth, describeRule, describeTarget, describeWorkflows, outcomeBadge,
  sendTest, testResult, typeLabel,
} from "./subscriptions.js";

const LATEST_AT_ONCE = 4;

export async function render(ctx) {
  const canWrite = ctx.project && ctx.project.role !== "viewer";
  const state = { subs: [], latest: new Map(), cursor: null, hasMore: false };
  const notice = h("div", { "aria-live": "polite" });
  const listSlot = h("div", {}, loading("Loading notifications…"));
  const moreSlot = h("div", { class: "load-more" });
  const newButton = canWrite
    ? h("a", { class: "button primary", href: "/notifications/new" }, "New notification")
    : h("button", { type: "button", class: "button primary", disabled: true }, "New notification");

  const path = (sub, tail = "") => `/api/v1/notifications/${encodeURIComponent(sub.id)}${tail}`;

  async function setActive(sub) {
    try {
      const updated = await api.send("PATCH", path(sub), { active: !sub.active }, { signal: ctx.signal });
      Object.assign(sub, updated);
      toast(`${typeLabel(sub.notificationType)} notification ${sub.active ? "enabled" : "disabled"}.`);
      draw();
    } catch (err) {
      if (err.name !== "AbortError") clear(notice, errorBox(err, "The notification was not changed"));
    }
  }

  async function test(sub, cell) {
    clear(notice);
    try {
      await sendTest(sub, ctx.signal, (result) => {
        clear(cell, testResult(result));
        if (result.delivery) { state.latest.set(sub.id, { value: result.delivery }); }
      });
      draw();
    } catch (err) {
      if (err.name !== "AbortError") clear(cell, errorBox(err, "The test was not sent"));
    }
  }

  async function rotate(sub) {
    const ok = await confirmDialog({ title: "Rotate the signing secret?",
      text: "A new secret signs from now on; the old one keeps signing alongside it for 24 hours so that receivers can switch.",
      confirm: "Rotate secret" });
    if (!ok) return;
    try {
      const rotated = await api.send("POST", path(sub, "/rotate-secret"), undefined, { signal: ctx.signal });
      clear(notice, secretPanel("Signing secret", rotated.signingSecret,
        `Receivers of ${sub.id} verify the sim-signature header with it.`));
      notice.querySelector("h2").focus();
    } catch (err) {
      if (err.name !== "AbortError") clear(notice, errorBox(err, "The secret was not rotated"));
    }
  }

  async function remove(sub) {
    const ok = await confirmDialog({ title: "Delete this notification?",
      text: `${typeLabel(sub.notificationType)} to ${describeTargetText(sub)}: nothing more is delivered to it and its settings are gone. This cannot be undone.`,
      confirm: "Delete notification", danger: true });
    if (!ok) return;
    try {
      await api.send("DELETE", path(sub), undefined, { signal: ctx.signal });
      state.subs = state.subs.filter((s) => s.id !== sub.id);
      toast("Notification deleted.");
      draw();
    } catch (err) {
      if (err.name !== "AbortError") clear(notice, errorBox(err, "The notification was not deleted"));
    }
  }

  function describeTargetText(sub) {
    const target = describeTarget(sub);
    return typeof target === "string" ? target : target.textContent;
  }

  // A row's test result outlives redraws of the table.
  const results = new Map();
  function resultOf(sub) {
    if (!results.has(sub.id)) results.set(sub.id, h("div", { class: "test-result", "aria-live": "polite" }));
    return results.get(sub.id);
  }

  function latestCell(sub) {
    const latest = state.latest.get(sub.id);
    if (!latest) return h("span", { class: "muted" }, "…");
    if (latest.error) return h("span", { class: "muted", title: latest.error.message }, "Unavailable");
    const d = latest.value;
    if (!d) return h("span", { class: "muted" }, "No deliveries yet");
    return h("span", { class: "stack" }, outcomeBadge(d.status), formatTime(d.lastAttemptAt));
  }

  function actions(sub) {
    const result = resultOf(sub);
    const label = `${typeLabel(sub.notificationType)} ${sub.id}`;
    const buttons = h("div", { class: "row-actions" }, canWrite ? null
      : h("a", { class: "button small", href: `/notifications/${encodeURIComponent(sub.id)}`, "aria-label": `Details of ${label}` }, "Details"));
    if (canWrite) {
      const rotateButton = sub.notificationType === "webhook"
        ? h("button", { type: "button", class: "button small", "aria-label": `Rotate secret of ${label}`,
          onclick: () => rotate(sub) }, "Rotate secret") : null;
      buttons.append(...[
        h("a", { class: "button small", href: `/notifications/${encodeURIComponent(sub.id)}/edit`, "aria-label": `Edit ${label}` }, "Edit"),
        h("button", { type: "button", class: "button small", "aria-label": `${sub.active ? "Disable" : "Enable"} ${label}`,
          onclick: () => setActive(sub) }, sub.active ? "Disable" : "Enable"),
        h("button", { type: "button", class: "button small", "aria-label": `Send test to ${label}`,
          onclick: () => test(sub, result) }, "Send test"),
        rotateButton,
        h("button", { type: "button", class: "button small danger", "aria-label": `Delete ${label}`,
          onclick: () => remove(sub) }, "Delete")].filter(Boolean));
    }
    return h("div", {}, buttons, result);
  }

  function draw() {
    if (!state.subs.length) {
      clear(listSlot, emptyState("No notifications yet",
        "A notification sends completed executions or alerts to a webhook, an email address, Slack, PagerDuty, Microsoft Teams or Discord. Filter by workflow, level and trigger, or add a rule such as “3 failures in a row”.",
        canWrite ? h("a", { class: "button primary", href: "/notifications/new" }, "Create the first notification") : null));
      return;
    }
    const columns = [
      { label: "Type", cell: (s) => h("span", { class: "stack" }, h("strong", {}, typeLabel(s.notificationType)),
        h("a", { href: `/notifications/${encodeURIComponent(s.id)}`, class: "mono small",
          "aria-label": `Details of ${typeLabel(s.notificationType)} ${s.id}` }, s.id)) },
      { label: "Target", cell: describeTarget },
      { label: "Matches", cell: (s) => h("span", { class: "stack" }, describeWorkflows(s), h("span", { class: "muted small" }, describeFilters(s))) },
      { label: "Rule", cell: (s) => describeRule(s.alertConfig) },
      { label: "State", cell: (s) => h("span", { class: "stack" },
        s.active ? badge("active", "ok") : badge("disabled", "neutral"),
        !s.active && s.disabledReason ? h("span", { class: "muted small" }, s.disabledReason) : null) },
      { label: "Health", cell: (s) => describeHealth(s.health) },
      { label: "Latest delivery", cell: latestCell },
      { label: "Actions", cell: actions },
    ];
    clear(listSlot, table(columns, state.subs, { caption: "Notification subscriptions" }));
    listSlot.firstChild.classList.add("subscriptions");
  }

  async function loadLatest(subs) {
    const results = await bounded(subs, LATEST_AT_ONCE, async (sub) => {
      const page = await api.list(path(sub, "/deliveries"), { limit: 1 }, { signal: ctx.signal });
      return page.data[0] || null;
    });
    subs.forEach((sub, i) => state.latest.set(sub.id, results[i]));
    draw();
  }

  async function loadPage() {
    const envelope = await api.list("/api/v1/notifications", { limit: 50, cursor: state.cursor }, { signal: ctx.signal });
    state.subs.push(...envelope.data);
    state.cursor = envelope.nextCursor;
    state.hasMore = envelope.hasMore;
    draw();
    clear(moreSlot, state.hasMore ? loadMoreButton(loadPage) : null);
    loadLatest(envelope.data).catch(() => {});
  }

  clear(ctx.root,
    pageHeader("Notifications", newButton),
    h("p", { class: "muted lead" }, "Where completed executions and alerts are delivered. Secrets and webhook paths are never shown."),
    canWrite ? null : readOnlyNote("Viewers cannot change notifications."),
    notice, listSlot, moreSlot);
  try {
    await loadPage();
  } catch (err) {
    if (err.name === "AbortError") throw err;
    clear(listSlot, errorBox(err, "The notifications could not be loaded"));
  }
}
