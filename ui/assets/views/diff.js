// Diff: pick two executions of a pipeline and see them side by side, what
// changed highlighted (step status, candidate counts, rejections, output,
// reasoning; durations as deltas).

import { get } from '../api.js';
import { h, mount, badge, notice } from '../dom.js';
import { num, dur, delta, time, shortId } from '../format.js';
import { jsonView } from '../json.js';

function statusBadge(st) {
  return badge(st, st === 'failed' ? 'bad' : st === 'running' ? 'info' : st === 'skipped' ? 'muted' : 'ok');
}

const CHANGE_KIND = { unchanged: 'muted', changed: 'warn', added: 'good', removed: 'bad' };

function option(it) {
  return `${time(it.start_time)} · ${it.status} · ${dur(it.duration_ms)} · ${shortId(it.execution_id)}`;
}

async function picker(ctx, pipeline, a, b) {
  const since = new Date(Date.now() - 30 * 86400e3).toISOString();
  const [pl, ex] = await Promise.all([
    get('/pipelines', { from: since }, { signal: ctx.signal }),
    pipeline ? get('/executions', { pipeline, limit: 100 }, { signal: ctx.signal }) : Promise.resolve({ items: [] }),
  ]);
  const names = pl.pipelines.map((p) => p.pipeline);
  if (pipeline && !names.includes(pipeline)) names.unshift(pipeline);
  const items = ex.items;
  for (const id of [a, b]) {
    if (id && !items.some((i) => i.execution_id === id)) {
      items.push({ execution_id: id, start_time: null, status: '?', duration_ms: null });
    }
  }
  const pipeSel = h('select', { name: 'pipeline', id: 'diff-pipeline' },
    h('option', { value: '' }, names.length ? 'Choose a pipeline…' : 'No pipelines yet'),
    names.map((n) => h('option', { value: n, selected: n === pipeline }, n)));
  const runSel = (nameAttr, id, chosen, fallbackIndex) => h('select', { name: nameAttr, id, disabled: !pipeline || items.length < 1 },
    items.map((it, i) => h('option', { value: it.execution_id, selected: chosen ? it.execution_id === chosen : i === fallbackIndex }, it.start_time ? option(it) : it.execution_id)));
  // Defaults: the newest run as b, the one before it as a.
  const aSel = runSel('a', 'diff-a', a, Math.min(1, items.length - 1));
  const bSel = runSel('b', 'diff-b', b, 0);
  pipeSel.addEventListener('change', () => ctx.navigate(`/diff?pipeline=${encodeURIComponent(pipeSel.value)}`, { replace: true, keepScroll: true }));
  const form = h('form', { class: 'filters diff-picker', 'aria-label': 'Choose executions to compare' },
    h('label', { class: 'field', for: 'diff-pipeline' }, h('span', 'Pipeline'), pipeSel),
    h('label', { class: 'field', for: 'diff-a' }, h('span', 'Run A (before)'), aSel),
    h('label', { class: 'field', for: 'diff-b' }, h('span', 'Run B (after)'), bSel),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'primary', disabled: !pipeline || items.length < 2 }, 'Compare')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const u = new URLSearchParams({ pipeline: pipeSel.value, a: aSel.value, b: bSel.value });
    ctx.navigate(`/diff?${u}`);
  });
  const hint = pipeline && items.length < 2
    ? notice('empty', 'Not enough runs', h('p', `Comparing needs two executions of ${pipeline}; found ${items.length}.`))
    : null;
  return [form, hint];
}

function inOut(side) {
  if (!side) return '';
  if (side.candidates_in == null && side.candidates_out == null) return '—';
  return `${num(side.candidates_in)} → ${num(side.candidates_out)}`;
}

function sideBySide(title, a, b, changed, render) {
  return h('div', { class: ['compare', changed && 'diff-changed-block'] },
    h('h4', title, changed ? h('span', { class: 'badge badge-warn' }, 'differs') : null),
    h('div', { class: 'compare-cols' },
      h('div', { class: 'compare-col' }, h('div', { class: 'muted small' }, 'A'), render(a)),
      h('div', { class: 'compare-col' }, h('div', { class: 'muted small' }, 'B'), render(b))));
}

const renderJson = (side) => (side && side.output !== null && side.output !== undefined
  ? jsonView(side.output, { openDepth: 1 }) : h('span', { class: 'muted' }, 'none'));
const renderText = (field) => (side) => (side && side[field]
  ? h('p', { class: 'reasoning' }, side[field]) : h('span', { class: 'muted' }, 'none'));
const renderRejections = (side) => {
  const e = side ? Object.entries(side.rejections || {}) : [];
  if (!e.length) return h('span', { class: 'muted' }, 'none');
  return h('ul', { class: 'plain' }, e.sort((x, y) => y[1] - x[1]).map(([r, c]) => h('li', `${r}: ${num(c)}`)));
};

function stepRows(d, onlyChanges) {
  const rows = [];
  for (const s of d.steps) {
    if (onlyChanges && s.change === 'unchanged') continue;
    const ch = new Set(s.changed_fields);
    const cell = (side, fields, content) => h('td', { class: [fields.some((f) => ch.has(f)) && 'diff-changed', 'num'] }, side ? content : h('span', { class: 'muted' }, '—'));
    const expand = h('button', { type: 'button', class: 'link expand', 'aria-expanded': 'false' }, '▸ ', s.name, s.occurrence ? h('span', { class: 'muted' }, ` #${s.occurrence + 1}`) : null);
    const detailRow = h('tr', { class: 'diff-detail', hidden: true },
      h('td', { colspan: '9' }, h('div', { class: 'compare-grid' },
        sideBySide('Output', s.a, s.b, ch.has('output'), renderJson),
        sideBySide('Reasoning', s.a, s.b, ch.has('reasoning'), renderText('reasoning')),
        sideBySide('Rejections', s.a, s.b, ch.has('rejections'), renderRejections))));
    expand.addEventListener('click', () => {
      detailRow.hidden = !detailRow.hidden;
      expand.setAttribute('aria-expanded', String(!detailRow.hidden));
      expand.firstChild.textContent = detailRow.hidden ? '▸ ' : '▾ ';
    });
    rows.push(h('tr', { class: `change-${s.change}` },
      h('th', { scope: 'row' }, expand),
      h('td', badge(s.change, CHANGE_KIND[s.change]),
        s.changed_fields.length ? h('div', { class: 'changed-fields small' }, s.changed_fields.join(', ')) : null),
      h('td', { class: ch.has('status') ? 'diff-changed' : '' }, s.a ? statusBadge(s.a.status) : h('span', { class: 'muted' }, '—')),
      cell(s.a, ['candidates_in', 'candidates_out'], inOut(s.a)),
      cell(s.a, [], dur(s.a && s.a.duration_ms)),
      h('td', { class: ch.has('status') ? 'diff-changed' : '' }, s.b ? statusBadge(s.b.status) : h('span', { class: 'muted' }, '—')),
      cell(s.b, ['candidates_in', 'candidates_out'], inOut(s.b)),
      cell(s.b, [], dur(s.b && s.b.duration_ms)),
      h('td', { class: 'num' }, delta(s.duration_delta_ms))), detailRow);
  }
  return rows;
}

function result(d, ctx) {
  const changed = new Set(d.changed_fields);
  const counts = { changed: 0, added: 0, removed: 0, unchanged: 0 };
  for (const s of d.steps) counts[s.change] = (counts[s.change] || 0) + 1;
  const card = (label, e) => h('div', { class: 'card run-card' },
    h('h2', label, ' ', h('a', { class: 'mono', href: `/executions/${encodeURIComponent(e.execution_id)}` }, shortId(e.execution_id))),
    h('dl', { class: 'kv' },
      h('dt', 'Status'), h('dd', { class: changed.has('status') ? 'diff-changed' : '' }, statusBadge(e.status)),
      h('dt', 'Started'), h('dd', time(e.start_time)),
      h('dt', 'Duration'), h('dd', dur(e.duration_ms)),
      h('dt', 'Steps'), h('dd', { class: changed.has('step_count') ? 'diff-changed' : '' }, num(e.step_count)),
      e.error ? [h('dt', 'Error'), h('dd', { class: ['text-bad', changed.has('error') && 'diff-changed'] }, e.error)] : null),
    h('div', { class: changed.has('output') ? 'diff-changed-block' : '' },
      e.output !== null && e.output !== undefined ? jsonView(e.output, { title: 'Output', openDepth: 1 }) : h('p', { class: 'muted' }, 'No output recorded.')));
  const only = h('input', { type: 'checkbox', id: 'only-changes', checked: ctx.params.get('changes') === '1' });
  const tbody = h('tbody');
  const drawRows = () => mount(tbody, stepRows(d, only.checked));
  only.addEventListener('change', () => { ctx.setParams({ changes: only.checked ? '1' : null }); drawRows(); });
  drawRows();
  const summary = h('p', { class: 'lead diff-summary' },
    `${counts.changed} step${counts.changed === 1 ? '' : 's'} changed, ${counts.added} added, ${counts.removed} removed, ${counts.unchanged} unchanged. `,
    `B took ${delta(d.duration_delta_ms)} relative to A.`,
    d.changed_fields.length ? h('span', ' Execution fields that differ: ', d.changed_fields.map((f) => h('span', { class: 'badge badge-warn' }, f))) : null);
  return h('div', { class: 'diff-result' },
    summary,
    h('div', { class: 'run-cards' }, card('A', d.a), card('B', d.b)),
    h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', 'Steps'), h('label', { class: 'toggle', for: 'only-changes' }, only, ' Only differences')),
      h('div', { class: 'table-wrap' }, h('table', { class: 'data diff-table' },
        h('thead',
          h('tr', h('th', { scope: 'col', rowspan: '2' }, 'Step'), h('th', { scope: 'col', rowspan: '2' }, 'Change'),
            h('th', { scope: 'colgroup', colspan: '3', class: 'group' }, 'Run A'), h('th', { scope: 'colgroup', colspan: '3', class: 'group' }, 'Run B'),
            h('th', { scope: 'col', rowspan: '2', class: 'num' }, 'Δ duration')),
          h('tr', h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col', class: 'num' }, 'In → out'), h('th', { scope: 'col', class: 'num' }, 'Duration'),
            h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col', class: 'num' }, 'In → out'), h('th', { scope: 'col', class: 'num' }, 'Duration'))),
        tbody)),
      h('p', { class: 'muted small' }, 'Highlighted cells differ between the runs. Open a step to compare its output, reasoning and rejections.')));
}

/** /diff?pipeline=&a=&b= (or /diff/{a}/{b}) → the picker and the comparison. */
export async function view(main, ctx) {
  ctx.title('Compare');
  let a = ctx.args[0] || ctx.params.get('a') || '';
  let b = ctx.args[1] || ctx.params.get('b') || '';
  let pipeline = ctx.params.get('pipeline') || '';
  mount(main, h('h1', 'Compare executions'), h('p', { class: 'muted' }, 'Loading…'));
  let diff = null;
  let diffError = null;
  if (a && b) {
    try {
      diff = await get(`/executions/${encodeURIComponent(a)}/diff/${encodeURIComponent(b)}`, {}, { signal: ctx.signal });
      pipeline = diff.a.pipeline;
    } catch (e) {
      if (e.kind === 'unauthorized' || e.kind === 'unreachable' || e.kind === 'aborted') throw e;
      diffError = e;
    }
  } else if (a && !pipeline) {
    try {
      pipeline = (await get(`/executions/${encodeURIComponent(a)}/funnel`, {}, { signal: ctx.signal })).pipeline;
    } catch (e) {
      if (e.kind === 'unauthorized' || e.kind === 'unreachable' || e.kind === 'aborted') throw e;
    }
  }
  const [form, hint] = await picker(ctx, pipeline, a, b);
  const out = h('div');
  if (diff) {
    ctx.title(`Compare ${diff.a.pipeline}`);
    mount(out, result(diff, ctx));
  } else if (diffError) {
    ctx.showError(out, diffError);
  } else if (!hint) {
    mount(out, h('p', { class: 'muted' }, pipeline ? 'Choose two runs and press Compare.' : 'Choose a pipeline, then two of its runs.'));
  }
  mount(main, h('h1', 'Compare executions'), form, hint, out);
  return null;
}
