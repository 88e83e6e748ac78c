// Number, time and duration formatting shared by every view.

const nf = new Intl.NumberFormat('en-US');

/** 12,345 or an em dash. */
export function num(n) {
  return n === null || n === undefined ? '—' : nf.format(n);
}

/** 12.5% from a 0..1 ratio. */
export function pct(r, digits = 1) {
  if (r === null || r === undefined || Number.isNaN(r)) return '—';
  let text = (r * 100).toFixed(digits);
  // Never round a partial drop to 100% (or a tiny one to 0%).
  for (let d = digits + 1; d <= digits + 3 && ((r < 1 && r > 0.99 && Number(text) >= 100) || (r > 0 && r < 0.01 && Number(text) === 0)); d++) {
    text = (r * 100).toFixed(d);
  }
  return `${text}%`;
}

/** A duration in milliseconds, human-sized: 840 µs, 12.3 ms, 1.24 s, 2 m 05 s. */
export function dur(ms) {
  if (ms === null || ms === undefined) return '—';
  const a = Math.abs(ms);
  const sign = ms < 0 ? '−' : '';
  if (a < 1) return `${sign}${Math.round(a * 1000)} µs`;
  if (a < 10) return `${sign}${a.toFixed(2)} ms`;
  if (a < 1000) return `${sign}${a.toFixed(a < 100 ? 1 : 0)} ms`;
  if (a < 60000) return `${sign}${(a / 1000).toFixed(2)} s`;
  const m = Math.floor(a / 60000);
  const s = Math.round((a % 60000) / 1000);
  if (m < 60) return `${sign}${m} m ${String(s).padStart(2, '0')} s`;
  return `${sign}${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} m`;
}

/** A signed delta: +120 ms / −1.2 s. */
export function delta(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms === 0) return '±0';
  return ms > 0 ? `+${dur(ms)}` : dur(ms);
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Local date and time, `2026-11-22 01:06:10`. */
export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `3 min ago`, for tooltips and summaries. */
export function ago(iso, now = Date.now()) {
  if (!iso) return '';
  const s = Math.round((now - new Date(iso).getTime()) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A value for `<input type="datetime-local">` from an ISO instant. */
export function toLocalInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** An ISO instant from an `<input type="datetime-local">` value. */
export function fromLocalInput(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

/** Time windows offered everywhere, in milliseconds. */
export const WINDOWS = [
  ['15m', 'Last 15 minutes', 15 * 60e3],
  ['1h', 'Last hour', 3600e3],
  ['6h', 'Last 6 hours', 6 * 3600e3],
  ['24h', 'Last 24 hours', 24 * 3600e3],
  ['7d', 'Last 7 days', 7 * 86400e3],
  ['30d', 'Last 30 days', 30 * 86400e3],
];

/** The length of a window code, or null. */
export function windowMs(code) {
  const w = WINDOWS.find(([c]) => c === code);
  return w ? w[2] : null;
}

/** A short id for tables: first 8 characters. */
export function shortId(id) {
  return id && id.length > 12 ? `${id.slice(0, 8)}…` : id;
}
