// What the notification pages share: how a subscription, its rule and its deliveries read, and a
// test send that waits for its outcome. Not a page of its own.
import { api } from "../api.js";
import { badge, formatDuration, formatTime, h, maskUrl } from "../ui.js";

export const TYPES = [["webhook", "Webhook"], ["email", "Email"], ["slack", "Slack"],
  ["pagerduty", "PagerDuty"], ["teams", "Microsoft Teams"], ["discord", "Discord"]];

// The seven rules of contract section 6, each with its parameters: [field, label, min, max,
// step, default, unit]. Defaults are the API's (absent fields take them).
export const RULES = [
  { rule: "consecutive_failures", label: "Consecutive failures",
    text: "Fires when the failures since the workflow's last success reach N.",
    params: [["consecutiveFailures", "Failures in a row", 1, 100, 1, 3, ""]] },
  { rule: "failure_rate", label: "Failure rate",
    text: "Fires when errors / total over the window exceed the percentage (at least 5 executions, after a full window).",
    params: [["failureRatePercent", "Failure rate above (%)", 1, 100, 1, 50, "%"],
      ["windowHours", "Window (hours)", 1 / 60, 168, "any", 24, "h"]] },
  { rule: "latency_threshold", label: "Latency threshold",
    text: "Fires when one execution takes longer than the threshold.",
    params: [["durationThresholdMs", "Duration above (ms)", 1000, 3_600_000, 1, 30_000, "ms"]] },
  { rule: "latency_spike", label: "Latency spike",
    text: "Fires when an execution is slower than the mean of the earlier ones in the window by the percentage (needs 5 earlier executions).",
    params: [["latencySpikePercent", "Slower than the mean by (%)", 10, 1000, 1, 100, "%"],
      ["windowHours", "Window (hours)", 1 / 60, 168, "any", 24, "h"]] },
  { rule: "cost_threshold", label: "Cost threshold",
    text: "Fires when one execution costs more than the threshold (executions without a cost are skipped).",
    params: [["costThresholdDollars", "Cost above (USD)", 0.01, 1000, 0.01, 1, "$"]] },
  { rule: "no_activity", label: "No activity",
    text: "Fires when a workflow has not run for the given hours; resolves on its next execution.",
    params: [["inactivityHours", "No execution for (hours)", 1 / 60, 168, "any", 24, "h"]] },
  { rule: "error_count", label: "Error count",
    text: "Fires when the errors within the sliding window exceed the threshold.",
    params: [["errorCountThreshold", "Errors above", 1, 1000, 1, 10, ""],
      ["windowHours", "Window (hours)", 1 / 60, 168, "any", 1, "h"]] },
];

export function ruleOf(name) {
  return RULES.find((r) => r.rule === name);
}

export function typeLabel(type) {
  const found = TYPES.find(([value]) => value === type);
  return found ? found[1] : type;
}

// Destinations that are nothing but a secret, as they are shown.
const HIDDEN_TARGETS = {
  pagerduty: "PagerDuty service (routing key hidden)",
  teams: "Teams webhook (URL hidden)",
  discord: "Discord webhook (URL hidden)",
};

// Where deliveries go, without secrets: a webhook's host, the recipients, a Slack channel.
export function describeTarget(sub) {
  if (sub.notificationType === "webhook" && sub.webhookConfig) {
    return h("span", { class: "mono", title: "Path and query hidden" }, maskUrl(sub.webhookConfig.url));
  }
  if (sub.notificationType === "email") return (sub.emailRecipients || []).join(", ");
  if (sub.notificationType === "slack" && sub.slackConfig) {
    return sub.slackConfig.channelName ? `#${sub.slackConfig.channelName.replace(/^#/, "")}`
      : h("span", { class: "muted" }, "Incoming webhook (URL hidden)");
  }
  if (HIDDEN_TARGETS[sub.notificationType]) return h("span", { class: "muted" }, HIDDEN_TARGETS[sub.notificationType]);
  return "—";
}

export function describeWorkflows(sub) {
  if (sub.allWorkflows) return "All workflows";
  const ids = sub.workflowIds || [];
  return ids.length <= 3 ? ids.join(", ") : `${ids.slice(0, 3).join(", ")} and ${ids.length - 3} more`;
}

export function describeFilters(sub) {
  const levels = (sub.levelFilter || []).length === 2 ? "any level" : (sub.levelFilter || []).join(", ");
  const triggers = (sub.triggerFilter || []).length ? sub.triggerFilter.join(", ") : "any trigger";
  return `${levels}; ${triggers}`;
}

function paramValue(config, name, fallback) {
  const value = config[name];
  if (value !== undefined && value !== null) return value;
  return fallback;
}

// A rule in one line, with its parameters (defaults filled in as the API applies them).
export function describeRule(config) {
  if (!config) return "Every matching execution";
  const rule = ruleOf(config.rule);
  if (!rule) return config.rule;
  const parts = rule.params.map(([name, , , , , fallback, unit]) => {
    const value = paramValue(config, name, fallback);
    if (unit === "$") return `$${value}`;
    if (unit === "ms") return formatDuration(Number(value));
    return `${value}${unit === "h" ? " h" : unit}`;
  });
  return `${rule.label} (${parts.join(", ")})${config.notifyOnResolve ? ", notify on resolve" : ""}`;
}

const TONES = { delivered: "ok", retrying: "warn", failed: "error" };

const HEALTH_TONES = { healthy: "ok", failing: "error", disabled: "neutral" };

// The endpoint's health from the delivery log: a status badge, since when it fails, 24 h rate.
export function healthBadge(health) {
  return health ? badge(health.status, HEALTH_TONES[health.status] || "neutral") : badge("unknown");
}

export function successRate(health) {
  if (!health || health.successRate24h === undefined || health.successRate24h === null) return "no deliveries in 24 h";
  return `${(health.successRate24h * 100).toFixed(1).replace(/\.0$/, "")}% delivered in 24 h`;
}

export function describeHealth(health) {
  return h("span", { class: "stack" }, healthBadge(health),
    health && health.failingSince ? h("span", { class: "muted small" }, "Failing since ", formatTime(health.failingSince)) : null,
    h("span", { class: "muted small" }, successRate(health)));
}

export function outcomeBadge(status) {
  return badge(status, TONES[status] || "neutral");
}

export function eventLabel(type) {
  return {
    "workflow.execution.completed": "Execution completed",
    "workflow.alert.no_activity": "No activity alert",
    "workflow.alert.resolved": "Alert resolved",
  }[type] || type;
}

// Run `work(item)` over items with at most `limit` at a time; results in the items' order.
export async function bounded(items, limit, work) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { value: await work(items[i]) };
      } catch (error) {
        if (error && error.name === "AbortError") throw error;
        results[i] = { error };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); reject(new DOMException("Aborted", "AbortError")); });
});

// Queue a test send, then follow its delivery until an attempt ends (or ~45 s pass).
// `report(state)` gets {phase: "queued"|"done"|"waiting", deliveryId, delivery?}.
export async function sendTest(sub, signal, report) {
  const sent = await api.send("POST", `/api/v1/notifications/${encodeURIComponent(sub.id)}/test`,
    undefined, { signal });
  report({ phase: "queued", deliveryId: sent.deliveryId });
  for (let i = 0; i < 45; i++) {
    await sleep(1000, signal);
    const page = await api.list(`/api/v1/notifications/${encodeURIComponent(sub.id)}/deliveries`,
      { limit: 10 }, { signal });
    const delivery = page.data.find((d) => d.id === sent.deliveryId);
    if (delivery && delivery.status !== "retrying") {
      report({ phase: "done", deliveryId: sent.deliveryId, delivery });
      return delivery;
    }
    if (delivery) report({ phase: "waiting", deliveryId: sent.deliveryId, delivery });
  }
  report({ phase: "waiting", deliveryId: sent.deliveryId });
  return null;
}

// The outcome of a test send as a line of text and a badge.
export function testResult(state) {
  if (state.phase === "queued") {
    return h("span", { class: "muted" }, "Test queued (", h("code", {}, state.deliveryId), "); waiting for the first attempt…");
  }
  const d = state.delivery;
  if (!d) {
    return h("span", { class: "muted" }, "Test queued (", h("code", {}, state.deliveryId),
      "); no attempt recorded yet. Its outcome will appear in the delivery log.");
  }
  const last = d.attempts[d.attempts.length - 1];
  const code = last && last.responseCode ? `HTTP ${last.responseCode}` : (last && last.error) || "";
  return h("span", {}, "Test ", outcomeBadge(d.status), " ", code,
    last ? ` in ${formatDuration(last.durationMs)}` : "",
    d.status === "retrying" ? "; retrying" : "");
}
