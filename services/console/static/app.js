// The shell: who is signed in, which project, the navigation, the theme, and the router that
// maps paths to page modules. The URL is the state: pages read `params` and `query` only.

import { api, onUnauthenticated, setProject } from "./api.js";
import { clear, errorBox, h, loading } from "./ui.js";

const NAV = [
  ["Overview", "/"],
  ["Logs", "/logs"],
  ["Workflows", "/workflows"],
  ["Alerts", "/alerts"],
  ["Notifications", "/notifications"],
  ["API keys", "/keys"],
  ["Settings", "/settings"],
];

// [pattern, page module, title]; `:name` segments become params.
const ROUTES = [
  ["/", "overview", "Overview"],
  ["/logs", "logs", "Logs"],
  ["/executions/:executionId", "execution", "Execution"],
  ["/workflows", "workflows", "Workflows"],
  ["/workflows/:workflowId", "workflow", "Workflow"],
  ["/alerts", "alerts", "Alerts"],
  ["/notifications", "notifications", "Notifications"],
  ["/notifications/new", "notificationform", "New notification"],
  ["/notifications/:id/edit", "notificationform", "Edit notification"],
  ["/notifications/:id", "notification", "Notification"],
  ["/keys", "keys", "API keys"],
  ["/settings", "settings", "Settings"],
  ["/sign-in", "signin", "Sign in", { public: true }],
  ["/invite", "invite", "Accept invitation", { public: true }],
];

const PROJECT_KEY = "cc.project";
const THEME_KEY = "cc.theme";

const shell = { session: null, project: null, cleanup: null, controller: null, main: null };

function match(pathname) {
  const parts = pathname.replace(/\/+$/, "").split("/").filter(Boolean);
  for (const [pattern, page, title, options] of ROUTES) {
    const want = pattern.split("/").filter(Boolean);
    if (want.length !== parts.length) continue;
    const params = {};
    const ok = want.every((segment, i) => {
      if (segment.startsWith(":")) {
        params[segment.slice(1)] = decodeURIComponent(parts[i]);
        return true;
      }
      return segment === parts[i];
    });
    if (ok) return { page, title, params, public: Boolean(options && options.public) };
  }
  return null;
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

// Replace the query of the current URL (a filter changed); empty values are dropped.
function setQuery(values, { replace = false } = {}) {
  const params = new URLSearchParams(location.search);
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined || value === null || value === "" || value === false) {
      params.delete(name);
    } else {
      params.set(name, String(value));
    }
  }
  const search = params.toString();
  navigate(location.pathname + (search ? `?${search}` : ""), { replace });
}

// The system's colour scheme rules until a person picks a theme with the toggle.
const darkScheme = matchMedia("(prefers-color-scheme: dark)");

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  const toggle = document.getElementById("theme-toggle");
  if (toggle) labelThemeToggle(toggle);
}

function chosenTheme() {
  const saved = localStorage.getItem(THEME_KEY);
  return saved === "light" || saved === "dark" ? saved : null;
}

function preferredTheme() {
  return chosenTheme() || (darkScheme.matches ? "dark" : "light");
}

darkScheme.addEventListener("change", () => {
  if (!chosenTheme()) applyTheme(preferredTheme());
});

export async function loadSession() {
  try {
    shell.session = await api.get("/api/v1/session", undefined, { quiet: true });
  } catch (err) {
    if (err.status === 401) shell.session = null;
    else throw err;
  }
  const memberships = (shell.session && shell.session.memberships) || [];
  const saved = localStorage.getItem(PROJECT_KEY);
  shell.project = memberships.find((m) => m.projectId === saved) || memberships[0] || null;
  setProject(shell.project ? shell.project.projectId : null);
  return shell.session;
}

// After sign-in or accepting an invitation: the session the API answered with.
export function signedIn(session) {
  shell.session = session;
  const memberships = session.memberships || [];
  shell.project = memberships[0] || null;
  setProject(shell.project ? shell.project.projectId : null);
}

async function signOut() {
  try {
    await api.send("DELETE", "/api/v1/session");
  } finally {
    shell.session = null;
    navigate("/sign-in", { replace: true });
  }
}

function navLink(label, href) {
  const here = location.pathname === href ||
    (href !== "/" && location.pathname.startsWith(href)) ||
    (href === "/logs" && location.pathname.startsWith("/executions/"));
  return h("li", {}, h("a", { href, "aria-current": here ? "page" : null }, label));
}

function projectSwitcher() {
  const memberships = shell.session.memberships || [];
  if (memberships.length <= 1) {
    return h("span", { class: "project-name" }, shell.project ? shell.project.projectName : "No project");
  }
  const select = h("select", { id: "project-switcher", "aria-label": "Project" },
    memberships.map((m) => h("option", { value: m.projectId,
      selected: shell.project && m.projectId === shell.project.projectId }, m.projectName)));
  select.addEventListener("change", () => {
    localStorage.setItem(PROJECT_KEY, select.value);
    shell.project = memberships.find((m) => m.projectId === select.value);
    setProject(select.value);
    navigate("/");
  });
  return select;
}

function labelThemeToggle(button) {
  const dark = document.documentElement.dataset.theme === "dark";
  button.textContent = dark ? "Light theme" : "Dark theme";
  button.setAttribute("aria-pressed", String(dark));
}

function themeToggle() {
  const button = h("button", { type: "button", class: "button ghost small", id: "theme-toggle" });
  button.addEventListener("click", () => {
    const theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    localStorage.setItem(THEME_KEY, theme);
    applyTheme(theme);
  });
  labelThemeToggle(button);
  return button;
}

function frame() {
  const main = h("main", { id: "main", tabindex: "-1" });
  const role = shell.project ? shell.project.role : "";
  const layout = h("div", { class: "layout" },
    h("aside", { class: "sidebar" },
      h("a", { class: "brand", href: "/" }, h("img", { src: "/assets/favicon.svg", alt: "" }),
        "CodeCourier"),
      h("nav", { "aria-label": "Main" }, h("ul", {}, NAV.map(([label, href]) => navLink(label, href))))),
    h("div", { class: "content" },
      h("header", { class: "topbar" },
        projectSwitcher(),
        role ? h("span", { class: "badge neutral", title: "Your role in this project" }, role) : null,
        h("span", { class: "spacer" }),
        themeToggle(),
        h("span", { class: "muted user-email" }, shell.session.user.email),
        h("button", { type: "button", class: "button ghost small", onclick: signOut }, "Sign out")),
      main));
  return { layout, main };
}

async function route() {
  if (shell.cleanup) { try { shell.cleanup(); } catch { /* a page's cleanup never blocks navigation */ } }
  shell.cleanup = null;
  if (shell.controller) shell.controller.abort();
  shell.controller = new AbortController();
  const app = document.getElementById("app");
  const found = match(location.pathname);
  if (found && !found.public && !shell.session) {
    const next = location.pathname + location.search;
    history.replaceState(null, "", `/sign-in${next !== "/" ? `?next=${encodeURIComponent(next)}` : ""}`);
    return route();
  }
  let root;
  if (found && found.public) {
    root = h("main", { id: "main", class: "public", tabindex: "-1" });
    clear(app, root);
  } else {
    const { layout, main } = frame();
    clear(app, layout);
    root = main;
  }
  app.setAttribute("aria-busy", "false");
  document.title = `${found ? found.title : "Not found"} · CodeCourier`;
  if (!found) {
    clear(root, h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "/" }, "Back to the overview")));
    return;
  }
  clear(root, loading());
  const ctx = {
    root,
    params: found.params,
    query: Object.fromEntries(new URLSearchParams(location.search)),
    navigate,
    setQuery,
    session: shell.session,
    project: shell.project,
    signal: shell.controller.signal,
  };
  try {
    const module = await import(`./pages/${found.page}.js`);
    const cleanup = await module.render(ctx);
    if (typeof cleanup === "function") shell.cleanup = cleanup;
  } catch (err) {
    if (err && err.name === "AbortError") return;
    clear(root, errorBox(err, "This page could not be shown"));
  }
}

// Same-origin links navigate inside the app; modified clicks keep the browser's behaviour.
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/")) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});

window.addEventListener("popstate", () => route());

onUnauthenticated(() => {
  shell.session = null;
  if (location.pathname !== "/sign-in") {
    navigate(`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
  }
});

async function boot() {
  applyTheme(preferredTheme());
  // The page's module loads while the session is asked for (route() imports it from the cache).
  const found = match(location.pathname);
  if (found) import(`./pages/${found.page}.js`).catch(() => {});
  try {
    await loadSession();
  } catch (err) {
    clear(document.getElementById("app"), errorBox(err, "The console could not start"));
    return;
  }
  await route();
}

boot();
