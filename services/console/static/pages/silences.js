// The Silences section of the Alerts page: silences by state, a form for a one-off silence or a
// weekly maintenance window, and "End now" with confirmation. Talks to /api/v1/silences only.
import { api } from "../api.js";
import {
  badge, clear, confirmDialog, emptyState, errorBox, field, formatTime, h, loading,
  showFieldErrors, table, toast,
} from "../ui.js";

const STATES = [["active", "Active"], ["pending", "Pending"], ["expired", "Expired"]];
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const RULES = ["consecutive_failures", "failure_rate", "latency_threshold", "latency_spike",
  "cost_threshold", "no_activity", "error_count"];
const TONES = { active: "warn", pending: "neutral", expired: "muted" };

export function silencesSection(ctx, canWrite) {
  const listSlot = h("div", {}, loading("Loading silences…"));
  const formSlot = h("div");
  const filter = h("select", { name: "state", "aria-label": "Silence state" },
    STATES.map(([value, label]) => h("option", { value }, label)));
  const add = h("button", { type: "button", class: "button", disabled: !canWrite,
    "aria-expanded": "false" }, "Add silence");
  add.addEventListener("click", () => {
    if (formSlot.firstChild) { clear(formSlot); add.setAttribute("aria-expanded", "false"); return; }
    add.setAttribute("aria-expanded", "true");
    clear(formSlot, silenceForm());
    formSlot.querySelector("textarea").focus();
  });
  filter.addEventListener("change", () => draw());

  async function draw() {
    clear(listSlot, loading("Loading silences…"));
    let items;
    try {
      items = await allSilences(filter.value, ctx.signal);
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(listSlot, errorBox(err, "The silences could not be loaded"));
      return;
    }
    if (!items.length) {
      clear(listSlot, emptyState(`No ${filter.value} silences`,
        "A silence mutes alert notifications of some workflows, subscriptions or rules for a while, or every week in a maintenance window; muted alerts are recorded, not delivered."));
      return;
    }
    const columns = [
      { label: "State", cell: (s) => badge(s.state, TONES[s.state]) },
      { label: "Mutes", cell: (s) => describeMatchers(s.matchers) },
      { label: "When", cell: (s) => describeWhen(s) },
      { label: "Comment", cell: (s) => h("span", { class: "stack" }, s.comment,
        h("span", { class: "muted small" }, `by ${s.createdBy}, ${formatTime(s.createdAt)}`)) },
      { label: "", cell: (s) => s.state === "expired" || !canWrite ? null
        : h("button", { type: "button", class: "button small danger", onclick: () => endNow(s) }, "End now") },
    ];
    clear(listSlot, table(columns, items, { caption: "Silences" }));
  }

  async function endNow(silence) {
    const ok = await confirmDialog({ title: "End this silence now?",
      text: `“${silence.comment}” stops muting at once; an alert that still fires is notified once.`,
      confirm: "End now", danger: true });
    if (!ok) return;
    try {
      await api.send("DELETE", `/api/v1/silences/${encodeURIComponent(silence.id)}`, undefined, { signal: ctx.signal });
      toast("Silence ended");
      draw();
    } catch (err) {
      if (err.name !== "AbortError") toast(err.message || "The silence was not ended", "error");
    }
  }

  function silenceForm() {
    const comment = h("textarea", { name: "comment", required: true, maxlength: 1000, rows: 2 });
    const workflow = h("input", { name: "matchers.workflowIds", autocomplete: "off" });
    const rule = h("select", { name: "matchers.rules" }, h("option", { value: "" }, "Any rule"),
      RULES.map((r) => h("option", { value: r }, r)));
    const kind = h("select", { name: "kind", "aria-label": "Kind" },
      h("option", { value: "once" }, "One-off"), h("option", { value: "weekly" }, "Weekly window"));
    const endsAt = h("input", { name: "endsAt", type: "datetime-local" });
    const days = DAYS.map((d) => h("label", {}, h("input", { type: "checkbox", value: d }), d));
    const start = h("input", { name: "schedule.start", type: "time", value: "22:00" });
    const minutes = h("input", { name: "schedule.durationMinutes", type: "number", min: 1, max: 10080, value: 60 });
    const zone = h("input", { name: "schedule.timezone", autocomplete: "off",
      value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" });
    const once = h("div", {}, field("Ends at", endsAt, "Local time of this browser."));
    const weekly = h("div", { hidden: true },
      h("fieldset", { class: "field" }, h("legend", {}, "Days"), h("div", { class: "checks" }, days)),
      field("Start", start, "Local time in the time zone below."),
      field("Duration (minutes)", minutes, "1 to 10080 (a week)."),
      field("Time zone", zone, "An IANA zone such as Europe/Berlin; daylight saving is followed."));
    kind.addEventListener("change", () => {
      once.hidden = kind.value !== "once";
      weekly.hidden = kind.value !== "weekly";
    });
    const status = h("div");
    const submit = h("button", { type: "submit", class: "button primary" }, "Create silence");
    const form = h("form", { class: "card form-card", "aria-label": "New silence" },
      h("h3", {}, "New silence"),
      field("Comment", comment, "Why, for whoever sees the muted alerts."),
      field("Workflow", workflow, "Only this workflow id; empty: every workflow."),
      field("Rule", rule),
      field("Kind", kind), once, weekly, status,
      h("div", { class: "actions" }, submit));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clear(status);
      const matchers = {};
      if (workflow.value.trim()) matchers.workflowIds = [workflow.value.trim()];
      if (rule.value) matchers.rules = [rule.value];
      const body = { comment: comment.value.trim(), matchers };
      if (kind.value === "once") {
        if (endsAt.value) body.endsAt = new Date(endsAt.value).toISOString();
      } else {
        body.schedule = { timezone: zone.value.trim(), start: start.value,
          durationMinutes: Number(minutes.value),
          daysOfWeek: days.filter((d) => d.querySelector("input").checked).map((d) => d.textContent) };
      }
      submit.disabled = true;
      try {
        await api.send("POST", "/api/v1/silences", body, { signal: ctx.signal });
        clear(formSlot);
        add.setAttribute("aria-expanded", "false");
        toast("Silence created");
        filter.value = "active";
        draw();
      } catch (err) {
        if (err.name === "AbortError") return;
        const rest = showFieldErrors(form, err);
        if (rest.length || !(err.details || []).length) clear(status, errorBox(err, "The silence was not created"));
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  draw();
  return h("section", { class: "section", "aria-labelledby": "silences-title" },
    h("div", { class: "section-head" }, h("h2", { id: "silences-title" }, "Silences"), filter, add),
    formSlot, listSlot);
}

function describeMatchers(m) {
  const parts = [];
  if (m.workflowIds) parts.push(`workflow ${m.workflowIds.join(", ")}`);
  if (m.subscriptionIds) parts.push(`subscription ${m.subscriptionIds.join(", ")}`);
  if (m.rules) parts.push(`rule ${m.rules.join(", ")}`);
  return parts.length ? parts.join(" and ") : "every alert";
}

function describeWhen(s) {
  if (!s.schedule) return `${formatTime(s.startsAt)} – ${formatTime(s.endedAt || s.endsAt)}`;
  const w = s.schedule;
  const text = `${w.daysOfWeek.join(", ")} ${w.start} for ${w.durationMinutes} min (${w.timezone})`;
  const next = s.activeUntil ? `until ${formatTime(s.activeUntil)}`
    : s.nextStartsAt ? `next ${formatTime(s.nextStartsAt)}` : "";
  return h("span", { class: "stack" }, text, next ? h("span", { class: "muted small" }, next) : null);
}

async function allSilences(state, signal) {
  const items = [];
  let cursor = null;
  do {
    const page = await api.list("/api/v1/silences", { state, limit: 100, cursor }, { signal });
    items.push(...page.data);
    cursor = page.hasMore ? page.nextCursor : null;
  } while (cursor);
  return items;
}
