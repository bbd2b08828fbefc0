// Small building blocks every page uses. Elements are built with h(); text is always set as
// text (never as HTML), so nothing a tenant sends can inject markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const localFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

// A time in the browser's zone, with UTC on hover.
export function formatTime(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, String(iso));
  return h("time", { datetime: date.toISOString(), title: `${date.toISOString()} (UTC)` },
    localFormat.format(date));
}

export function relativeTime(iso) {
  if (!iso) return "never";
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  const steps = [[60, "s"], [60, "min"], [24, "h"], [365, "d"]];
  let value = Math.abs(seconds);
  let unit = "s";
  for (const [size, name] of steps) {
    unit = name;
    if (value < size) break;
    value = Math.floor(value / size);
  }
  return seconds >= 0 ? `${value} ${unit} ago` : `in ${value} ${unit}`;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function formatCost(usd) {
  if (usd === null || usd === undefined) return "—";
  if (usd === 0) return "$0";
  return usd < 0.01 ? `$${usd.toFixed(6)}` : `$${usd.toFixed(usd < 1 ? 4 : 2)}`;
}

export function formatNumber(n) {
  return n === null || n === undefined ? "—" : new Intl.NumberFormat().format(n);
}

export function formatPercent(ratio) {
  if (ratio === null || ratio === undefined) return "—";
  return `${(ratio * 100).toFixed(ratio < 0.1 && ratio > 0 ? 1 : 0)}%`;
}

// An API failure as people should see it: what went wrong and the request id to quote.
export function errorBox(err, title = "Something went wrong") {
  const box = h("div", { class: "error-box", role: "alert" },
    h("strong", {}, title),
    h("p", {}, err && err.message ? err.message : String(err)));
  if (err && err.requestId) {
    box.append(h("p", { class: "request-id" }, "Request ID: ", h("code", {}, err.requestId)));
  }
  return box;
}

export function loading(label = "Loading…") {
  return h("div", { class: "loading", role: "status", "aria-live": "polite" },
    h("span", { class: "spinner", "aria-hidden": "true" }), label);
}

export function emptyState(title, text, ...extra) {
  return h("div", { class: "empty-state" }, h("h2", {}, title), text ? h("p", {}, text) : null,
    ...extra);
}

export function copyButton(text, label = "Copy") {
  const button = h("button", { type: "button", class: "button small", "aria-label": label },
    "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  return button;
}

// A monospace value with its copy button.
export function copyable(text, label) {
  return h("span", { class: "copyable" }, h("code", {}, text), copyButton(text, label));
}

// A modal confirmation; resolves true when confirmed. Uses <dialog> for focus handling.
export function confirmDialog({ title, text, confirm = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": "dialog-title" });
    const done = (value) => { dialog.close(); dialog.remove(); resolve(value); };
    dialog.append(
      h("h2", { id: "dialog-title" }, title),
      text ? h("p", {}, text) : null,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "button", onclick: () => done(false) }, "Cancel"),
        h("button", { type: "button", class: danger ? "button danger" : "button primary",
          onclick: () => done(true) }, confirm)),
    );
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// A data table. columns: [{label, cell(row) -> node|string, class?}]
export function table(columns, rows, { caption, rowAttrs } = {}) {
  return h("table", { class: "table" },
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
    h("tbody", {}, rows.map((row) => tableRow(columns, row, rowAttrs))));
}

export function tableRow(columns, row, rowAttrs) {
  return h("tr", rowAttrs ? rowAttrs(row) : {},
    columns.map((c) => h("td", { class: c.class }, c.cell(row))));
}

export function badge(text, tone = "neutral") {
  return h("span", { class: `badge ${tone}` }, text);
}

export function pageHeader(title, ...actions) {
  return h("header", { class: "page-header" }, h("h1", {}, title),
    actions.length ? h("div", { class: "actions" }, ...actions) : null);
}

// Field errors from a VALIDATION_ERROR, shown next to the fields of a form whose inputs carry
// `name` = the field's path; anything unmatched goes to the form's error box.
export function showFieldErrors(form, err) {
  for (const old of form.querySelectorAll(".field-error")) old.remove();
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  const unmatched = [];
  for (const detail of (err && err.details) || []) {
    const input = form.querySelector(`[name="${CSS.escape(detail.field || "")}"]`);
    if (!input) { unmatched.push(detail); continue; }
    const id = `${input.id || input.name}-error`;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", id);
    input.closest(".field")?.append(h("p", { class: "field-error", id }, detail.message));
  }
  return unmatched;
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
    hint ? h("p", { class: "hint" }, hint) : null);
}

export function toast(message, tone = "ok") {
  let region = document.getElementById("toasts");
  if (!region) {
    region = h("div", { id: "toasts", class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(region);
  }
  const item = h("div", { class: `toast ${tone}` }, message);
  region.append(item);
  setTimeout(() => item.remove(), 4000);
}

// ---- Helpers of the management pages (notifications, keys, settings, alerts) ----

// Why write controls are missing or disabled for this person.
export function readOnlyNote(text) {
  return h("p", { class: "read-only-note", role: "note" }, text);
}

// A secret shown this once: the warning, the value with its copy button, a way to dismiss it.
export function secretPanel(title, secret, note) {
  const panel = h("section", { class: "secret", "aria-label": title },
    h("h2", { tabindex: "-1" }, title),
    h("p", {}, h("strong", {}, "Copy it now: it will not be shown again. "), note || ""),
    h("p", {}, copyable(secret, `Copy ${title.toLowerCase()}`)));
  const dismiss = h("button", { type: "button", class: "button small" }, "I have stored it");
  dismiss.addEventListener("click", () => panel.remove());
  panel.append(dismiss);
  return panel;
}

// A URL with its path, query and credentials hidden: enough to recognise the host.
export function maskUrl(url) {
  try {
    const parsed = new URL(url);
    const path = parsed.pathname.length > 1 ? "/…" : "";
    return `${parsed.protocol}//${parsed.host}${path}`;
  } catch {
    return "•••";
  }
}

// A "Load more" button for a cursor listing: `load()` fetches the next page and redraws.
export function loadMoreButton(load, label = "Load more") {
  const button = h("button", { type: "button", class: "button" }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.textContent = "Loading…";
    try {
      await load();
    } catch (err) {
      if (err && err.name === "AbortError") return;
      button.replaceWith(errorBox(err, "More could not be loaded"));
    }
  });
  return button;
}

// A menu button: `label` opens a role=menu of items [{label, onSelect}] (arrows, Home/End,
// Escape and Tab close it, focus returns to the button).
export function menuButton(label, items) {
  const id = `menu-${Math.random().toString(36).slice(2, 9)}`;
  const button = h("button", { type: "button", class: "button", "aria-haspopup": "menu",
    "aria-expanded": "false", "aria-controls": id }, label, h("span", { "aria-hidden": "true" }, "▾"));
  const entries = items.map((item) => h("button", { type: "button", role: "menuitem", tabindex: "-1",
    onclick: () => { close(true); item.onSelect(); } }, item.label));
  const menu = h("div", { role: "menu", id, "aria-label": label, hidden: true }, entries);
  const wrapper = h("div", { class: "menu" }, button, menu);
  const focusItem = (i) => entries[(i + entries.length) % entries.length].focus();
  function open(index = 0) {
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    focusItem(index);
    document.addEventListener("pointerdown", outside, true);
  }
  function close(refocus) {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", outside, true);
    if (refocus) button.focus();
  }
  function outside(event) { if (!wrapper.contains(event.target)) close(false); }
  button.addEventListener("click", () => (menu.hidden ? open() : close(false)));
  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") { event.preventDefault(); open(0); }
    if (event.key === "ArrowUp") { event.preventDefault(); open(entries.length - 1); }
  });
  menu.addEventListener("keydown", (event) => {
    const i = entries.indexOf(document.activeElement);
    const moves = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: entries.length - 1 };
    if (event.key in moves) { event.preventDefault(); focusItem(moves[event.key]); }
    else if (event.key === "Escape") { event.preventDefault(); close(true); }
    else if (event.key === "Tab") close(false);
  });
  return wrapper;
}

// Any JSON value as a tree of <details>: objects and arrays fold, the first `openDepth` levels
// start open; strings, numbers, booleans and null are coloured by kind.
export function jsonTree(value, { openDepth = 1, name } = {}) {
  const key = (k) => (k === undefined ? null : h("span", { class: "json-key" }, `${k}: `));
  function node(v, k, depth) {
    if (v !== null && typeof v === "object") {
      const entries = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
      const summary = Array.isArray(v) ? `[${entries.length}]` : `{${entries.length}}`;
      if (!entries.length) return h("div", { class: "json-leaf" }, key(k), h("span", { class: "json-punct" }, Array.isArray(v) ? "[]" : "{}"));
      return h("details", { class: "json-node", open: depth < openDepth },
        h("summary", {}, key(k), h("span", { class: "json-punct" }, summary)),
        h("div", { class: "json-children" }, entries.map(([ck, cv]) => node(cv, ck, depth + 1))));
    }
    const kind = v === null ? "null" : typeof v;
    return h("div", { class: "json-leaf" }, key(k),
      h("span", { class: `json-${kind}` }, kind === "string" ? JSON.stringify(v) : String(v)));
  }
  return h("div", { class: "json-tree" }, node(value, name, 0));
}
