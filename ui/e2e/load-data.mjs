// Loads realistic X-Ray data into a running collector by POSTing OTLP/JSON
// to http://<otlp_http>/v1/traces, following the X-Ray semantic conventions
// (execution span with xray.pipeline, child spans with xray.step.*,
// gen_ai.* on LLM steps). Deterministic: the same seed gives the same ids
// and counts, so the tests can assert on them.
//
// Usage: node load-data.mjs <otlp-http-base-url> <api-base-url> <manifest.json>
// Waits until the API shows every execution, then writes a manifest of what
// was loaded (ids and expectations) for the tests.

import { writeFileSync } from 'node:fs';

const [otlp, api, manifestPath] = process.argv.slice(2);
if (!otlp || !api || !manifestPath) {
  console.error('usage: node load-data.mjs <otlp-http-url> <api-url> <manifest.json>');
  process.exit(2);
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

// --- competitor selection ----------------------------------------------------
const PRODUCTS = [
  { asin: 'B0-STEEL-BOTTLE', title: 'Stainless steel water bottle 32oz', price: 29.99 },
  { asin: 'B0-YOGA-MAT', title: 'Non-slip yoga mat 6mm', price: 24.5 },
  { asin: 'B0-DESK-LAMP', title: 'LED desk lamp with USB charging', price: 39.0 },
  { asin: 'B0-RUN-SHOES', title: 'Lightweight running shoes', price: 89.0 },
];

function competitorRun(i, { fail = false, env = 'prod' } = {}) {
  const traceId = hex(32);
  const execSpan = hex(16);
  const product = PRODUCTS[i % PRODUCTS.length];
  const start = now - BigInt(60 - i * 4) * 60_000n * MS - BigInt(int(0, 30_000)) * MS;
  let t = start + 2n * MS;
  const spans = [];
  const step = (name, durMs, attrs, { parent = execSpan, error } = {}) => {
    const s = t;
    const e = s + BigInt(durMs) * MS;
    const spanId = hex(16);
    spans.push(span({ traceId, spanId, parentSpanId: parent, name, start: s, end: e, attrs, error }));
    return { spanId, start: s, end: e };
  };
  const keywords = ['water bottle', 'insulated bottle', 'steel flask', 'sports bottle'].slice(0, 2 + (i % 3));
  step('generate_keywords', int(600, 1400), {
    'xray.step.type': 'llm',
    'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o-mini', 'gen_ai.provider.name': 'openai',
    'gen_ai.usage.input_tokens': int(300, 420), 'gen_ai.usage.output_tokens': int(40, 90),
    'xray.step.input': { product: product.title, category: 'Home & Kitchen' },
    'xray.step.output': { keywords },
    'xray.step.reasoning': `Extracted the material, capacity and use case from "${product.title}" to search for direct competitors.`,
    'xray.step.confidence': 0.92,
    'xray.step.cost': 0.00031,
  });
  t = spans.at(-1).endTimeUnixNano ? BigInt(spans.at(-1).endTimeUnixNano) + MS : t;
  const found = 5000 - (i % 4) * 250;
  step('search_catalog', int(180, 420), {
    'xray.step.type': 'retrieval',
    'xray.step.input': { keywords, limit: 5000 },
    'xray.step.candidates.out': found,
    'xray.step.metadata.index': 'catalog-v7',
    'xray.step.metadata.shards': '12',
  });
  t = BigInt(spans.at(-1).endTimeUnixNano) + MS;
  const afterFilter = 100 + (i % 5) * 12;
  const price = Math.round((found - afterFilter) * 0.62);
  const rating = Math.round((found - afterFilter) * 0.3);
  const stock = found - afterFilter - price - rating;
  const sampled = [];
  for (let k = 0; k < 24; k++) {
    const reasons = ['price_above_limit', 'price_above_limit', 'rating_below_3.5', 'out_of_stock'];
    sampled.push({ id: `B0-C${String(i).padStart(2, '0')}-${String(k).padStart(3, '0')}`, decision: 'rejected', reason: reasons[k % 4], score: Number((rand() * 0.5).toFixed(3)) });
  }
  for (let k = 0; k < 6; k++) sampled.push({ id: `B0-K${String(i).padStart(2, '0')}-${k}`, decision: 'accepted', score: Number((0.6 + rand() * 0.4).toFixed(3)) });
  const filter = step('filter_price_rating', int(40, 120), {
    'xray.step.type': 'filter',
    'xray.step.input': { max_price: product.price * 1.5, min_rating: 3.5, in_stock: true },
    'xray.step.candidates.in': found,
    'xray.step.candidates.out': afterFilter,
    'xray.step.rejections': { price_above_limit: price, 'rating_below_3.5': rating, out_of_stock: stock },
    'xray.step.candidates': sampled,
    'xray.step.reasoning': `Kept products priced at most 1.5x the reference (${(product.price * 1.5).toFixed(2)} USD), rated 3.5 or more, in stock.`,
  });
  t = BigInt(spans.at(-1).endTimeUnixNano) + MS;
  // Ranking, with nested children.
  const rankStart = t;
  const rankId = hex(16);
  t += MS;
  step('embed_candidates', int(200, 320), {
    'xray.step.type': 'llm', 'gen_ai.operation.name': 'embeddings', 'gen_ai.request.model': 'text-embedding-3-small',
    'gen_ai.provider.name': 'openai', 'gen_ai.usage.input_tokens': afterFilter * 38,
    'xray.step.candidates.in': afterFilter, 'xray.step.candidates.out': afterFilter,
  }, { parent: rankId });
  t = BigInt(spans.at(-1).endTimeUnixNano) + MS;
  const rankError = fail ? 'cross-encoder timed out after 2000 ms' : undefined;
  step('cross_encoder', fail ? 2000 : int(300, 700), {
    'xray.step.type': 'tool',
    'xray.step.candidates.in': afterFilter, 'xray.step.candidates.out': fail ? undefined : 10,
    'xray.step.error': rankError,
  }, { parent: rankId, error: rankError });
  t = BigInt(spans.at(-1).endTimeUnixNano) + MS;
  const rankEnd = t;
  spans.push(span({
    traceId, spanId: rankId, parentSpanId: execSpan, name: 'rank_candidates', start: rankStart, end: rankEnd,
    attrs: {
      'xray.step.type': 'rank',
      'xray.step.candidates.in': afterFilter, 'xray.step.candidates.out': fail ? undefined : 10,
      'xray.step.rejections': fail ? undefined : { below_top_10: afterFilter - 10 },
      'xray.step.reasoning': fail ? undefined : 'Ordered by cosine similarity, then re-scored with the cross-encoder; kept the top 10.',
      'xray.step.error': rankError,
    },
    error: rankError,
  }));
  t += MS;
  let selected = null;
  if (!fail) {
    selected = `B0-K${String(i).padStart(2, '0')}-${i % 3}`;
    const top = Array.from({ length: 10 }, (_, k) => ({
      id: k < 6 ? `B0-K${String(i).padStart(2, '0')}-${k}` : `B0-T${String(i).padStart(2, '0')}-${k}`,
      decision: k === i % 3 ? 'selected' : 'rejected',
      reason: k === i % 3 ? 'closest match on material and capacity' : 'weaker match',
      score: Number((0.95 - k * 0.04).toFixed(2)),
    }));
    step('select_competitor', int(700, 1600), {
      'xray.step.type': 'select', 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.provider.name': 'openai',
      'gen_ai.usage.input_tokens': int(1800, 2400), 'gen_ai.usage.output_tokens': int(120, 200),
      'xray.step.candidates.in': 10, 'xray.step.candidates.out': 1,
      'xray.step.rejections': { weaker_match: 9 },
      'xray.step.candidates': top,
      'xray.step.output': { competitor: selected, confidence: 0.87, title: `${product.title} (competitor)` },
      'xray.step.reasoning': `Chose ${selected}: same material and capacity, price within 10% and rating 4.6; the runner-up lacks insulation.`,
      'xray.step.confidence': 0.87,
    });
    t = BigInt(spans.at(-1).endTimeUnixNano) + MS;
  }
  const end = t + 3n * MS;
  const id = `cs-${String(i + 1).padStart(4, '0')}`;
  spans.push(span({
    traceId, spanId: execSpan, name: 'competitor-selection', start, end,
    attrs: {
      'xray.pipeline': 'competitor-selection', 'xray.execution.id': id, 'xray.environment': env,
      'xray.execution.input': { asin: product.asin, title: product.title, price: product.price },
      'xray.execution.output': fail ? undefined : { competitor: selected },
      'xray.execution.error': fail ? 'ranking failed: cross-encoder timed out after 2000 ms' : undefined,
      'xray.tags': ['nightly', product.asin],
      'xray.metadata.batch': `2026-11-${String(20 + (i % 3)).padStart(2, '0')}`,
    },
    error: fail ? 'ranking failed' : undefined,
  }));
  return { id, traceId, spans, fail, env, found, afterFilter, selected, filterSpan: filter.spanId };
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
const runs = [];
for (let i = 0; i < 12; i++) runs.push(competitorRun(i, { fail: i === 4 || i === 9, env: i % 4 === 3 ? 'staging' : 'prod' }));
const triage = Array.from({ length: 6 }, (_, i) => triageRun(i));
const bulk = bulkRun();

for (const r of runs) await post(request('catalog-service', r.env, r.spans));
for (const r of triage) await post(request('support-bot', 'prod', r.spans));
// Children first, parent last, in chunks: the order real exporters use.
for (let k = 0; k < bulk.spans.length; k += 1000) {
  await post(request('enricher', 'prod', bulk.spans.slice(k, k + 1000)));
}

// --- wait until everything is readable -------------------------------------------
const expectTotal = runs.length + triage.length + 1;
const deadline = Date.now() + 60_000;
for (;;) {
  const r = await fetch(`${api}/api/v1/executions?limit=1000`).then((x) => x.json()).catch(() => null);
  const count = r && r.items ? r.items.length : 0;
  const big = r && r.items ? r.items.find((x) => x.execution_id === bulk.id) : null;
  if (count >= expectTotal && big && big.step_count >= bulk.steps) break;
  if (Date.now() > deadline) {
    console.error(`timed out waiting for data: ${count}/${expectTotal} executions, bulk steps ${big ? big.step_count : 0}`);
    process.exit(1);
  }
  await new Promise((res) => setTimeout(res, 300));
}

const manifest = {
  competitor: runs.map((r) => ({ id: r.id, failed: r.fail, environment: r.env, found: r.found, after_filter: r.afterFilter, selected: r.selected })),
  triage: triage.map((r) => r.id),
  bulk: { id: bulk.id, steps: bulk.steps, failed_step: 'enrich_item_07777' },
};
writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
console.error(`loaded ${expectTotal} executions (${runs.length} competitor-selection, ${triage.length} support-triage, 1 bulk with ${bulk.steps} steps)`);
