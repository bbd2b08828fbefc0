// Settings: the project and its plan's limits and usage, the person's password, and (for owners)
// the members and invitations of the project.
import { api } from "../api.js";
import {
  badge, clear, confirmDialog, copyable, emptyState, errorBox, field, formatCost, formatNumber,
  formatTime, h, loading, readOnlyNote, secretPanel, showFieldErrors, table, toast, pageHeader,
} from "../ui.js";

const ROLES = ["owner", "member", "viewer"];
// Contract section 3 defaults: API requests per minute and burst by plan (an operator may
// configure others; execution limits below are the live ones the API reports).
const API_RATES = { free: [10, 20], pro: [30, 60], team: [60, 120], enterprise: [120, 240] };

export async function render(ctx) {
  const owner = ctx.project && ctx.project.role === "owner";
  const me = ctx.session && ctx.session.user;
  const projectSlot = h("section", { class: "card" }, h("h2", {}, "Project"), loading());
  const limitsSlot = h("section", { class: "card" }, h("h2", {}, "Plan limits and usage"), loading());
  const membersSlot = h("section", { class: "card" }, h("h2", {}, "Members"), loading());
  const invitesSlot = owner ? h("section", { class: "card" }, h("h2", {}, "Invitations"), loading()) : null;

  clear(ctx.root, pageHeader("Settings"),
    h("div", { class: "settings-grid" }, projectSlot, limitsSlot),
    membersSlot, invitesSlot, passwordForm(ctx));

  await Promise.all([
    drawProject(ctx, projectSlot),
    drawLimits(ctx, limitsSlot),
    drawMembers(ctx, membersSlot, owner, me),
    owner ? drawInvitations(ctx, invitesSlot) : null,
  ]);
}

function failed(slot, title, err) {
  if (err.name === "AbortError") throw err;
  clear(slot, h("h2", {}, title), errorBox(err, `${title} could not be loaded`));
}

async function drawProject(ctx, slot) {
  try {
    const project = await api.get("/api/v1/project", undefined, { signal: ctx.signal });
    clear(slot, h("h2", {}, "Project"), h("dl", { class: "meta" },
      h("dt", {}, "Name"), h("dd", {}, project.name),
      h("dt", {}, "Project ID"), h("dd", {}, copyable(project.id, "Copy project ID")),
      h("dt", {}, "Plan"), h("dd", {}, badge(project.plan, "neutral")),
      h("dt", {}, "Created"), h("dd", {}, formatTime(project.createdAt)),
      h("dt", {}, "Your role"), h("dd", {}, ctx.project ? ctx.project.role : "—")));
  } catch (err) {
    failed(slot, "Project", err);
  }
}

function bucketRow(label, bucket) {
  return h("tr", {}, h("td", {}, label),
    h("td", {}, `${formatNumber(bucket.requestsPerMinute)}/min, burst ${formatNumber(bucket.maxBurst)}`),
    h("td", {}, `${formatNumber(bucket.remaining)} left`));
}

async function drawLimits(ctx, slot) {
  try {
    const envelope = await api.list("/api/v1/logs", { limit: 1 }, { signal: ctx.signal });
    const limits = envelope.limits || {};
    const usage = limits.usage || {};
    const rates = limits.workflowExecutionRateLimit || {};
    const apiRate = API_RATES[usage.plan];
    const ratio = usage.limit > 0 ? Math.min(usage.currentPeriodCost / usage.limit, 1) : 0;
    const meter = h("meter", { min: 0, max: usage.limit || 1, low: (usage.limit || 1) * 0.75,
      high: (usage.limit || 1) * 0.9, optimum: 0, value: usage.currentPeriodCost || 0,
      "aria-label": "This month's usage against the plan's limit" });
    clear(slot, h("h2", {}, "Plan limits and usage"),
      h("div", { class: "meter-row" },
        h("strong", {}, `This month: ${formatCost(usage.currentPeriodCost)} of ${formatCost(usage.limit)}`,
          ` (${Math.round(ratio * 100)}%)`),
        meter,
        usage.isExceeded ? h("p", { class: "field-error" }, "The plan's monthly limit is exceeded.")
          : h("p", { class: "muted small" }, "Cost of completed executions since the 1st of the month (UTC), on the ",
            h("strong", {}, usage.plan || "—"), " plan.")),
      h("table", { class: "table limits-table" },
        h("caption", { class: "visually-hidden" }, "Rate limits"),
        h("tbody", {},
          apiRate ? h("tr", {}, h("td", {}, "API requests (keys)"),
            h("td", {}, `${apiRate[0]}/min, burst ${apiRate[1]}`), h("td", { class: "muted" }, "plan default")) : null,
          rates.sync ? bucketRow("Sync executions", rates.sync) : null,
          rates.async ? bucketRow("Async executions", rates.async) : null)),
      h("p", { class: "muted small" }, "The console has its own per-person allowance and does not use the API key budget."));
  } catch (err) {
    failed(slot, "Plan limits and usage", err);
  }
}

async function drawMembers(ctx, slot, owner, me) {
  let members;
  try {
    members = await api.get("/api/v1/members", undefined, { signal: ctx.signal });
  } catch (err) {
    failed(slot, "Members", err);
    return;
  }
  const notice = h("div", { "aria-live": "polite" });
  const redraw = () => drawMembers(ctx, slot, owner, me);
  const roleCell = (m) => {
    if (!owner) return badge(m.role);
    const select = h("select", { "aria-label": `Role of ${m.email}` },
      ROLES.map((r) => h("option", { value: r, selected: r === m.role }, r)));
    select.addEventListener("change", async () => {
      try {
        await api.send("PATCH", `/api/v1/members/${encodeURIComponent(m.userId)}`, { role: select.value }, { signal: ctx.signal });
        toast(`${m.email} is now ${select.value}.`);
        m.role = select.value;
      } catch (err) {
        if (err.name === "AbortError") return;
        select.value = m.role;
        clear(notice, errorBox(err, "The role was not changed"));
      }
    });
    return select;
  };
  const columns = [
    { label: "Email", cell: (m) => h("span", {}, m.email, me && m.userId === me.id ? h("span", { class: "muted" }, " (you)") : null) },
    { label: "Role", cell: roleCell },
    { label: "Member since", cell: (m) => formatTime(m.createdAt) },
  ];
  if (owner) {
    columns.push({ label: "Actions", cell: (m) => h("button", { type: "button", class: "button small danger",
      "aria-label": `Remove ${m.email}`, onclick: async () => {
        const ok = await confirmDialog({ title: `Remove ${m.email}?`,
          text: "They lose access to this project at once. They can be invited again later.",
          confirm: "Remove member", danger: true });
        if (!ok) return;
        try {
          await api.send("DELETE", `/api/v1/members/${encodeURIComponent(m.userId)}`, undefined, { signal: ctx.signal });
          toast(`${m.email} removed.`);
          await redraw();
        } catch (err) {
          if (err.name !== "AbortError") clear(notice, errorBox(err, "The member was not removed"));
        }
      } }, "Remove") });
  }
  clear(slot, h("h2", {}, "Members"),
    owner ? null : readOnlyNote("Only owners can change roles, remove members and invite people."),
    notice, table(columns, members, { caption: "Members" }));
}

async function drawInvitations(ctx, slot) {
  let pending;
  try {
    pending = await api.get("/api/v1/invitations", undefined, { signal: ctx.signal });
  } catch (err) {
    failed(slot, "Invitations", err);
    return;
  }
  const shown = h("div", { "aria-live": "polite" });
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "off" });
  const role = h("select", { name: "role" }, ROLES.map((r) => h("option", { value: r, selected: r === "member" }, r)));
  const submit = h("button", { type: "submit", class: "button primary" }, "Invite");
  const form = h("form", { class: "inline-form", "aria-label": "Invite someone" },
    field("Email", email), field("Role", role), h("div", { class: "field" }, submit));
  const list = h("div");
  const drawList = () => {
    clear(list, pending.length ? table([
      { label: "Email", cell: (i) => i.email },
      { label: "Role", cell: (i) => badge(i.role) },
      { label: "Sent", cell: (i) => formatTime(i.createdAt) },
      { label: "Expires", cell: (i) => formatTime(i.expiresAt) },
      { label: "Actions", cell: (i) => h("button", { type: "button", class: "button small danger",
        "aria-label": `Revoke invitation of ${i.email}`, onclick: async () => {
          const ok = await confirmDialog({ title: `Revoke the invitation of ${i.email}?`,
            text: "The link stops working at once.", confirm: "Revoke invitation", danger: true });
          if (!ok) return;
          try {
            await api.send("DELETE", `/api/v1/invitations/${encodeURIComponent(i.id)}`, undefined, { signal: ctx.signal });
            pending = pending.filter((p) => p.id !== i.id);
            drawList();
          } catch (err) {
            if (err.name !== "AbortError") clear(shown, errorBox(err, "The invitation was not revoked"));
          }
        } }, "Revoke") },
    ], pending, { caption: "Pending invitations" })
      : emptyState("No pending invitations", "Invite a colleague by email: they get a link valid for 7 days to set a password and join with the role you choose."));
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(shown);
    submit.disabled = true;
    try {
      const invitation = await api.send("POST", "/api/v1/invitations", { email: email.value.trim(), role: role.value },
        { signal: ctx.signal });
      const url = invitation.url;
      clear(shown, secretPanel("Invitation link", url,
        `Send it to ${invitation.email} yourself; it works once, until ${new Date(invitation.expiresAt).toLocaleString()}.`));
      shown.querySelector("h2").focus();
      pending = [...pending, invitation];
      form.reset();
      showFieldErrors(form, null);
      drawList();
    } catch (err) {
      if (err.name === "AbortError") return;
      const rest = showFieldErrors(form, err);
      if (rest.length || !(err.details || []).length) clear(shown, errorBox(err, "The invitation was not created"));
    } finally {
      submit.disabled = false;
    }
  });
  drawList();
  clear(slot, h("h2", {}, "Invitations"), form, shown, h("h3", { class: "visually-hidden" }, "Pending"), list);
}

function passwordForm(ctx) {
  const current = h("input", { type: "password", name: "currentPassword", required: true, autocomplete: "current-password" });
  const next = h("input", { type: "password", name: "newPassword", required: true, minlength: 12, autocomplete: "new-password" });
  const username = h("input", { type: "email", name: "username", autocomplete: "username", hidden: true,
    value: ctx.session && ctx.session.user ? ctx.session.user.email : "", tabindex: "-1", "aria-hidden": "true" });
  const status = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "button primary" }, "Change password");
  const form = h("form", { class: "card form-card", "aria-label": "Change password" },
    h("h2", {}, "Your password"), username,
    field("Current password", current), field("New password", next, "At least 12 characters. Your other sessions are signed out."),
    status, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(status);
    submit.disabled = true;
    try {
      await api.send("POST", "/api/v1/session/password", { currentPassword: current.value, newPassword: next.value },
        { signal: ctx.signal, quiet: true });
      form.reset();
      showFieldErrors(form, null);
      clear(status, h("p", { class: "ok-text", role: "status" }, "Password changed. Other sessions were signed out."));
    } catch (err) {
      if (err.name === "AbortError") return;
      const rest = showFieldErrors(form, err);
      if (rest.length || !(err.details || []).length) clear(status, errorBox(err, "The password was not changed"));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
