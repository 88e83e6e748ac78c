// Pipelines: volume, failure rate and durations per pipeline over a window,
// and per pipeline the aggregated funnel with top rejection reasons.

import { get } from '../api.js';
import { h, mount, notice, noDataHint } from '../dom.js';
import { num, pct, dur, time, ago, WINDOWS, windowMs } from '../format.js';
import { funnelChart, barList, ratioBar } from '../charts.js';

const DEFAULT_WINDOW = '24h';

function windowOf(params) {
  const code = windowMs(params.get('window')) ? params.get('window') : DEFAULT_WINDOW;
  const to = new Date();
  return { code, from: new Date(to.getTime() - windowMs(code)).toISOString(), to: to.toISOString() };
}

function windowPicker(ctx, code, base) {
  const sel = h('select', { id: 'window', name: 'window' },
    WINDOWS.map(([c, label]) => h('option', { value: c, selected: c === code }, label)));
  sel.addEventListener('change', () => ctx.navigate(`${base}?window=${sel.value}`, { replace: true, keepScroll: true }));
  return h('label', { class: 'field inline', for: 'window' }, h('span', 'Window'), sel);
}

/** Link to the executions of a pipeline in the same window. */
function executionsHref(name, code, extra = {}) {
  const u = new URLSearchParams({ pipeline: name, range: code, ...extra });
  return `/executions?${u}`;
}

/** GET /pipelines → the table. */
export async function list(main, ctx) {
  ctx.title('Pipelines');
  const w = windowOf(ctx.params);
  mount(main, h('div', { class: 'page-head' }, h('h1', 'Pipelines'), windowPicker(ctx, w.code, '/pipelines')),
    h('p', { class: 'muted' }, 'Loading pipelines…'));
  const data = await get('/pipelines', { from: w.from, to: w.to }, { signal: ctx.signal });
  const rows = data.pipelines;
  let content;
  if (!rows.length) {
    let any = false;
    try {
      const r = await get('/executions', { limit: 1 }, { signal: ctx.signal });
      any = r.items.length > 0;
    } catch { any = true; }
    content = any
      ? notice('empty', 'No executions in this window', h('p', 'Pick a longer window above.'))
      : notice('empty', 'No data yet', h('p', 'X-Ray has not received any execution.'), noDataHint());
  } else {
    content = h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
      h('caption', { class: 'offscreen' }, `Pipelines over the ${w.code} window`),
      h('thead', h('tr',
        h('th', { scope: 'col' }, 'Pipeline'),
        h('th', { scope: 'col', class: 'num' }, 'Executions'),
        h('th', { scope: 'col', class: 'num' }, 'Failed'),
        h('th', { scope: 'col' }, 'Failure rate'),
        h('th', { scope: 'col', class: 'num' }, 'p50'),
        h('th', { scope: 'col', class: 'num' }, 'p95'),
        h('th', { scope: 'col', class: 'num' }, 'p99'),
        h('th', { scope: 'col' }, 'Last run'))),
      h('tbody', rows.map((p) => h('tr',
        h('td', h('a', { class: 'strong', href: `/pipelines/${encodeURIComponent(p.pipeline)}?window=${w.code}` }, p.pipeline)),
        h('td', { class: 'num' }, h('a', { href: executionsHref(p.pipeline, w.code) }, num(p.executions))),
        h('td', { class: 'num' }, p.failed ? h('a', { class: 'text-bad', href: executionsHref(p.pipeline, w.code, { status: 'failed' }) }, num(p.failed)) : '0'),
        h('td', h('span', { class: 'rate' }, ratioBar(p.failure_rate), pct(p.failure_rate))),
        h('td', { class: 'num' }, dur(p.p50_duration_ms)),
        h('td', { class: 'num' }, dur(p.p95_duration_ms)),
        h('td', { class: 'num' }, dur(p.p99_duration_ms)),
        h('td', { title: p.last_seen }, ago(p.last_seen)))))));
  }
  mount(main, h('div', { class: 'page-head' }, h('h1', 'Pipelines'), windowPicker(ctx, w.code, '/pipelines')),
    h('p', { class: 'muted' }, `${time(data.from)} to ${time(data.to)}`), content);
  return null;
}

/** GET /pipelines/{name}/funnel (+ its line of /pipelines) → one pipeline. */
export async function detail(main, ctx) {
  const name = ctx.args[0];
  ctx.title(name);
  const w = windowOf(ctx.params);
  const base = `/pipelines/${encodeURIComponent(name)}`;
  mount(main, h('p', { class: 'muted' }, 'Loading pipeline…'));
  const [all, funnel] = await Promise.all([
    get('/pipelines', { from: w.from, to: w.to }, { signal: ctx.signal }),
    get(`/pipelines/${encodeURIComponent(name)}/funnel`, { from: w.from, to: w.to }, { signal: ctx.signal }),
  ]);
  const p = all.pipelines.find((x) => x.pipeline === name);
  const head = [
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: `/pipelines?window=${w.code}` }, 'Pipelines'), ' / ', h('span', { 'aria-current': 'page' }, name)),
    h('div', { class: 'page-head' },
      h('h1', name),
      h('div', { class: 'head-actions' },
        windowPicker(ctx, w.code, base),
        h('a', { class: 'button', href: executionsHref(name, w.code) }, 'Executions'),
        h('a', { class: 'button', href: executionsHref(name, w.code, { status: 'failed' }) }, 'Failed executions'),
        h('a', { class: 'button', href: `/diff?pipeline=${encodeURIComponent(name)}` }, 'Compare two runs'))),
  ];
  if (!p && !funnel.steps.length) {
    mount(main, ...head, notice('empty', 'No executions of this pipeline in this window',
      h('p', 'Pick a longer window, or check the name on the ', h('a', { href: '/pipelines' }, 'pipelines page'), '.')));
    return null;
  }
  const stats = p ? h('dl', { class: 'stats' },
    [['Executions', h('a', { href: executionsHref(name, w.code) }, num(p.executions))],
      ['Failure rate', h('span', { class: p.failed ? 'text-bad' : '' }, pct(p.failure_rate), h('span', { class: 'muted small' }, ` (${num(p.failed)})`))],
      ['p50 duration', dur(p.p50_duration_ms)],
      ['p95 duration', dur(p.p95_duration_ms)],
      ['Last run', h('span', { title: p.last_seen }, ago(p.last_seen))],
    ].map(([k, v]) => h('div', { class: 'stat' }, h('dt', k), h('dd', v)))) : null;

  const counted = funnel.steps.filter((s) => s.runs_with_counts > 0);
  const rows = counted.map((s) => ({ id: s.name, name: s.name, type: s.type, cin: s.mean_candidates_in == null ? null : Math.round(s.mean_candidates_in), cout: s.mean_candidates_out == null ? null : Math.round(s.mean_candidates_out) }));
  const chart = rows.length ? h('div', { class: 'card' },
    h('h2', 'Funnel (mean candidates per run)'),
    funnelChart(rows, { label: `Mean candidate funnel of ${name}` }),
    h('p', { class: 'muted small' }, 'Steps ordered by their mean start offset. Light bar: mean candidates in; dark bar: mean candidates out (log scale).')) : null;

  const table = h('div', { class: 'card' }, h('h2', 'Steps'), h('div', { class: 'table-wrap' }, h('table', { class: 'data steps-table' },
    h('thead', h('tr',
      h('th', { scope: 'col' }, 'Step'),
      h('th', { scope: 'col', class: 'num' }, 'Runs'),
      h('th', { scope: 'col' }, 'Failure rate'),
      h('th', { scope: 'col', class: 'num' }, 'Mean in → out'),
      h('th', { scope: 'col', class: 'num' }, 'Mean drop'),
      h('th', { scope: 'col', class: 'num' }, 'p50 / p95'),
      h('th', { scope: 'col' }, 'Top rejection reasons'))),
    h('tbody', funnel.steps.map((s) => h('tr',
      h('td', h('span', { class: 'strong' }, s.name), ' ', h('span', { class: `type-badge t-${s.type}` }, s.type)),
      h('td', { class: 'num' }, num(s.runs)),
      h('td', h('span', { class: 'rate' }, ratioBar(s.failure_rate), pct(s.failure_rate))),
      h('td', { class: 'num' }, s.runs_with_counts ? `${num(Math.round(s.mean_candidates_in))} → ${num(Math.round(s.mean_candidates_out))}` : '—'),
      h('td', { class: ['num', s.mean_drop_rate > 0.5 && 'text-bad'] }, pct(s.mean_drop_rate)),
      h('td', { class: 'num' }, `${dur(s.p50_duration_ms)} / ${dur(s.p95_duration_ms)}`),
      h('td', { class: 'reasons' }, s.top_rejections.length
        ? reasons(s)
        : h('span', { class: 'muted' }, '—'))))))));

  mount(main, ...head, h('p', { class: 'muted' }, `${time(funnel.from)} to ${time(funnel.to)}`), stats, chart, table);
  return null;
}

function reasons(s) {
  const entries = s.top_rejections.map((r) => ({ label: r.reason, value: r.count }));
  const top = barList(entries.slice(0, 3), { label: `Top rejection reasons of ${s.name}`, max: entries[0].value, className: 'bars-compact' });
  if (entries.length <= 3) return top;
  return h('div', top, h('details', { class: 'more' }, h('summary', `${entries.length - 3} more`),
    barList(entries.slice(3), { label: `More rejection reasons of ${s.name}`, max: entries[0].value, className: 'bars-compact' })));
}
