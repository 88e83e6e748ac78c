// A collapsible, copyable JSON viewer built from <details> elements, so it
// is keyboard-accessible without any script of its own.

import { h, copyButton } from './dom.js';

const MAX_CHILDREN = 200;

function scalar(v) {
  if (v === null) return h('span', { class: 'j-null' }, 'null');
  switch (typeof v) {
    case 'string': return h('span', { class: 'j-str' }, JSON.stringify(v));
    case 'number': return h('span', { class: 'j-num' }, String(v));
    case 'boolean': return h('span', { class: 'j-bool' }, String(v));
    default: return h('span', String(v));
  }
}

function preview(v) {
  if (Array.isArray(v)) return `[${v.length} item${v.length === 1 ? '' : 's'}]`;
  const n = Object.keys(v).length;
  return `{${n} key${n === 1 ? '' : 's'}}`;
}

function node(key, v, depth, openDepth) {
  const label = key === null ? null : h('span', { class: 'j-key' }, typeof key === 'number' ? `${key}` : JSON.stringify(key), ': ');
  if (v === null || typeof v !== 'object') {
    return h('div', { class: 'j-row' }, label, scalar(v));
  }
  const entries = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
  if (entries.length === 0) return h('div', { class: 'j-row' }, label, h('span', { class: 'j-punct' }, Array.isArray(v) ? '[]' : '{}'));
  const d = h('details', { class: 'j-node' });
  d.open = depth < openDepth;
  const body = h('div', { class: 'j-children' });
  let filled = false;
  const fill = () => {
    if (filled) return;
    filled = true;
    const shown = entries.slice(0, MAX_CHILDREN);
    body.append(...shown.map(([k, x]) => node(k, x, depth + 1, openDepth)));
    if (entries.length > MAX_CHILDREN) {
      let at = MAX_CHILDREN;
      const more = h('button', { type: 'button', class: 'small link' }, `Show ${entries.length - at} more`);
      more.addEventListener('click', () => {
        const next = entries.slice(at, at + 1000);
        at += next.length;
        more.before(...next.map(([k, x]) => node(k, x, depth + 1, openDepth)));
        if (at >= entries.length) more.remove();
        else more.textContent = `Show ${entries.length - at} more`;
      });
      body.append(more);
    }
  };
  // Children are built on first open: big payloads cost nothing until looked at.
  if (d.open) fill();
  d.addEventListener('toggle', () => { if (d.open) fill(); });
  d.append(h('summary', label, h('span', { class: 'j-punct' }, preview(v))), body);
  return d;
}

/**
 * A viewer for `value` (any JSON value; strings that are not JSON are shown
 * as text). `title` labels it; nested levels below `openDepth` start closed.
 */
export function jsonView(value, { title = '', copyLabel = '', openDepth = 2 } = {}) {
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  const root = h('div', { class: 'json' });
  const tree = h('div', { class: 'j-tree' });
  const setAll = (open) => {
    // Opening builds children lazily, which may add closed nodes: repeat
    // (bounded) until every node is in the wanted state.
    for (let pass = 0; pass < (open ? 16 : 1); pass++) {
      const todo = [...tree.querySelectorAll('details')].filter((d) => d.open !== open);
      if (todo.length === 0) break;
      for (const d of todo) { d.open = open; d.dispatchEvent(new Event('toggle')); }
    }
  };
  const isTree = value !== null && typeof value === 'object';
  root.append(h('div', { class: 'json-bar' },
    h('span', { class: 'json-title' }, title),
    isTree ? h('button', { type: 'button', class: 'small', onclick: () => setAll(true) }, 'Expand all') : null,
    isTree ? h('button', { type: 'button', class: 'small', onclick: () => setAll(false) }, 'Collapse all') : null,
    copyButton(() => text, copyLabel || (title ? `Copy ${title.toLowerCase()}` : 'Copy'))));
  if (isTree) tree.append(node(null, value, 0, openDepth));
  else if (typeof value === 'string') tree.append(h('pre', { class: 'j-text' }, value));
  else tree.append(h('div', { class: 'j-row' }, scalar(value)));
  root.append(tree);
  return root;
}
