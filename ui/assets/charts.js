// Inline SVG and HTML charts: the candidate funnel and horizontal bar lists
// (rejection histograms).

import { h, s } from './dom.js';
import { num, pct } from './format.js';

/**
 * The candidate funnel: one row per step that reported counts, a light bar
 * for candidates in and a solid bar for candidates out, the drop labelled.
 *
 * rows: [{ id, name, type, status, cin, cout }]
 * opts: { onSelect(id), selectedId, scale: 'log' | 'linear', label }
 */
export function funnelChart(rows, opts = {}) {
  const scale = opts.scale || 'log';
  const W = 960;
  const labelW = 230;
  const barX = labelW + 10;
  const barW = 470;
  const textX = barX + barW + 14;
  const rowH = 42;
  const top = 8;
  const H = top + rows.length * rowH + 8;
  const max = Math.max(1, ...rows.map((r) => Math.max(r.cin ?? 0, r.cout ?? 0)));
  const x = (v) => {
    if (!v || v <= 0) return 0;
    if (scale === 'linear') return (v / max) * barW;
    return ((Math.log10(v) + 1) / (Math.log10(max) + 1)) * barW;
  };
  const dropOf = (r) => (r.cin != null && r.cout != null ? r.cin - r.cout : null);
  let worst = null;
  for (const r of rows) {
    const d = dropOf(r);
    if (d != null && d > 0 && (worst === null || d > dropOf(worst))) worst = r;
  }
  const svg = s('svg', {
    class: 'funnel', viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'group',
    'aria-label': opts.label || 'Candidate funnel: candidates in and out per step',
  });
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const d = dropOf(r);
    const rate = d != null && r.cin > 0 ? d / r.cin : null;
    const selected = opts.selectedId && opts.selectedId === r.id;
    const summary = `${r.name}: ${num(r.cin)} in, ${num(r.cout)} out${d != null ? `, ${num(d)} dropped (${pct(rate)})` : ''}`;
    const g = s('g', {
      class: ['f-row', r === worst && 'f-worst', selected && 'f-selected', r.status === 'failed' && 'f-failed'],
      transform: `translate(0 ${y})`,
      tabindex: opts.onSelect ? '0' : null,
      role: opts.onSelect ? 'button' : 'img',
      'aria-label': summary + (r === worst ? ' — largest drop' : ''),
      dataset: { stepId: r.id || '' },
    });
    g.append(s('title', {}, summary));
    g.append(s('rect', { class: 'f-hit', x: 0, y: 0, width: W, height: rowH - 4, rx: 4 }));
    const name = r.name.length > 30 ? `${r.name.slice(0, 29)}…` : r.name;
    g.append(s('text', { class: 'f-label', x: labelW, y: 17, 'text-anchor': 'end' }, name));
    g.append(s('text', { class: 'f-type', x: labelW, y: 32, 'text-anchor': 'end' }, r.type || ''));
    if (r.cin != null) g.append(s('rect', { class: 'f-in', x: barX, y: 6, width: Math.max(2, x(r.cin)), height: 24, rx: 3 }));
    if (r.cout != null) g.append(s('rect', { class: 'f-out', x: barX, y: 6, width: Math.max(r.cout > 0 ? 2 : 0, x(r.cout)), height: 24, rx: 3 }));
    g.append(s('text', { class: 'f-count', x: textX, y: 17 }, `${num(r.cin)} → ${num(r.cout)}`));
    if (d != null) {
      g.append(s('text', { class: ['f-drop', d > 0 && 'f-drop-pos'], x: textX, y: 33 },
        d > 0 ? `−${num(d)} dropped (${pct(rate)})` : d < 0 ? `+${num(-d)} added` : 'none dropped'));
    }
    if (r === worst) {
      g.append(s('text', { class: 'f-worst-tag', x: W - 6, y: 17, 'text-anchor': 'end' }, 'largest drop'));
    }
    if (opts.onSelect) {
      g.addEventListener('click', () => opts.onSelect(r.id));
      g.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); opts.onSelect(r.id); }
      });
    }
    svg.append(g);
  });
  return svg;
}

/**
 * A horizontal bar list: [{ label, value, note }] → bars proportional to
 * the largest value. Used for rejection histograms.
 */
export function barList(entries, { label = 'Histogram', max: fixedMax, className = '' } = {}) {
  const max = fixedMax || Math.max(1, ...entries.map((e) => e.value));
  return h('ul', { class: ['bars', className], 'aria-label': label },
    entries.map((e) => {
      const fill = h('span', { class: 'bar-fill' });
      fill.style.width = `${Math.max(0.5, (e.value / max) * 100)}%`;
      return h('li', { class: 'bar-row' },
        h('span', { class: 'bar-label', title: e.label }, e.label),
        h('span', { class: 'bar-track', 'aria-hidden': 'true' }, fill),
        h('span', { class: 'bar-value' }, num(e.value), e.note ? h('span', { class: 'muted small' }, ` ${e.note}`) : null));
    }));
}

/** A tiny inline ratio bar (failure rates in tables). */
export function ratioBar(r, kind = 'bad') {
  const fill = h('span', { class: `ratio-fill ratio-${kind}` });
  fill.style.width = `${Math.min(100, Math.max(0, (r || 0) * 100))}%`;
  return h('span', { class: 'ratio', 'aria-hidden': 'true' }, fill);
}
