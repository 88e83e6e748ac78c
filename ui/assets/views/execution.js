// Execution detail: header, the waterfall with a side panel per step, and
// the funnel tab (candidates per step, drops, rejection histograms).

import { get, noteApp } from '../api.js';
import { h, mount, badge, notice, copyButton } from '../dom.js';
import { num, pct, dur, time, ago } from '../format.js';
import { jsonView } from '../json.js';
import { funnelChart, barList } from '../charts.js';
import { waterfall } from '../waterfall.js';

const CANDIDATE_PAGE = 100;

function statusBadge(st) {
  return badge(st, st === 'failed' ? 'bad' : st === 'running' ? 'info' : st === 'skipped' ? 'muted' : 'ok');
}

function typeBadge(t) {
  return h('span', { class: `type-badge t-${t}` }, t);
}

function isEmpty(v) {
  return v === null || v === undefined || v === '' ||
    (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0);
}

function section(title, ...content) {
  return h('section', { class: 'panel-section' }, h('h3', title), ...content);
}

function dl(pairs) {
  const items = pairs.filter(([, v]) => v !== null && v !== undefined && v !== '');
  if (!items.length) return null;
  return h('dl', { class: 'kv' }, items.map(([k, v]) => [h('dt', k), h('dd', v)]));
}

/** Rejection histogram entries of a funnel step (histogram + sampled). */
function rejectionEntries(rejections) {
  return (rejections || []).map((r) => ({ label: r.reason, value: r.count, note: r.source === 'sampled' ? '(sampled)' : '' }));
}

function candidatesTable(cands) {
  if (!cands || !cands.length) return null;
  const wrap = h('div');
  const filter = h('select', { 'aria-label': 'Show candidates with decision' },
    h('option', { value: '' }, `All (${cands.length})`),
    ['selected', 'accepted', 'rejected'].map((d) => {
      const n = cands.filter((c) => c.decision === d).length;
      return n ? h('option', { value: d }, `${d} (${n})`) : null;
    }));
  let shown = CANDIDATE_PAGE;
  const draw = () => {
    const list = filter.value ? cands.filter((c) => c.decision === filter.value) : cands;
    const rows = list.slice(0, shown).map((c) => h('tr', { class: `cand-${c.decision}` },
      h('td', { class: 'mono' }, c.id),
      h('td', badge(c.decision, c.decision === 'rejected' ? 'bad' : c.decision === 'selected' ? 'good' : 'ok')),
      h('td', c.reason || h('span', { class: 'muted' }, '—')),
      h('td', { class: 'num' }, c.score == null ? '—' : Number(c.score).toFixed(3))));
    const more = list.length > shown
      ? h('button', { type: 'button', class: 'small', onclick: () => { shown += CANDIDATE_PAGE * 5; draw(); } }, `Show more (${list.length - shown} left)`)
      : null;
    mount(wrap, h('table', { class: 'data compact' },
      h('thead', h('tr', h('th', { scope: 'col' }, 'Candidate'), h('th', { scope: 'col' }, 'Decision'), h('th', { scope: 'col' }, 'Reason'), h('th', { scope: 'col', class: 'num' }, 'Score'))),
      h('tbody', rows)), more);
  };
  filter.addEventListener('change', () => { shown = CANDIDATE_PAGE; draw(); });
  draw();
  return h('div', h('div', { class: 'section-tools' }, filter), wrap);
}

/** The side panel for one step. `funnelStep` carries merged rejections. */
function stepPanel(st, funnelStep) {
  if (!st) {
    return h('div', { class: 'panel-empty' }, h('p', 'Select a step in the timeline (click, or focus the timeline and use the arrow keys) to see its input, output, reasoning and candidates.'));
  }
  const cin = st.candidates_in;
  const cout = st.candidates_out;
  const dropped = cin != null && cout != null ? cin - cout : null;
  const rej = funnelStep ? rejectionEntries(funnelStep.rejections)
    : Object.entries(st.rejections || {}).map(([label, value]) => ({ label, value })).sort((a, b) => b.value - a.value);
  const model = dl([
    ['Model', st.model], ['Provider', st.provider],
    ['Input tokens', st.input_tokens != null ? num(st.input_tokens) : null],
    ['Output tokens', st.output_tokens != null ? num(st.output_tokens) : null],
    ['Cost', st.cost != null ? String(st.cost) : null],
    ['Confidence', st.confidence != null ? String(st.confidence) : null],
  ]);
  const meta = Object.entries(st.metadata || {});
  return h('div', { class: 'step-panel' },
    h('div', { class: 'panel-head' },
      h('h2', { id: 'step-title' }, st.name),
      h('div', { class: 'badges' }, typeBadge(st.type), statusBadge(st.status)),
      h('p', { class: 'muted small' }, `starts at +${dur(st.offset_ms)} · takes ${dur(st.duration_ms)} · span `, h('code', st.id))),
    st.error ? h('div', { class: 'error-box', role: 'note' }, h('strong', 'Error: '), st.error) : null,
    cin != null || cout != null
      ? section('Candidates', h('p', { class: 'big-inout' }, `${num(cin)} in → ${num(cout)} out`,
        dropped != null && dropped > 0 ? h('span', { class: 'text-bad' }, ` (−${num(dropped)}, ${pct(cin > 0 ? dropped / cin : null)})`) : null))
      : null,
    st.reasoning ? section('Reasoning', h('p', { class: 'reasoning' }, st.reasoning)) : null,
    rej.length ? section('Rejections', barList(rej, { label: `Rejection reasons of ${st.name}` })) : null,
    model ? section('Model', model) : null,
    section('Input', isEmpty(st.input) ? h('p', { class: 'muted' }, 'none recorded') : jsonView(st.input, { copyLabel: 'Copy input' })),
    section('Output', isEmpty(st.output) ? h('p', { class: 'muted' }, 'none recorded') : jsonView(st.output, { copyLabel: 'Copy output' })),
    meta.length ? section('Metadata', dl(meta)) : null,
    st.candidates && st.candidates.length ? section(`Sampled candidates (${num(st.candidates.length)})`, candidatesTable(st.candidates)) : null);
}

function indexSteps(tree) {
  const byId = new Map();
  const walk = (list) => { for (const s of list) { byId.set(s.id, s); walk(s.children || []); } };
  walk(tree);
  return byId;
}

function header(ex, funnel) {
  const overall = funnel && (funnel.candidates_in != null || funnel.candidates_out != null)
    ? `${num(funnel.candidates_in)} → ${num(funnel.candidates_out)}` : null;
  return h('div', { class: 'exec-head' },
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
      h('a', { href: '/executions' }, 'Executions'), ' / ',
      h('a', { href: `/executions?pipeline=${encodeURIComponent(ex.pipeline)}` }, ex.pipeline), ' / ',
      h('span', { 'aria-current': 'page', class: 'mono' }, ex.execution_id)),
    h('div', { class: 'page-head' },
      h('h1', ex.pipeline, ' ', statusBadge(ex.status)),
      h('div', { class: 'head-actions' },
        copyButton(() => location.href, 'Copy link'),
        h('a', { class: 'button', href: `/pipelines/${encodeURIComponent(ex.pipeline)}` }, 'Pipeline'),
        h('a', { class: 'button', href: `/diff?pipeline=${encodeURIComponent(ex.pipeline)}&a=${encodeURIComponent(ex.execution_id)}` }, 'Compare with…'))),
    h('dl', { class: 'facts' },
      [['Started', h('span', { title: ex.start_time }, `${time(ex.start_time)} (${ago(ex.start_time)})`)],
        ['Duration', dur(ex.duration_ms)],
        ['Steps', num(ex.step_count)],
        ['Candidates', overall],
        ['Environment', ex.environment || null],
        ['Service', ex.service || null],
        ['Execution', h('code', ex.execution_id)],
        ['Trace', h('code', ex.trace_id)],
        ['Tags', ex.tags && ex.tags.length ? ex.tags.join(', ') : null],
      ].filter(([, v]) => v).map(([k, v]) => h('div', h('dt', k), h('dd', v)))),
    ex.error ? h('div', { class: 'error-box', role: 'note' }, h('strong', 'Execution failed: '), ex.error) : null);
}

function ioBlock(ex) {
  const hasIn = !isEmpty(ex.input);
  const hasOut = !isEmpty(ex.output);
  const meta = Object.entries(ex.metadata || {});
  if (!hasIn && !hasOut && !meta.length) return null;
  return h('details', { class: 'exec-io' },
    h('summary', 'Execution input, output and metadata'),
    h('div', { class: 'io-grid' },
      hasIn ? jsonView(ex.input, { title: 'Input', openDepth: 1 }) : null,
      hasOut ? jsonView(ex.output, { title: 'Output', openDepth: 1 }) : null,
      meta.length ? dl(meta) : null));
}

function tabs(active, onChange) {
  const names = [['timeline', 'Timeline'], ['funnel', 'Funnel']];
  const list = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Execution views' });
  const buttons = names.map(([id, label]) => h('button', {
    type: 'button', role: 'tab', id: `tab-${id}`, 'aria-controls': `tabpanel-${id}`,
    'aria-selected': String(id === active), tabindex: id === active ? '0' : '-1',
    onclick: () => onChange(id),
  }, label));
  list.append(...buttons);
  list.addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
    const i = names.findIndex(([id]) => id === active);
    const next = names[(i + (e.key === 'ArrowRight' ? 1 : names.length - 1)) % names.length][0];
    onChange(next);
    document.getElementById(`tab-${next}`)?.focus();
  });
  return list;
}

/** GET /executions/{id} and /funnel → the detail page. */
export async function detail(main, ctx) {
  const id = ctx.args[0];
  ctx.title(id);
  mount(main, h('p', { class: 'muted' }, 'Loading execution…'));
  const [data, funnel] = await Promise.all([
    get(`/executions/${encodeURIComponent(id)}`, {}, { signal: ctx.signal }),
    get(`/executions/${encodeURIComponent(id)}/funnel`, {}, { signal: ctx.signal }).catch((e) => {
      if (e.kind === 'aborted') throw e;
      return null;
    }),
  ]);
  const ex = data.execution;
  noteApp(ex.app);
  ctx.title(`${ex.pipeline} ${id}`);
  const byId = indexSteps(data.steps);
  const funnelById = new Map((funnel ? funnel.steps : []).map((f) => [f.id, f]));
  let tab = ctx.params.get('tab') === 'funnel' ? 'funnel' : 'timeline';
  let selectedId = ctx.params.get('step');
  if (selectedId && !byId.has(selectedId)) selectedId = null;

  const panel = h('aside', { class: 'side-panel', 'aria-labelledby': 'step-title', tabindex: '-1' });
  const showStep = (sid) => {
    selectedId = sid;
    ctx.setParams({ step: sid });
    mount(panel, stepPanel(byId.get(sid), funnelById.get(sid)));
  };

  const failedCount = [...byId.values()].filter((s) => s.status === 'failed').length;
  const body = h('div', { class: 'tab-body' });
  const tabBar = h('div');
  const switchTab = (t) => {
    tab = t;
    ctx.setParams({ tab: t === 'timeline' ? null : t });
    draw();
  };
  const draw = () => {
    mount(tabBar, tabs(tab, switchTab));
    if (tab === 'timeline') drawTimeline(); else drawFunnel();
  };

  const drawTimeline = () => {
    if (!byId.size) {
      mount(body, h('div', { id: 'tabpanel-timeline', role: 'tabpanel', 'aria-labelledby': 'tab-timeline' },
        notice('empty', 'No steps recorded', h('p', 'This execution has no steps yet. Steps are child spans of the execution span, or span events with ', h('code', 'xray.step.type'), '.'))));
      return;
    }
    const wf = waterfall(data.steps, {
      totalMs: ex.duration_ms, selectedId, label: `Steps of ${ex.pipeline}`,
      onSelect: (st) => showStep(st.id),
    });
    const tools = h('div', { class: 'section-tools' },
      failedCount ? h('button', { type: 'button', class: 'small', onclick: () => { if (wf.nextFailed()) wf.focus(); } }, `Next failed step (${failedCount})`) : null,
      h('span', { class: 'muted small' }, 'Bars: offset and duration to scale. ↑/↓ to move, ←/→ to fold.'));
    mount(body, h('div', { id: 'tabpanel-timeline', role: 'tabpanel', 'aria-labelledby': 'tab-timeline', class: 'split' },
      h('div', { class: 'split-main' }, tools, wf.el), panel));
    mount(panel, stepPanel(selectedId ? byId.get(selectedId) : null, selectedId ? funnelById.get(selectedId) : null));
  };

  const drawFunnel = () => {
    const rows = (funnel ? funnel.steps : [])
      .filter((f) => f.candidates_in != null || f.candidates_out != null)
      .map((f) => ({ id: f.id, name: f.name, type: f.type, status: f.status, cin: f.candidates_in, cout: f.candidates_out }));
    const withRejections = (funnel ? funnel.steps : []).filter((f) => f.rejections && f.rejections.length);
    if (!rows.length && !withRejections.length) {
      mount(body, h('div', { id: 'tabpanel-funnel', role: 'tabpanel', 'aria-labelledby': 'tab-funnel' },
        notice('empty', 'No candidate counts', h('p', 'No step of this execution reported ', h('code', 'xray.step.candidates.in'), ' / ', h('code', 'xray.step.candidates.out'), ' or rejections.'))));
      return;
    }
    let scale = 'log';
    const chartBox = h('div', { class: 'chart-box' });
    const open = (sid) => { selectedId = sid; ctx.setParams({ step: sid }); switchTab('timeline'); };
    const drawChart = () => mount(chartBox, funnelChart(rows, { scale, selectedId, onSelect: open, label: `Candidate funnel of ${ex.pipeline} ${ex.execution_id}` }));
    const scaleSel = h('select', { 'aria-label': 'Bar scale' }, h('option', { value: 'log' }, 'Log scale'), h('option', { value: 'linear' }, 'Linear scale'));
    scaleSel.addEventListener('change', () => { scale = scaleSel.value; drawChart(); });
    drawChart();
    const summary = funnel && funnel.candidates_in != null
      ? h('p', { class: 'lead' }, `${num(funnel.candidates_in)} candidates in, ${num(funnel.candidates_out)} out`,
        funnel.drop_rate != null ? ` — ${pct(funnel.drop_rate)} dropped overall.` : '.')
      : null;
    mount(body, h('div', { id: 'tabpanel-funnel', role: 'tabpanel', 'aria-labelledby': 'tab-funnel' },
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', 'Candidate funnel'), scaleSel),
        summary,
        rows.length ? chartBox : h('p', { class: 'muted' }, 'No step reported candidate counts.'),
        h('p', { class: 'muted small' }, 'Light bar: candidates in; dark bar: candidates out. Click a step to open it in the timeline.')),
      withRejections.length ? h('div', { class: 'card' },
        h('h2', 'Rejection reasons per step'),
        h('div', { class: 'hist-grid' }, withRejections.map((f) => h('div', { class: 'hist' },
          h('h3', h('a', { href: `?step=${encodeURIComponent(f.id)}`, onclick: (e) => { e.preventDefault(); open(f.id); } }, f.name), ' ', typeBadge(f.type),
            f.dropped != null ? h('span', { class: 'muted small' }, ` ${num(f.dropped)} dropped`) : null),
          barList(rejectionEntries(f.rejections), { label: `Rejection reasons of ${f.name}` }))))) : null));
  };

  mount(main, header(ex, funnel), ioBlock(ex), tabBar, body);
  draw();
  return null;
}
