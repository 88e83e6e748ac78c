// The only way the UI talks to X-Ray: the public dashboard API under
// /api/v1 of the same origin. Adds the API key kept in sessionStorage and
// turns every failure into an ApiError with a kind the views can explain.

const KEY_STORAGE = 'xray.apiKey';

/** Why a request failed. `kind` is one of: unreachable, unauthorized,
 * forbidden, not_found, bad_request, unavailable, server, aborted. */
export class ApiError extends Error {
  constructor(kind, message, status = 0, param = null) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.param = param;
  }
}

export function getKey() {
  try { return sessionStorage.getItem(KEY_STORAGE) || ''; } catch { return ''; }
}

export function setKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch { /* storage disabled: the key lives until reload */ }
  listeners.forEach((f) => f());
}

const listeners = new Set();
/** Calls `f` whenever the key changes. */
export function onKeyChange(f) { listeners.add(f); }

/** The app the data belongs to, as last seen in a response. */
let currentApp = '';
export function noteApp(app) {
  if (app && app !== currentApp) {
    currentApp = app;
    listeners.forEach((f) => f());
  }
}
export function app() { return currentApp; }

function kindOf(status, code) {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status === 400 || status === 422) return 'bad_request';
  if (status === 503 || status === 502 || status === 504) return 'unavailable';
  return code || 'server';
}

/**
 * GET /api/v1{path} with query `params` (empty values are left out).
 * Resolves to the JSON body; rejects with an ApiError.
 */
export async function get(path, params = {}, { signal } = {}) {
  const url = new URL(`/api/v1${path}`, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = { accept: 'application/json' };
  const key = getKey();
  if (key) headers.authorization = `Bearer ${key}`;
  let res;
  try {
    res = await fetch(url, { headers, signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw new ApiError('aborted', 'request cancelled');
    throw new ApiError('unreachable', `Cannot reach the X-Ray API at ${location.origin}.`);
  }
  let body = null;
  const text = await res.text().catch(() => '');
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!res.ok) {
    const message = (body && body.message) || text.trim() || `HTTP ${res.status}`;
    throw new ApiError(kindOf(res.status, body && body.code), message, res.status, body && body.param);
  }
  if (body === null) throw new ApiError('server', 'The API answered with something that is not JSON.', res.status);
  return body;
}

/** Runs `tasks` (functions returning promises) at most `n` at a time. */
export function limited(n) {
  let active = 0;
  const queue = [];
  const next = () => {
    if (active >= n || queue.length === 0) return;
    active += 1;
    const { task, resolve, reject } = queue.shift();
    task().then(resolve, reject).finally(() => { active -= 1; next(); });
  };
  return (task) => new Promise((resolve, reject) => { queue.push({ task, resolve, reject }); next(); });
}
