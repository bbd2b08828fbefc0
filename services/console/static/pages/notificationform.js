// Create or edit a notification subscription: its type and destination, what it matches, and
// an optional alert rule with the API's bounds and defaults. Inputs are named by the API's field
// paths so that a VALIDATION_ERROR lands next to its field.
import { api } from "../api.js";
import {
  clear, errorBox, field, h, pageHeader, readOnlyNote, secretPanel, showFieldErrors,
} from "../ui.js";
import { RULES, TYPES, ruleOf } from "./subscriptions.js";

const TRIGGERS = ["api", "webhook", "schedule", "manual", "chat"];
const INCLUDES = [
  ["includeFinalOutput", "Final output", "The execution's final output."],
  ["includeTraceSpans", "Trace spans", "Webhooks only: never sent to email or chat."],
  ["includeRateLimits", "Rate limits", "The plan's execution rate limits."],
  ["includeUsageData", "Usage", "This month's cost against the plan's limit."],
];
// Where an API field path is shown when no input carries that exact name.
const ALIASES = {
  alertConfig: "alertConfig.rule", webhookConfig: "webhookConfig.url",
  slackConfig: "slackConfig.webhookUrl", allWorkflows: "workflowIds",
  pagerdutyConfig: "pagerdutyConfig.routingKey", teamsConfig: "teamsConfig.webhookUrl",
  discordConfig: "discordConfig.webhookUrl",
};

function splitList(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

function checkbox(name, value, label, checked) {
  return h("label", {}, h("input", { type: "checkbox", name, value, checked: Boolean(checked) }), label);
}

function checkedValues(form, name) {
  return [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
}

export async function render(ctx) {
  const editing = Boolean(ctx.params.id);
  const canWrite = ctx.project && ctx.project.role !== "viewer";
  let sub = null;
  let workflows = [];
  const [subResult, workflowResult] = await Promise.allSettled([
    editing ? api.get(`/api/v1/notifications/${encodeURIComponent(ctx.params.id)}`, undefined, { signal: ctx.signal }) : null,
    api.list("/api/v1/workflows", { limit: 100 }, { signal: ctx.signal }),
  ]);
  if (subResult.status === "rejected") {
    if (subResult.reason.name === "AbortError") throw subResult.reason;
    clear(ctx.root, pageHeader("Edit notification"), errorBox(subResult.reason, "The notification could not be loaded"));
    return;
  }
  sub = subResult.value;
  if (workflowResult.status === "fulfilled") workflows = workflowResult.value.data;

  const prefill = editing ? sub.workflowIds : splitList(ctx.query.workflowIds || "");
  const type = editing ? sub.notificationType : (TYPES.some(([t]) => t === ctx.query.type) ? ctx.query.type : "webhook");

  // ---- type and destination
  const typeInputs = TYPES.map(([value, label]) => h("label", {},
    h("input", { type: "radio", name: "notificationType", value, checked: value === type, disabled: editing }), label));
  const typeSet = h("fieldset", { class: "field" }, h("legend", {}, "Type"), h("div", { class: "checks" }, typeInputs),
    editing ? h("p", { class: "hint" }, "The type of a notification cannot change; create another one instead.") : null);

  const webhookUrl = h("input", { type: "url", name: "webhookConfig.url", maxlength: 2048, minlength: 8,
    placeholder: "https://…", value: sub && sub.webhookConfig ? sub.webhookConfig.url : "" });
  const webhookSecret = h("input", { type: "password", name: "webhookConfig.secret", minlength: 16, maxlength: 512,
    autocomplete: "new-password" });
  const standard = h("input", { type: "checkbox", name: "webhookConfig.standardWebhooks",
    checked: Boolean(sub && sub.webhookConfig && sub.webhookConfig.standardWebhooks) });
  const webhookPart = h("div", { class: "type-part", dataset: { type: "webhook" } },
    field("Webhook URL", webhookUrl, "Receives a signed POST per notification. Redirects are not followed."),
    field(editing ? "New signing secret (optional)" : "Signing secret (optional)", webhookSecret,
      editing ? "Leave empty to keep the current secret (or use Rotate secret)."
        : "16 to 512 characters. Leave empty and a secret is generated and shown once."),
    h("div", { class: "field" }, h("label", { class: "inline" }, standard, "Also send Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature)")));

  const recipients = h("textarea", { name: "emailRecipients", rows: 3,
    placeholder: "oncall@example.com" }, sub && sub.emailRecipients ? sub.emailRecipients.join("\n") : "");
  const emailPart = h("div", { class: "type-part", dataset: { type: "email" } },
    field("Recipients", recipients, "Up to 10 addresses, one per line or separated by commas."));

  const slackUrl = h("input", { type: "url", name: "slackConfig.webhookUrl", maxlength: 2048, minlength: 8,
    autocomplete: "off", placeholder: "https://…" });
  const slackChannel = h("input", { name: "slackConfig.channelName", maxlength: 80,
    value: sub && sub.slackConfig && sub.slackConfig.channelName ? sub.slackConfig.channelName : "" });
  const slackPart = h("div", { class: "type-part", dataset: { type: "slack" } },
    field("Slack incoming webhook URL", slackUrl, editing
      ? "Hidden once saved. Leave empty to keep it; give it again to change the channel name."
      : "Create an incoming webhook in Slack and paste its URL; it is kept secret."),
    field("Channel name (optional)", slackChannel, "Shown here to recognise the destination, e.g. alerts-prod."));

  const keep = "Hidden once saved. Leave empty to keep it.";
  const routingKey = h("input", { type: "password", name: "pagerdutyConfig.routingKey", minlength: 32, maxlength: 32,
    pattern: "[0-9A-Za-z]{32}", autocomplete: "off", spellcheck: false });
  const pagerdutyPart = h("div", { class: "type-part", dataset: { type: "pagerduty" } },
    field("Routing key", routingKey, editing ? keep
      : "The 32-character integration key of an Events API v2 integration on a PagerDuty service; it is kept secret. PagerDuty notifications need an alert rule: a fired alert triggers an incident, its resolve resolves it."));
  const teamsUrl = h("input", { type: "url", name: "teamsConfig.webhookUrl", maxlength: 2048, minlength: 8,
    autocomplete: "off", placeholder: "https://…" });
  const teamsPart = h("div", { class: "type-part", dataset: { type: "teams" } },
    field("Teams webhook URL", teamsUrl, editing ? keep
      : "An incoming webhook or a Workflows “Post to a channel when a webhook request is received” URL; it is kept secret."));
  const discordUrl = h("input", { type: "url", name: "discordConfig.webhookUrl", maxlength: 2048, minlength: 8,
    autocomplete: "off", placeholder: "https://…" });
  const discordPart = h("div", { class: "type-part", dataset: { type: "discord" } },
    field("Discord webhook URL", discordUrl, editing ? keep
      : "Channel settings → Integrations → Webhooks → Copy Webhook URL; it is kept secret."));
  const sealedInputs = { pagerduty: ["pagerdutyConfig", "routingKey", routingKey],
    teams: ["teamsConfig", "webhookUrl", teamsUrl], discord: ["discordConfig", "webhookUrl", discordUrl] };

  // ---- what it matches
  const all = h("input", { type: "checkbox", name: "allWorkflows",
    checked: editing ? sub.allWorkflows : prefill.length === 0 });
  const known = new Map(workflows.map((w) => [w.id, w.name || w.id]));
  for (const id of prefill) if (!known.has(id)) known.set(id, id);
  const workflowChecks = [...known].map(([id, name]) => checkbox("workflowIds", id,
    name === id ? id : `${name} (${id})`, prefill.includes(id)));
  const workflowList = h("div", { class: "checks workflow-list" }, workflowChecks.length ? workflowChecks
    : h("p", { class: "hint" }, "No workflows have reported executions yet. Choose “All workflows” to cover them as they appear."));
  const workflowSet = h("fieldset", { class: "field" }, h("legend", {}, "Workflows"),
    h("label", { class: "inline" }, all, "All workflows, including future ones"), workflowList);
  const syncWorkflows = () => {
    workflowList.hidden = all.checked;
  };
  all.addEventListener("change", syncWorkflows);
  syncWorkflows();

  const levels = editing ? sub.levelFilter : ["info", "error"];
  const levelSet = h("fieldset", { class: "field" }, h("legend", {}, "Levels"),
    h("div", { class: "checks" }, checkbox("levelFilter", "info", "info", levels.includes("info")),
      checkbox("levelFilter", "error", "error", levels.includes("error"))));
  const triggers = editing ? sub.triggerFilter : [];
  const otherTriggers = h("input", { name: "triggerFilter", value: triggers.filter((t) => !TRIGGERS.includes(t)).join(", "),
    placeholder: "e.g. slack-bot" });
  const triggerSet = h("fieldset", { class: "field" }, h("legend", {}, "Triggers"),
    h("p", { class: "hint" }, "None chosen = every trigger."),
    h("div", { class: "checks" }, TRIGGERS.map((t) => checkbox("triggerFilter", t, t, triggers.includes(t)))),
    field("Other triggers", otherTriggers, "Comma separated, as your runtime names them."));

  const includeSet = h("fieldset", { class: "field" }, h("legend", {}, "Include in each delivery"),
    h("div", { class: "checks" }, INCLUDES.map(([name, label, hint]) => h("label", { title: hint },
      h("input", { type: "checkbox", name, checked: Boolean(sub && sub[name]) }), label))));

  // ---- alert rule
  const ruleSelect = h("select", { name: "alertConfig.rule" },
    h("option", { value: "" }, "None: deliver every matching execution"),
    RULES.map((r) => h("option", { value: r.rule, selected: Boolean(sub && sub.alertConfig && sub.alertConfig.rule === r.rule) }, r.label)));
  const ruleText = h("p", { class: "hint" });
  const paramSlot = h("div", { class: "rule-params" });
  const resolve = h("input", { type: "checkbox", name: "alertConfig.notifyOnResolve",
    checked: Boolean(sub && sub.alertConfig && sub.alertConfig.notifyOnResolve) });
  const resolveField = h("div", { class: "field" }, h("label", { class: "inline" }, resolve, "Also notify when the condition resolves"));
  const drawRule = () => {
    const rule = ruleOf(ruleSelect.value);
    ruleText.textContent = rule ? rule.text : "Every completed execution that matches the filters is delivered.";
    resolveField.hidden = !rule;
    const current = sub && sub.alertConfig && sub.alertConfig.rule === ruleSelect.value ? sub.alertConfig : {};
    clear(paramSlot, rule ? rule.params.map(([name, label, min, max, step, fallback]) => {
      const value = current[name] ?? fallback;
      const input = h("input", { type: "number", name: `alertConfig.${name}`, min: String(min), max: String(max),
        step: String(step), value: String(value), required: true, inputmode: "decimal" });
      const bounds = step === "any" ? `${+(min * 60).toFixed(0)} minute to ${max} hours` : `${min} to ${max}`;
      return field(label, input, `${bounds}; default ${fallback}.`);
    }) : null);
  };
  ruleSelect.addEventListener("change", drawRule);
  drawRule();
  const ruleSet = h("div", { class: "rule" },
    field("Alert rule", ruleSelect), ruleText, paramSlot, resolveField,
    h("p", { class: "hint" }, "Alerts are evaluated per workflow, at most one notification per hour while a condition holds."));

  const active = h("input", { type: "checkbox", name: "active", checked: editing ? sub.active : true });
  const status = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "button primary", disabled: !canWrite },
    editing ? "Save changes" : "Create notification");
  const cancelHref = editing ? `/notifications/${encodeURIComponent(sub.id)}` : "/notifications";
  const body = h("fieldset", { class: "plain", disabled: !canWrite },
    h("section", { class: "card form-section" }, h("h2", {}, "Destination"), typeSet, webhookPart, emailPart, slackPart,
      pagerdutyPart, teamsPart, discordPart),
    h("section", { class: "card form-section" }, h("h2", {}, "What it matches"), workflowSet, levelSet, triggerSet, includeSet),
    h("section", { class: "card form-section" }, h("h2", {}, "When it notifies"), ruleSet,
      h("div", { class: "field" }, h("label", { class: "inline" }, active, "Active (deliver notifications)"))));
  const form = h("form", { class: "notification-form", "aria-label": editing ? "Edit notification" : "New notification" },
    body, status, h("div", { class: "actions" }, submit, h("a", { class: "button", href: cancelHref }, "Cancel")));

  const currentType = () => (form.querySelector('input[name="notificationType"]:checked') || {}).value || type;
  const syncType = () => {
    for (const part of form.querySelectorAll(".type-part")) {
      const shown = part.dataset.type === currentType();
      part.hidden = !shown;
      for (const input of part.querySelectorAll("input, textarea")) input.disabled = !shown;
    }
    webhookUrl.required = currentType() === "webhook";
    recipients.required = currentType() === "email";
    slackUrl.required = currentType() === "slack" && !editing;
    for (const [kind, [, , input]] of Object.entries(sealedInputs)) input.required = currentType() === kind && !editing;
    const spans = form.querySelector('input[name="includeTraceSpans"]');
    spans.disabled = currentType() !== "webhook";
    if (spans.disabled) spans.checked = false;
  };
  for (const input of typeInputs) input.querySelector("input").addEventListener("change", syncType);
  syncType();

  function payload() {
    const kind = currentType();
    const out = {
      allWorkflows: all.checked,
      workflowIds: all.checked ? [] : checkedValues(form, "workflowIds"),
      levelFilter: checkedValues(form, "levelFilter"),
      triggerFilter: [...new Set([...checkedValues(form, "triggerFilter"), ...splitList(otherTriggers.value)])],
      active: active.checked,
    };
    for (const [name] of INCLUDES) out[name] = form.querySelector(`input[name="${name}"]`).checked;
    if (kind === "webhook") {
      out.webhookConfig = { url: webhookUrl.value.trim(), standardWebhooks: standard.checked };
      if (webhookSecret.value) out.webhookConfig.secret = webhookSecret.value;
    } else if (kind === "email") {
      out.emailRecipients = splitList(recipients.value);
    } else if (kind === "slack" && (slackUrl.value.trim() || !editing)) {
      out.slackConfig = { webhookUrl: slackUrl.value.trim() };
      if (slackChannel.value.trim()) out.slackConfig.channelName = slackChannel.value.trim();
    } else if (sealedInputs[kind]) {
      const [config, name, input] = sealedInputs[kind];
      if (input.value.trim() || !editing) out[config] = { [name]: input.value.trim() };
    }
    const rule = ruleOf(ruleSelect.value);
    if (rule) {
      out.alertConfig = { rule: rule.rule, notifyOnResolve: resolve.checked };
      for (const [name] of rule.params) out.alertConfig[name] = Number(form.querySelector(`[name="alertConfig.${name}"]`).value);
    } else if (editing) {
      out.alertConfig = null;
    }
    if (!editing) out.notificationType = kind;
    return out;
  }

  function localErrors(out) {
    const details = [];
    if (!out.allWorkflows && !out.workflowIds.length) details.push({ field: "workflowIds", message: "Choose workflows or “All workflows”." });
    if (!out.levelFilter.length) details.push({ field: "levelFilter", message: "Choose at least one level." });
    if (out.emailRecipients && out.emailRecipients.length > 10) details.push({ field: "emailRecipients", message: "At most 10 recipients." });
    if (currentType() === "pagerduty" && !out.alertConfig) details.push({ field: "alertConfig.rule", message: "PagerDuty notifications send alerts only: choose a rule." });
    return details;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(status);
    const out = payload();
    const problems = localErrors(out);
    if (problems.length) { showFieldErrors(form, { details: problems }); focusFirstError(); return; }
    submit.disabled = true;
    try {
      if (editing) {
        await api.send("PATCH", `/api/v1/notifications/${encodeURIComponent(sub.id)}`, out, { signal: ctx.signal });
        ctx.navigate(`/notifications/${encodeURIComponent(sub.id)}`);
        return;
      }
      const created = await api.send("POST", "/api/v1/notifications", out, { signal: ctx.signal });
      created_(created);
    } catch (err) {
      if (err.name === "AbortError") return;
      const details = (err.details || []).map((d) => {
        const base = (d.field || "").replace(/\[\d+\]$/, "");
        const name = form.querySelector(`[name="${CSS.escape(base)}"]`) ? base : (ALIASES[base] || base);
        return { field: name, message: d.message };
      });
      const unmatched = showFieldErrors(form, { details });
      if (unmatched.length || !details.length) clear(status, errorBox(err, editing ? "The changes were not saved" : "The notification was not created"));
      focusFirstError();
    } finally {
      submit.disabled = !canWrite;
    }
  });

  function focusFirstError() {
    const first = form.querySelector('[aria-invalid="true"]');
    if (first) first.focus();
  }

  function created_(created) {
    const s = created.subscription;
    const link = h("a", { class: "button primary", href: `/notifications/${encodeURIComponent(s.id)}` }, "Open the notification");
    clear(ctx.root,
      pageHeader("Notification created"),
      h("p", {}, "The ", h("strong", {}, s.notificationType), " notification ", h("code", {}, s.id), " is ",
        s.active ? "active." : "saved, disabled."),
      created.signingSecret ? secretPanel("Signing secret", created.signingSecret,
        "Receivers verify the sim-signature header (HMAC-SHA256 of “<timestamp>.<body>”) with it.") : null,
      h("div", { class: "actions" }, link, h("a", { class: "button", href: "/notifications" }, "All notifications")));
    (ctx.root.querySelector(".secret h2") || link).focus();
  }

  clear(ctx.root,
    pageHeader(editing ? "Edit notification" : "New notification"),
    editing ? h("p", { class: "muted" }, h("code", {}, sub.id)) : null,
    canWrite ? null : readOnlyNote("Viewers cannot change notifications."),
    form);
}
