// Executions: the filterable, paged list. Every filter lives in the URL so
// a view can be shared; "live" refreshes the first page every few seconds.

import { get, limited, noteApp } from '../api.js';
import { h, mount, badge, notice, noDataHint } from '../dom.js';
import { num, dur, time, ago, shortId, WINDOWS, windowMs, toLocalInput, fromLocalInput } from '../format.js';

const LIVE_MS = 5000;
const FILTERS = ['pipeline', 'status', 'environment', 'range', 'from', 'to', 'q', 'min_duration_ms'];

/** In → out per execution, from its funnel; cached across renders. */
const funnelCache = new Map();
const funnelQueue = limited(4);

function loadFunnel(item, signal) {
  const key = `${item.execution_id}|${item.end_time || ''}|${item.step_count}`;
  if (!funnelCache.has(key)) {
    funnelCache.set(key, funnelQueue(() => (signal.aborted
      ? Promise.reject(new Error('aborted'))
      : get(`/executions/${encodeURIComponent(item.execution_id)}/funnel`, {}, { signal })))
      .catch((e) => { funnelCache.delete(key); throw e; }));
  }
  return funnelCache.get(key);
}

/** Query parameters for the API from the page's URL parameters. */
export function apiParams(p, now = Date.now()) {
  const out = {};
  for (const k of ['pipeline', 'status', 'environment', 'q', 'min_duration_ms', 'cursor']) {
    if (p.get(k)) out[k] = p.get(k);
  }
  const w = windowMs(p.get('range'));
  if (w) {
    out.from = new Date(now - w).toISOString();
  } else if (p.get('range') === 'custom') {
    if (p.get('from')) out.from = p.get('from');
    if (p.get('to')) out.to = p.get('to');
  }
  return out;
}

function statusBadge(st) {
  return badge(st, st === 'failed' ? 'bad' : st === 'running' ? 'info' : 'ok');
}

function filterForm(ctx, pipelines) {
  const p = ctx.params;
  const field = (label, control) => h('label', { class: 'field' }, h('span', label), control);
  const pipelineList = h('datalist', { id: 'pipeline-options' }, pipelines.map((n) => h('option', { value: n })));
  const range = h('select', { name: 'range' },
    h('option', { value: '' }, 'Any time'),
    WINDOWS.map(([c, label]) => h('option', { value: c, selected: p.get('range') === c }, label)),
    h('option', { value: 'custom', selected: p.get('range') === 'custom' }, 'Custom range…'));
  const from = h('input', { type: 'datetime-local', name: 'from', value: p.get('from') ? toLocalInput(p.get('from')) : '' });
  const to = h('input', { type: 'datetime-local', name: 'to', value: p.get('to') ? toLocalInput(p.get('to')) : '' });
  const custom = h('div', { class: 'custom-range', hidden: p.get('range') !== 'custom' },
    field('From', from), field('To', to));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter executions' },
    field('Pipeline', h('input', { name: 'pipeline', list: 'pipeline-options', value: p.get('pipeline') || '', placeholder: 'all', autocomplete: 'off' })),
    pipelineList,
    field('Status', h('select', { name: 'status' },
      ['', 'completed', 'failed', 'running'].map((v) => h('option', { value: v, selected: (p.get('status') || '') === v }, v || 'Any')))),
    field('Environment', h('input', { name: 'environment', value: p.get('environment') || '', placeholder: 'all', size: 10 })),
    field('Time', range),
    custom,
    field('Search', h('input', { type: 'search', name: 'q', value: p.get('q') || '', placeholder: 'execution id, trace id or tag', size: 24 })),
    field('Min duration (ms)', h('input', { type: 'number', min: 0, name: 'min_duration_ms', value: p.get('min_duration_ms') || '', size: 6 })),
    h('div', { class: 'filter-actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('a', { href: '/executions', class: 'button' }, 'Clear')));
  range.addEventListener('change', () => {
    custom.hidden = range.value !== 'custom';
    if (range.value !== 'custom') form.requestSubmit();
  });
  form.querySelector('select[name=status]').addEventListener('change', () => form.requestSubmit());
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    const u = new URLSearchParams();
    for (const k of FILTERS) {
      let v = (fd.get(k) || '').toString().trim();
      if ((k === 'from' || k === 'to')) v = fd.get('range') === 'custom' ? fromLocalInput(v) : '';
      if (v) u.set(k, v);
    }
    if (ctx.params.get('live')) u.set('live', '1');
    ctx.navigate(`/executions${u.toString() ? `?${u}` : ''}`, { keepScroll: true });
  });
  return form;
}

/** GET /executions → the table. */
export async function list(main, ctx) {
  ctx.title('Executions');
  const p = ctx.params;
  const hasFilters = FILTERS.some((k) => p.get(k));
  const live = p.get('live') === '1' && !p.get('cursor');
  const results = h('div', { class: 'results', 'aria-live': 'polite', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading executions…'));
  const liveBox = h('input', { type: 'checkbox', id: 'live', checked: p.get('live') === '1' });
  liveBox.addEventListener('change', () => {
    const u = new URLSearchParams(location.search);
    if (liveBox.checked) { u.set('live', '1'); u.delete('cursor'); } else u.delete('live');
    ctx.navigate(`/executions${u.toString() ? `?${u}` : ''}`, { replace: true, keepScroll: true });
  });
  const updated = h('span', { class: 'muted small', 'aria-live': 'off' });
  const compareBtn = h('button', { type: 'button', disabled: true }, 'Compare selected');
  const selected = new Map();
  const syncCompare = () => {
    const v = [...selected.values()];
    const ok = v.length === 2 && v[0].pipeline === v[1].pipeline;
    compareBtn.disabled = !ok;
    compareBtn.title = v.length === 2 && !ok ? 'Pick two executions of the same pipeline' : 'Tick two executions of one pipeline to compare them';
  };
  compareBtn.addEventListener('click', () => {
    const [a, b] = [...selected.values()].sort((x, y) => x.start_time.localeCompare(y.start_time));
    ctx.navigate(`/diff?a=${encodeURIComponent(a.execution_id)}&b=${encodeURIComponent(b.execution_id)}`);
  });
  syncCompare();

  // Pipelines for the filter's suggestions; failure here is not fatal.
  let pipelines = [];
  try {
    const r = await get('/pipelines', { from: new Date(Date.now() - 30 * 86400e3).toISOString() }, { signal: ctx.signal });
    pipelines = r.pipelines.map((x) => x.pipeline);
  } catch (e) {
    if (e.kind === 'unauthorized' || e.kind === 'unreachable') throw e;
  }

  mount(main,
    h('div', { class: 'page-head' },
      h('h1', 'Executions'),
      h('div', { class: 'head-actions' },
        h('label', { class: 'toggle', for: 'live' }, liveBox, ' Live refresh'),
        updated, compareBtn)),
    filterForm(ctx, pipelines),
    results);

  const load = async ({ quiet = false } = {}) => {
    if (!quiet) results.setAttribute('aria-busy', 'true');
    let page;
    try {
      page = await get('/executions', { ...apiParams(p), limit: 50 }, { signal: ctx.signal });
    } catch (e) {
      if (ctx.signal.aborted) return;
      ctx.showError(results, e, () => load());
      return;
    }
    results.setAttribute('aria-busy', 'false');
    updated.textContent = `updated ${time(new Date().toISOString()).slice(11)}`;
    if (page.items.length) noteApp(page.items[0].app);
    if (!page.items.length) {
      mount(results, hasFilters || p.get('cursor')
        ? notice('empty', 'No executions match these filters',
          h('p', 'Widen the time range or ', h('a', { href: '/executions' }, 'clear the filters'), '.'))
        : notice('empty', 'No data yet', h('p', 'X-Ray has not received any execution.'), noDataHint()));
      return;
    }
    mount(results, table(page.items, ctx, selected, syncCompare), pager(page, ctx));
  };
  await load();
  if (!live) return null;
  const timer = setInterval(() => { if (!document.hidden) load({ quiet: true }); }, LIVE_MS);
  return () => clearInterval(timer);
}

function table(items, ctx, selected, syncCompare) {
  const body = h('tbody');
  for (const it of items) {
    const href = `/executions/${encodeURIComponent(it.execution_id)}`;
    const inOut = h('td', { class: 'num inout' }, h('span', { class: 'muted' }, '…'));
    if (it.candidates_in !== undefined || it.candidates_out !== undefined) {
      mount(inOut, `${num(it.candidates_in)} → ${num(it.candidates_out)}`);
    } else {
      loadFunnel(it, ctx.signal).then(
        (f) => mount(inOut, f.candidates_in == null && f.candidates_out == null
          ? h('span', { class: 'muted' }, '—')
          : `${num(f.candidates_in)} → ${num(f.candidates_out)}`),
        () => mount(inOut, h('span', { class: 'muted', title: 'could not load the funnel' }, '?')));
    }
    const box = h('input', { type: 'checkbox', 'aria-label': `Select ${it.pipeline} ${it.execution_id} to compare`, checked: selected.has(it.execution_id) });
    box.addEventListener('change', () => {
      if (box.checked) selected.set(it.execution_id, it); else selected.delete(it.execution_id);
      syncCompare();
    });
    const row = h('tr', { class: it.status === 'failed' ? 'row-failed' : '' },
      h('td', { class: 'select' }, box),
      h('td', h('a', { href, class: 'strong' }, it.pipeline)),
      h('td', statusBadge(it.status)),
      h('td', it.environment || h('span', { class: 'muted' }, '—')),
      h('td', { title: `${it.start_time} (${ago(it.start_time)})` }, time(it.start_time)),
      h('td', { class: 'num' }, dur(it.duration_ms)),
      h('td', { class: 'num' }, num(it.step_count)),
      inOut,
      h('td', h('a', { href, class: 'mono', title: it.execution_id }, shortId(it.execution_id))));
    row.addEventListener('click', (e) => {
      if (e.target.closest('a, input, button')) return;
      ctx.navigate(href);
    });
    body.append(row);
  }
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data clickable' },
    h('caption', { class: 'offscreen' }, 'Executions, newest first'),
    h('thead', h('tr',
      h('th', { scope: 'col' }, h('span', { class: 'offscreen' }, 'Compare')),
      h('th', { scope: 'col' }, 'Pipeline'),
      h('th', { scope: 'col' }, 'Status'),
      h('th', { scope: 'col' }, 'Environment'),
      h('th', { scope: 'col' }, 'Started'),
      h('th', { scope: 'col', class: 'num' }, 'Duration'),
      h('th', { scope: 'col', class: 'num' }, 'Steps'),
      h('th', { scope: 'col', class: 'num' }, 'Candidates in → out'),
      h('th', { scope: 'col' }, 'Execution'))),
    body));
}

/** Cursors of the pages before the current one, for "Previous". */
const trail = [];

function pager(page, ctx) {
  const p = new URLSearchParams(location.search);
  const withCursor = (c) => {
    const u = new URLSearchParams(p);
    u.delete('cursor');
    if (c) { u.set('cursor', c); u.delete('live'); }
    return `/executions${u.toString() ? `?${u}` : ''}`;
  };
  const cur = p.get('cursor') || '';
  if (!cur) trail.length = 0;
  const older = page.next_cursor ? h('a', { class: 'button', href: withCursor(page.next_cursor), rel: 'next' }, 'Older →') : null;
  if (older) older.addEventListener('click', () => trail.push(cur));
  const prev = cur && trail.length ? h('button', { type: 'button', onclick: () => ctx.navigate(withCursor(trail.pop())) }, '← Newer') : null;
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    cur ? h('a', { class: 'button', href: withCursor('') }, '⇤ Newest') : null,
    prev,
    h('span', { class: 'muted small' }, `${page.items.length} shown`),
    older);
}
