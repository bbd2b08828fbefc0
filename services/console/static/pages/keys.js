// API keys: the project's live keys, a form to generate one (its secret shown once, never kept
// beyond this page), and revocation with confirmation.
import { api } from "../api.js";
import {
  badge, clear, confirmDialog, copyable, emptyState, errorBox, field, formatTime, h, loading,
  pageHeader, readOnlyNote, showFieldErrors, table, toast,
} from "../ui.js";

const SCOPES = [
  "projects:read", "workflows:read", "runs:read", "runs:cancel", "logs:read", "events:write",
  "notifications:read", "notifications:write", "keys:read", "keys:write",
];

export async function render(ctx) {
  const canWrite = ctx.project && ctx.project.role !== "viewer";
  const state = { keys: [], cursor: null, hasMore: false };
  const secretSlot = h("div", { "aria-live": "polite" });
  const formSlot = h("div");
  const listSlot = h("div", {}, loading("Loading keys…"));
  const moreSlot = h("div", { class: "load-more" });
  const generate = h("button", { type: "button", class: "button primary", disabled: !canWrite,
    "aria-expanded": "false" }, "Generate new key");

  generate.addEventListener("click", () => {
    if (formSlot.firstChild) { clear(formSlot); generate.setAttribute("aria-expanded", "false"); return; }
    generate.setAttribute("aria-expanded", "true");
    clear(formSlot, keyForm());
    formSlot.querySelector("input").focus();
  });

  function keyForm() {
    const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off" });
    const expires = h("input", { name: "expiresAt", type: "date" });
    const scopes = SCOPES.map((scope) => h("label", {},
      h("input", { type: "checkbox", name: "scopes", value: scope }), scope));
    const status = h("div");
    const submit = h("button", { type: "submit", class: "button primary" }, "Create key");
    const cancel = h("button", { type: "button", class: "button" }, "Cancel");
    const form = h("form", { class: "card form-card", "aria-label": "New API key" },
      h("h2", {}, "New API key"),
      field("Name", name, "What uses this key, e.g. “CI deploy” or “billing export”."),
      h("fieldset", { class: "field" }, h("legend", {}, "Scopes"),
        h("p", { class: "hint" }, "Give the key only what its job needs."),
        h("div", { class: "checks scopes" }, scopes)),
      field("Expires on (optional)", expires, "The key stops working at the start of that day (UTC)."),
      status,
      h("div", { class: "actions" }, submit, cancel));
    cancel.addEventListener("click", () => { clear(formSlot); generate.setAttribute("aria-expanded", "false"); generate.focus(); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clear(status);
      const chosen = SCOPES.filter((_, i) => scopes[i].querySelector("input").checked);
      const body = { name: name.value.trim(), scopes: chosen };
      if (expires.value) body.expiresAt = new Date(`${expires.value}T00:00:00Z`).toISOString();
      if (!chosen.length) {
        showFieldErrors(form, { details: [{ field: "scopes", message: "Choose at least one scope." }] });
        return;
      }
      submit.disabled = true;
      try {
        const created = await api.send("POST", "/api/v1/keys", body, { signal: ctx.signal });
        clear(formSlot);
        generate.setAttribute("aria-expanded", "false");
        showSecret(created);
        state.keys.push(created);
        drawList();
      } catch (err) {
        if (err.name === "AbortError") return;
        const rest = showFieldErrors(form, err);
        if (rest.length || !(err.details || []).length) clear(status, errorBox(err, "The key was not created"));
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  function showSecret(created) {
    const dismiss = h("button", { type: "button", class: "button small" }, "I have stored it");
    dismiss.addEventListener("click", () => clear(secretSlot));
    clear(secretSlot, h("section", { class: "secret", "aria-labelledby": "secret-title" },
      h("h2", { id: "secret-title" }, `Secret of “${created.name}”`),
      h("p", {}, h("strong", {}, "Copy it now: it will not be shown again. "),
        "CodeCourier keeps only a hash; if it is lost, generate a new key and revoke this one."),
      h("p", {}, copyable(created.secret, "Copy secret")),
      h("p", { class: "small muted" }, "Use it as ", h("code", {}, "Authorization: Bearer <secret>"),
        " or ", h("code", {}, "x-api-key: <secret>"), "."),
      dismiss));
    secretSlot.querySelector("h2").setAttribute("tabindex", "-1");
    secretSlot.querySelector("h2").focus();
  }

  async function revoke(key) {
    const ok = await confirmDialog({
      title: `Revoke “${key.name}”?`,
      text: `Requests with the key ${key.prefix}… are refused from now on. This cannot be undone.`,
      confirm: "Revoke key", danger: true,
    });
    if (!ok) return;
    try {
      await api.send("DELETE", `/api/v1/keys/${encodeURIComponent(key.id)}`, undefined, { signal: ctx.signal });
      state.keys = state.keys.filter((k) => k.id !== key.id);
      toast(`Key “${key.name}” revoked.`);
      drawList();
    } catch (err) {
      if (err.name !== "AbortError") clear(secretSlot, errorBox(err, "The key was not revoked"));
    }
  }

  function expiry(key) {
    if (!key.expiresAt) return h("span", { class: "muted" }, "Never");
    const past = new Date(key.expiresAt).getTime() <= Date.now();
    return h("span", {}, formatTime(key.expiresAt), past ? " " : null, past ? badge("expired", "error") : null);
  }

  function drawList() {
    if (!state.keys.length) {
      clear(listSlot, emptyState("No API keys yet",
        "A key lets a program call the API: the runtime sends events with events:write, a script reads logs with logs:read.",
        canWrite ? h("p", {}, "Use “Generate new key” above, choose its scopes, and copy the secret shown once.") : null));
      return;
    }
    const columns = [
      { label: "Name", cell: (k) => h("strong", {}, k.name) },
      { label: "Prefix", cell: (k) => h("code", {}, `${k.prefix}…`) },
      { label: "Scopes", cell: (k) => h("div", { class: "tags" }, k.scopes.map((s) => badge(s))) },
      { label: "Created", cell: (k) => formatTime(k.createdAt) },
      { label: "Last used", cell: (k) => k.lastUsedAt ? formatTime(k.lastUsedAt) : h("span", { class: "muted" }, "Never") },
      { label: "Expires", cell: expiry },
    ];
    if (canWrite) {
      columns.push({ label: "Actions", cell: (k) => h("button", { type: "button", class: "button small danger",
        "aria-label": `Revoke ${k.name}`, onclick: () => revoke(k) }, "Revoke") });
    }
    clear(listSlot, table(columns, state.keys, { caption: "API keys" }));
  }

  async function loadPage() {
    const envelope = await api.list("/api/v1/keys", { limit: 50, cursor: state.cursor }, { signal: ctx.signal });
    state.keys.push(...envelope.data);
    state.cursor = envelope.nextCursor;
    state.hasMore = envelope.hasMore;
    drawList();
    clear(moreSlot);
    if (state.hasMore) {
      const more = h("button", { type: "button", class: "button" }, "Load more");
      more.addEventListener("click", async () => {
        more.disabled = true;
        more.textContent = "Loading…";
        try { await loadPage(); } catch (err) {
          if (err.name !== "AbortError") clear(moreSlot, errorBox(err, "More keys could not be loaded"));
        }
      });
      moreSlot.append(more);
    }
  }

  clear(ctx.root,
    pageHeader("API keys", generate),
    h("p", { class: "muted lead" }, "Keys authenticate programs against /api/v1. Each key belongs to this project and holds only the scopes it was given."),
    canWrite ? null : readOnlyNote("Viewers cannot create or revoke API keys."),
    secretSlot, formSlot, listSlot, moreSlot);
  try {
    await loadPage();
  } catch (err) {
    if (err.name === "AbortError") throw err;
    clear(listSlot, errorBox(err, "The keys could not be loaded"));
  }
  // The secret lives only in this page's DOM: leaving the page drops it.
  return () => clear(secretSlot);
}
