// The console's one way to reach the API: same origin, the session cookie, the CSRF token,
// the chosen project; every failure becomes an ApiError that pages show with its request id.

export class ApiError extends Error {
  constructor(status, code, message, requestId, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details || [];
  }
}

const state = { projectId: null, onUnauthenticated: null };

export function setProject(projectId) {
  state.projectId = projectId;
}

export function currentProject() {
  return state.projectId;
}

// Called once by the shell: what to do when the session is gone (go to the sign-in page).
export function onUnauthenticated(handler) {
  state.onUnauthenticated = handler;
}

function cookie(name) {
  const prefix = `${name}=`;
  for (const part of document.cookie.split(";")) {
    const item = part.trim();
    if (item.startsWith(prefix)) return decodeURIComponent(item.slice(prefix.length));
  }
  return "";
}

export function queryString(query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    params.set(name, Array.isArray(value) ? value.join(",") : String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

async function request(method, path, { query, body, signal, quiet } = {}) {
  const headers = { Accept: "application/json" };
  if (state.projectId) headers["X-Project-Id"] = state.projectId;
  if (method !== "GET" && method !== "HEAD") {
    headers["X-CSRF-Token"] = cookie("cc_csrf");
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path + queryString(query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "NETWORK", "The API could not be reached. Check that it is running.", "", []);
  }
  const requestId = response.headers.get("X-Request-ID") || "";
  if (response.status === 204) return { data: null, requestId };
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    const failure = new ApiError(
      response.status,
      error.code || "HTTP_" + response.status,
      error.message || `The API answered ${response.status}.`,
      error.requestId || requestId,
      error.details,
    );
    if (response.status === 401 && !quiet && state.onUnauthenticated) state.onUnauthenticated();
    throw failure;
  }
  return { ...(payload || {}), requestId, response };
}

export const api = {
  // The `data` of a GET.
  async get(path, query, options = {}) {
    return (await request("GET", path, { ...options, query })).data;
  },
  // The whole list envelope: {data, nextCursor, hasMore, ...}.
  async list(path, query, options = {}) {
    return request("GET", path, { ...options, query });
  },
  // POST/PATCH/PUT/DELETE; returns the `data` (null for 204).
  async send(method, path, body, options = {}) {
    return (await request(method, path, { ...options, body })).data;
  },
  request,
};
