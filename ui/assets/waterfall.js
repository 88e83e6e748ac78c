// The execution waterfall: nested steps on a shared time axis, offsets and
// durations to scale. Virtualised: only the rows in view (plus a margin)
// exist in the DOM, so executions with tens of thousands of steps scroll
// smoothly. Keyboard: ↑/↓, PageUp/PageDown, Home/End move; ←/→ collapse,
// expand or go to the parent; Enter selects.

import { h } from './dom.js';
import { dur } from './format.js';

const ROW_H = 28;
const HEAD_H = 30; // the sticky time axis at the top of the scroller
const OVERSCAN = 12;

/** Flattens the step tree into rows in timeline order. */
export function flatten(steps) {
  const rows = [];
  const walk = (list, depth, parent) => {
    for (const st of list) {
      const idx = rows.length;
      rows.push({ step: st, depth, parent, hasChildren: (st.children || []).length > 0, descendants: 0 });
      walk(st.children || [], depth + 1, idx);
      rows[idx].descendants = rows.length - idx - 1;
    }
  };
  walk(steps, 0, -1);
  return rows;
}

/** Time scale of a timeline: [min offset, max end] in ms. */
function extent(rows, totalMs) {
  let lo = 0;
  let hi = totalMs || 0;
  for (const r of rows) {
    const o = r.step.offset_ms || 0;
    lo = Math.min(lo, o);
    hi = Math.max(hi, o + (r.step.duration_ms || 0));
  }
  return [lo, hi > lo ? hi : lo + 1];
}

function ticks(lo, hi) {
  const span = hi - lo;
  const raw = span / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((m) => m >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(t);
  return out;
}

/**
 * Builds a waterfall for `steps` (the API's nested timeline).
 * opts: { totalMs, selectedId, onSelect(step), label }
 * Returns { el, select(id), rows }.
 */
export function waterfall(steps, opts = {}) {
  const rows = flatten(steps);
  const [lo, hi] = extent(rows, opts.totalMs);
  const span = hi - lo;
  const collapsed = new Set();
  let visible = [];
  let active = 0; // index into visible
  let selectedId = opts.selectedId || null;
  const uid = `wf${Math.random().toString(36).slice(2, 8)}`;

  const recompute = () => {
    visible = [];
    for (let i = 0; i < rows.length; i++) {
      visible.push(i);
      if (collapsed.has(i)) i += rows[i].descendants;
    }
  };
  recompute();

  const axis = h('div', { class: 'wf-axis', 'aria-hidden': 'true' },
    h('div', { class: 'wf-axis-name' }, `${rows.length.toLocaleString('en-US')} step${rows.length === 1 ? '' : 's'}`),
    h('div', { class: 'wf-axis-track' }, ticks(lo, hi).map((t) => {
      const tick = h('span', { class: 'wf-tick' }, Math.abs(t) < 1e-9 ? '0' : dur(t));
      tick.style.left = `${((t - lo) / span) * 100}%`;
      return tick;
    })),
    h('div', { class: 'wf-axis-dur' }, 'duration'));
  const spacer = h('div', { class: 'wf-spacer' });
  // The axis sits inside the scroller (sticky) so it shares the rows'
  // width whatever the scrollbar takes.
  const scroller = h('div', {
    class: 'wf-scroll', tabindex: '0', role: 'tree',
    'aria-label': opts.label || 'Step timeline', 'aria-multiselectable': 'false',
  }, axis, spacer);
  const el = h('div', { class: 'waterfall' }, scroller);

  const rowEl = (vi) => {
    const ri = visible[vi];
    const r = rows[ri];
    const st = r.step;
    const failed = st.status === 'failed';
    const off = ((st.offset_ms || 0) - lo) / span;
    const width = (st.duration_ms || 0) / span;
    const bar = h('span', { class: ['wf-bar', `t-${st.type}`, failed && 'wf-failed', st.status === 'running' && 'wf-running', st.status === 'skipped' && 'wf-skipped'] });
    bar.style.left = `${off * 100}%`;
    bar.style.width = `max(2px, ${width * 100}%)`;
    const toggle = r.hasChildren
      ? h('span', { class: 'wf-toggle', 'aria-hidden': 'true', dataset: { toggle: String(ri) } }, collapsed.has(ri) ? '▸' : '▾')
      : h('span', { class: 'wf-toggle', 'aria-hidden': 'true' });
    const name = h('span', { class: 'wf-name' }, toggle,
      failed ? h('span', { class: 'wf-fail-icon', title: 'failed' }, '✕') : null,
      h('span', { class: 'wf-name-text' }, st.name),
      h('span', { class: `wf-type t-${st.type}` }, st.type));
    name.style.paddingLeft = `${6 + r.depth * 14}px`;
    const row = h('div', {
      class: ['wf-row', failed && 'is-failed', st.id === selectedId && 'is-selected', vi === active && 'is-active'],
      id: `${uid}-${ri}`, role: 'treeitem', 'aria-level': String(r.depth + 1),
      'aria-selected': st.id === selectedId ? 'true' : 'false',
      'aria-expanded': r.hasChildren ? String(!collapsed.has(ri)) : null,
      'aria-label': `${st.name}, ${st.type}, ${st.status}, ${dur(st.duration_ms)}`,
      dataset: { vi: String(vi), stepId: st.id },
    }, name,
    h('span', { class: 'wf-track' }, bar),
    h('span', { class: ['wf-dur', failed && 'text-bad'] }, dur(st.duration_ms)));
    row.style.transform = `translateY(${vi * ROW_H}px)`;
    return row;
  };

  let frame = 0;
  const paint = () => {
    frame = 0;
    spacer.style.height = `${visible.length * ROW_H}px`;
    // As tall as the rows, up to 62% of the window: short timelines leave no blank box.
    scroller.style.height = `${Math.min(HEAD_H + visible.length * ROW_H + 2, Math.max(320, Math.round(window.innerHeight * 0.62)))}px`;
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW_H) - OVERSCAN);
    const count = Math.ceil((scroller.clientHeight || 600) / ROW_H) + 2 * OVERSCAN;
    const last = Math.min(visible.length, first + count);
    const items = [];
    for (let vi = first; vi < last; vi++) items.push(rowEl(vi));
    spacer.replaceChildren(...items);
    if (visible.length) scroller.setAttribute('aria-activedescendant', `${uid}-${visible[active]}`);
  };
  const schedule = () => { if (!frame) frame = requestAnimationFrame(paint); };
  scroller.addEventListener('scroll', schedule, { passive: true });
  new ResizeObserver(schedule).observe(scroller);

  const ensureVisible = (vi) => {
    const top = HEAD_H + vi * ROW_H;
    if (top < scroller.scrollTop + HEAD_H) scroller.scrollTop = top - HEAD_H;
    else if (top + ROW_H > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW_H - scroller.clientHeight;
  };

  const choose = (vi, { notify = true } = {}) => {
    if (!visible.length) return;
    active = Math.max(0, Math.min(visible.length - 1, vi));
    const r = rows[visible[active]];
    selectedId = r.step.id;
    ensureVisible(active);
    paint();
    if (notify && opts.onSelect) opts.onSelect(r.step);
  };

  const setCollapsed = (ri, on) => {
    const cur = rows[visible[active]];
    if (on) collapsed.add(ri); else collapsed.delete(ri);
    recompute();
    const vi = visible.indexOf(rows.indexOf(cur));
    active = vi >= 0 ? vi : Math.max(0, visible.indexOf(ri));
    paint();
  };

  scroller.addEventListener('click', (e) => {
    const t = e.target.closest('[data-toggle]');
    if (t) { const ri = Number(t.dataset.toggle); setCollapsed(ri, !collapsed.has(ri)); return; }
    const row = e.target.closest('.wf-row');
    if (row) choose(Number(row.dataset.vi));
  });

  scroller.addEventListener('keydown', (e) => {
    const page = Math.max(1, Math.floor((scroller.clientHeight - HEAD_H) / ROW_H) - 1);
    const ri = visible[active];
    const r = rows[ri];
    switch (e.key) {
      case 'ArrowDown': choose(active + 1); break;
      case 'ArrowUp': choose(active - 1); break;
      case 'PageDown': choose(active + page); break;
      case 'PageUp': choose(active - page); break;
      case 'Home': choose(0); break;
      case 'End': choose(visible.length - 1); break;
      case 'ArrowRight':
        if (r && r.hasChildren && collapsed.has(ri)) setCollapsed(ri, false);
        else if (r && r.hasChildren) choose(active + 1);
        break;
      case 'ArrowLeft':
        if (r && r.hasChildren && !collapsed.has(ri)) setCollapsed(ri, true);
        else if (r && r.parent >= 0) choose(visible.indexOf(r.parent));
        break;
      case 'Enter': case ' ': choose(active); break;
      default: return;
    }
    e.preventDefault();
  });

  /** Selects the step with this id (expanding its ancestors). */
  const select = (id, { notify = false } = {}) => {
    const ri = rows.findIndex((r) => r.step.id === id);
    if (ri < 0) return false;
    let changed = false;
    for (let p = rows[ri].parent; p >= 0; p = rows[p].parent) {
      if (collapsed.delete(p)) changed = true;
    }
    if (changed) recompute();
    choose(visible.indexOf(ri), { notify });
    return true;
  };

  /** Moves to the next failed step after the active one, wrapping. */
  const nextFailed = () => {
    const n = rows.length;
    const start = visible[active] ?? -1;
    for (let k = 1; k <= n; k++) {
      const ri = (start + k) % n;
      if (rows[ri].step.status === 'failed') return select(rows[ri].step.id, { notify: true });
    }
    return false;
  };

  const found = selectedId ? rows.findIndex((r) => r.step.id === selectedId) : -1;
  if (found >= 0) active = visible.indexOf(found);
  requestAnimationFrame(() => { if (found >= 0) ensureVisible(active); paint(); });
  paint();
  return { el, select, nextFailed, rows, focus: () => scroller.focus() };
}
