// Entry point: client-side routing, the API-key dialog, the session bar and
// the error/empty states shared by every view.

import { ApiError, getKey, setKey, onKeyChange, app } from './api.js';
import { h, mount, notice } from './dom.js';
import * as executions from './views/executions.js';
import * as execution from './views/execution.js';
import * as pipelines from './views/pipelines.js';
import * as diff from './views/diff.js';

const main = document.getElementById('main');

const routes = [
  [/^\/$/, executions.list, 'executions'],
  [/^\/executions\/?$/, executions.list, 'executions'],
  [/^\/executions\/([^/]+)\/?$/, execution.detail, 'executions'],
  [/^\/pipelines\/?$/, pipelines.list, 'pipelines'],
  [/^\/pipelines\/([^/]+)\/?$/, pipelines.detail, 'pipelines'],
  [/^\/diff\/?$/, diff.view, 'diff'],
  [/^\/diff\/([^/]+)\/([^/]+)\/?$/, diff.view, 'diff'],
];

let current = null; // { controller, cleanup }

/** Goes to a client-side URL (`/executions?x=1`). */
export function navigate(url, { replace = false, keepScroll = false } = {}) {
  const target = new URL(url, location.origin);
  if (target.origin !== location.origin) { location.href = url; return; }
  if (replace) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  render({ keepScroll });
}

/** Changes query parameters of the current URL without re-rendering. */
export function setParams(changes, { push = false } = {}) {
  const u = new URL(location.href);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined || v === null || v === '' || v === false) u.searchParams.delete(k);
    else u.searchParams.set(k, v === true ? '1' : v);
  }
  if (push) history.pushState(null, '', u);
  else history.replaceState(null, '', u);
}

/** Shows an API failure in `el`, with what the user can do about it. */
export function showError(el, err, retry) {
  if (!(err instanceof ApiError)) {
    console.error(err);
    err = new ApiError('server', String(err && err.message ? err.message : err));
  }
  if (err.kind === 'aborted') return;
  const retryButton = retry ? h('button', { type: 'button', onclick: retry }, 'Retry') : null;
  let box;
  switch (err.kind) {
    case 'unreachable':
      box = notice('error', 'Cannot reach the X-Ray API',
        h('p', `No answer from ${location.origin}/api/v1. Is `, h('code', 'xray serve'), ' (or ', h('code', 'xray dashboard-api'), ') running, and is this the right address?'),
        retryButton);
      break;
    case 'unauthorized':
      box = notice('error', 'API key required',
        h('p', getKey() ? 'The API rejected this key: ' : 'This server requires an API key. ', err.message),
        h('button', { type: 'button', class: 'primary', onclick: () => askKey(getKey() ? 'The API rejected the key you entered. Check it and try again.' : '') }, 'Enter API key'));
      askKey(getKey() ? 'The API rejected the key you entered. Check it and try again.' : '');
      break;
    case 'forbidden':
      box = notice('error', 'Not allowed', h('p', err.message, ' — this key may belong to another app.'), retryButton);
      break;
    case 'not_found':
      box = notice('error', 'Not found', h('p', err.message), h('p', h('a', { href: '/executions' }, 'Back to executions')));
      break;
    case 'bad_request':
      box = notice('error', 'The API did not accept this request', h('p', err.message));
      break;
    case 'unavailable':
      box = notice('error', 'The store is unavailable', h('p', 'The API is up but its database does not answer: ', err.message), retryButton);
      break;
    default:
      box = notice('error', 'Something went wrong', h('p', err.message), retryButton);
  }
  mount(el, box);
}

// ---- API key dialog -------------------------------------------------------

const dialog = document.getElementById('key-dialog');
const keyForm = document.getElementById('key-form');
const keyInput = document.getElementById('key-input');
const keyMessage = document.getElementById('key-message');

function askKey(message) {
  if (dialog.open) return;
  keyMessage.textContent = message || 'This X-Ray server requires an API key to read data.';
  keyInput.value = '';
  dialog.showModal();
  keyInput.focus();
}

keyForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  dialog.close();
  setKey(key);
  render();
});
document.getElementById('key-cancel').addEventListener('click', () => dialog.close());

// ---- session bar -----------------------------------------------------------

function renderSession() {
  const el = document.getElementById('session');
  const parts = [];
  if (app()) parts.push(h('span', { class: 'app', title: 'The app this data belongs to' }, 'app ', h('strong', app())));
  if (getKey()) {
    parts.push(h('button', { type: 'button', class: 'small', onclick: () => { setKey(''); render(); } }, 'Forget API key'));
  }
  mount(el, ...parts);
}
onKeyChange(renderSession);

// ---- routing -------------------------------------------------------------

async function render({ keepScroll = false } = {}) {
  if (current) {
    current.controller.abort();
    if (current.cleanup) try { current.cleanup(); } catch (e) { console.error(e); }
  }
  const controller = new AbortController();
  current = { controller, cleanup: null };
  const path = location.pathname;
  let view = null;
  let match = null;
  let section = '';
  for (const [re, f, sec] of routes) {
    match = path.match(re);
    if (match) { view = f; section = sec; break; }
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!keepScroll) window.scrollTo(0, 0);
  if (!view) {
    document.title = 'Not found · X-Ray';
    mount(main, notice('error', 'No such page', h('p', h('a', { href: '/executions' }, 'Go to executions'))));
    return;
  }
  const ctx = {
    params: new URLSearchParams(location.search),
    args: match.slice(1).map(decodeURIComponent),
    signal: controller.signal,
    navigate,
    setParams,
    showError,
    title: (t) => { document.title = `${t} · X-Ray`; },
  };
  try {
    const cleanup = await view(main, ctx);
    if (current && current.controller === controller) current.cleanup = cleanup || null;
    else if (cleanup) cleanup();
  } catch (e) {
    if (!controller.signal.aborted) showError(main, e, () => render());
  }
}

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  e.preventDefault();
  if (url.href === location.href) return;
  navigate(url.pathname + url.search + url.hash);
});

window.addEventListener('popstate', () => render({ keepScroll: true }));

renderSession();
render();
