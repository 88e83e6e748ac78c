// Loads the data the UI tests look at into a running `xray serve`:
//
// 1. the competitor-selection pipeline, by running the SDK's real example
//    (sdk/examples/competitor_selection.rs, `--runs N --json`) against the
//    collector over OTLP/gRPC: one execution per run, one of them failing,
//    every step recorded by the SDK exactly as a user's program would. The
//    example prints what each run recorded (ids, candidate counts,
//    rejection reasons, selection); that is the tests' expectation;
// 2. two more pipelines the example does not cover, as OTLP/JSON POSTed to
//    /v1/traces: a small support-triage pipeline, and one execution with
//    10,000 nested steps for the virtualised waterfall. Deterministic: the
//    same seed gives the same ids and counts.
//
// Usage: node load-data.mjs <otlp-http-url> <otlp-grpc-url> <api-url> <manifest.json>
// Environment: XRAY_EXAMPLE_BIN, the built competitor_selection example.
// Waits until the API shows every execution, then writes a manifest of what
// was loaded for the tests.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

const [otlp, grpc, api, manifestPath] = process.argv.slice(2);
const exampleBin = process.env.XRAY_EXAMPLE_BIN;
if (!otlp || !grpc || !api || !manifestPath || !exampleBin) {
  console.error('usage: XRAY_EXAMPLE_BIN=<competitor_selection> node load-data.mjs <otlp-http-url> <otlp-grpc-url> <api-url> <manifest.json>');
  process.exit(2);
}

// --- competitor selection: the SDK example ------------------------------------
const RUNS = 6; // the example's five products, then the first one again
function runExample() {
  // Only the variables the example reads: OTEL_* for the exporter.
  const env = { PATH: process.env.PATH, OTEL_EXPORTER_OTLP_ENDPOINT: grpc, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' };
  const out = execFileSync(exampleBin, ['--runs', String(RUNS), '--json'], { env, encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'inherit'] });
  return out.trim().split('\n').map((line) => JSON.parse(line));
}

// --- deterministic helpers -------------------------------------------------
let seed = 0x5eed1234;
function rand() { // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const hex = (n) => Array.from({ length: n }, () => Math.floor(rand() * 16).toString(16)).join('');
const MS = 1_000_000n;
const now = BigInt(Date.now()) * MS;

function attr(key, value) {
  if (typeof value === 'string') return { key, value: { stringValue: value } };
  if (typeof value === 'boolean') return { key, value: { boolValue: value } };
  if (Number.isInteger(value)) return { key, value: { intValue: String(value) } };
  if (typeof value === 'number') return { key, value: { doubleValue: value } };
  // Arrays of strings (xray.tags) are OTLP arrays; structured values
  // (objects, arrays of decisions) are JSON text, as the conventions say.
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
    return { key, value: { arrayValue: { values: value.map((v) => ({ stringValue: v })) } } };
  }
  return { key, value: { stringValue: JSON.stringify(value) } };
}

function span({ traceId, spanId, parentSpanId = '', name, start, end, attrs, error }) {
  return {
    traceId, spanId, parentSpanId, name, kind: 1,
    startTimeUnixNano: String(start), endTimeUnixNano: String(end),
    attributes: Object.entries(attrs).filter(([, v]) => v !== undefined && v !== null).map(([k, v]) => attr(k, v)),
    status: error ? { code: 2, message: error } : { code: 1 },
  };
}

function request(service, environment, spans) {
  return {
    resourceSpans: [{
      resource: { attributes: [attr('service.name', service), attr('deployment.environment.name', environment)] },
      scopeSpans: [{ scope: { name: 'xray-ui-e2e', version: '1' }, spans }],
    }],
  };
}

async function post(body) {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(`${otlp}/v1/traces`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    }).catch((e) => ({ ok: false, status: 0, text: async () => String(e) }));
    if (res.ok) return;
    if (attempt >= 20 || (res.status && res.status < 500 && res.status !== 429)) {
      throw new Error(`POST /v1/traces failed: ${res.status} ${await res.text()}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

// --- a second, simpler pipeline -----------------------------------------------
function triageRun(i) {
  const traceId = hex(32);
  const execSpan = hex(16);
  const start = now - BigInt(50 - i * 5) * 60_000n * MS;
  const spans = [];
  let t = start + MS;
  const names = [['classify_ticket', 'llm'], ['route_queue', 'logic'], ['draft_reply', 'llm']];
  for (const [name, type] of names) {
    const e = t + BigInt(int(100, 900)) * MS;
    spans.push(span({ traceId, spanId: hex(16), parentSpanId: execSpan, name, start: t, end: e, attrs: {
      'xray.step.type': type, 'gen_ai.request.model': type === 'llm' ? 'claude-haiku' : undefined,
      'xray.step.candidates.in': name === 'route_queue' ? 6 : undefined, 'xray.step.candidates.out': name === 'route_queue' ? 1 : undefined,
    } }));
    t = e + MS;
  }
  const id = `tr-${String(i + 1).padStart(4, '0')}`;
  spans.push(span({ traceId, spanId: execSpan, name: 'support-triage', start, end: t, attrs: {
    'xray.pipeline': 'support-triage', 'xray.execution.id': id, 'xray.environment': i % 2 ? 'staging' : 'prod',
  } }));
  return { id, spans };
}

// --- one execution with 10,000 steps (virtualisation) --------------------------
function bulkRun() {
  const traceId = hex(32);
  const execSpan = hex(16);
  const start = now - 20n * 60_000n * MS;
  const spans = [];
  const N = 10000;
  let t = start + MS;
  let group = null;
  for (let k = 0; k < N; k++) {
    // 100 batch steps, each with 99 item steps below it.
    if (k % 100 === 0) {
      group = hex(16);
      const gStart = t;
      const gEnd = gStart + 99n * 3n * MS + MS;
      spans.push(span({ traceId, spanId: group, parentSpanId: execSpan, name: `batch_${String(k / 100).padStart(3, '0')}`, start: gStart, end: gEnd, attrs: {
        'xray.step.type': 'logic', 'xray.step.candidates.in': 99, 'xray.step.candidates.out': 97,
      } }));
      continue;
    }
    const e = t + 3n * MS;
    const failed = k === 7777;
    spans.push(span({ traceId, spanId: hex(16), parentSpanId: group, name: `enrich_item_${String(k).padStart(5, '0')}`, start: t, end: e, attrs: {
      'xray.step.type': 'tool', 'xray.step.error': failed ? 'upstream returned 502' : undefined,
    }, error: failed ? 'upstream returned 502' : undefined }));
    t = e;
  }
  spans.push(span({ traceId, spanId: execSpan, name: 'bulk-enrichment', start, end: t + MS, attrs: {
    'xray.pipeline': 'bulk-enrichment', 'xray.execution.id': 'bulk-0001', 'xray.environment': 'prod',
  } }));
  return { id: 'bulk-0001', spans, steps: N };
}

// --- send ------------------------------------------------------------------
const triage = Array.from({ length: 6 }, (_, i) => triageRun(i));
const bulk = bulkRun();

for (const r of triage) await post(request('support-bot', 'prod', r.spans));
// Children first, parent last, in chunks: the order real exporters use.
for (let k = 0; k < bulk.spans.length; k += 1000) {
  await post(request('enricher', 'prod', bulk.spans.slice(k, k + 1000)));
}

// After the others: the example's runs are the newest executions.
const runs = runExample();
if (runs.length !== RUNS || runs.filter((r) => r.status === 'failed').length !== 1) {
  console.error(`the example reported ${runs.length} runs: ${JSON.stringify(runs)}`);
  process.exit(1);
}

// --- wait until everything is readable -------------------------------------------
const expectTotal = runs.length + triage.length + 1;
const deadline = Date.now() + 60_000;
for (;;) {
  const r = await fetch(`${api}/api/v1/executions?limit=1000`).then((x) => x.json()).catch(() => null);
  const count = r && r.items ? r.items.length : 0;
  const big = r && r.items ? r.items.find((x) => x.execution_id === bulk.id) : null;
  const cs = r && r.items ? r.items.filter((x) => x.pipeline === 'competitor-selection') : [];
  if (count >= expectTotal && big && big.step_count >= bulk.steps && cs.length === runs.length && cs.every((x) => x.step_count === 5)) break;
  if (Date.now() > deadline) {
    console.error(`timed out waiting for data: ${count}/${expectTotal} executions, bulk steps ${big ? big.step_count : 0}`);
    process.exit(1);
  }
  await new Promise((res) => setTimeout(res, 300));
}

const manifest = {
  competitor: runs.map((r) => ({
    id: r.execution_id, product: r.product, failed: r.status === 'failed', error: r.error,
    found: r.found, kept: r.kept, ranked: r.ranked, rejections: r.rejections, selected: r.selected,
  })),
  triage: triage.map((r) => r.id),
  bulk: { id: bulk.id, steps: bulk.steps, failed_step: 'enrich_item_07777' },
};
writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
console.error(`loaded ${expectTotal} executions (${runs.length} competitor-selection, ${triage.length} support-triage, 1 bulk with ${bulk.steps} steps)`);
