// Tiny DOM helpers: build elements without innerHTML, so nothing from the
// API is ever parsed as markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled') el[k] = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Creates an HTML element: h('a', {href: '/x'}, 'text', child). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs && (attrs instanceof Node || typeof attrs !== 'object' || Array.isArray(attrs))) {
    children.unshift(attrs);
  } else {
    apply(el, attrs);
  }
  append(el, children);
  return el;
}

/** Creates an SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A status or type badge. */
export function badge(text, kind) {
  return h('span', { class: ['badge', kind && `badge-${kind}`] }, text);
}

/** A message block for empty states and errors. */
export function notice(kind, title, ...body) {
  return h('div', { class: ['notice', `notice-${kind}`], role: kind === 'error' ? 'alert' : 'status' },
    h('h2', title), ...body);
}

/** Copies text to the clipboard, with a fallback for insecure origins. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h('textarea', { class: 'offscreen', 'aria-hidden': 'true' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    return ok;
  }
}

/** A button that copies `getText()` and says so. */
export function copyButton(getText, label = 'Copy') {
  const b = h('button', { type: 'button', class: 'small' }, label);
  b.addEventListener('click', async () => {
    const ok = await copyText(getText());
    b.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { b.textContent = label; }, 1500);
  });
  return b;
}

/** Links to a client-side route. */
export function link(href, ...children) {
  return h('a', { href }, ...children);
}

/** The hint shown wherever there is no data at all yet. */
export function noDataHint() {
  return h('div', { class: 'hint' },
    h('p', 'Send traces with the X-Ray SDK or any OpenTelemetry SDK: set ',
      h('code', `OTEL_EXPORTER_OTLP_ENDPOINT=http://${location.hostname}:4318`),
      ' (OTLP/HTTP; gRPC on :4317) and mark the execution span with ', h('code', 'xray.pipeline'), '.'),
    h('p', 'See ', h('a', { href: '/api/docs' }, 'the API reference'), ' and the X-Ray docs (docs/ui.md, the SDK README) for the semantic conventions.'));
}
