// End-to-end tests of the X-Ray UI: headless Chromium (Debian's package)
// driven by playwright-core against a real `xray serve` loaded by
// load-data.mjs: the competitor-selection pipeline comes from running the
// SDK's example (sdk/examples/competitor_selection.rs), and the manifest
// holds what each run of it recorded. Run through ./run.sh, which provides:
//   XRAY_UI_URL         base URL of the dashboard API + UI
//   XRAY_E2E_MANIFEST   what load-data.mjs loaded
//   XRAY_E2E_OUT        where screenshots go (target/ui-e2e)
//   XRAY_E2E_DOCS_IMG   optional: also write the docs screenshots there
//   XRAY_UI_AUTH_URL    a second server with auth.required = true
//   XRAY_E2E_AUTH_KEY   the API key of its one app (XRAY_E2E_AUTH_APP)

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.XRAY_UI_URL;
const manifest = JSON.parse(readFileSync(process.env.XRAY_E2E_MANIFEST, 'utf8'));
const OUT = process.env.XRAY_E2E_OUT || 'target/ui-e2e';
const DOCS = process.env.XRAY_E2E_DOCS_IMG || '';
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
mkdirSync(OUT, { recursive: true });

const n = (x) => x.toLocaleString('en-US');
/** Filter rejections of a run, largest first, as the charts order them. */
const reasonsByCount = (rejections) => rejections.filter(([, c]) => c > 0).sort((a, b) => b[1] - a[1]).map(([r]) => r);
/**
 * The list row of an execution. The example's execution ids are trace ids
 * (32 hex digits), which the list abbreviates; the link's title holds the
 * whole id.
 */
const rowOf = (rows, id) => rows.filter({ has: page.locator(`td:last-child a[title="${id}"]`) });
/** The example's steps, in order. */
const STEPS = ['generate_keywords', 'search_catalogue', 'filter_candidates', 'rank_candidates', 'select_competitor'];

let context;
let page;
let userDataDir;
const consoleErrors = [];

async function shot(name) {
  const file = join(OUT, `${name}.png`);
  await page.screenshot({ path: file });
  if (DOCS) copyFileSync(file, join(DOCS, `${name}.png`));
}

/** Waits until `locator` contains `text` (the wait is bounded, not asserted on). */
async function waitText(locator, text) {
  await locator.filter({ hasText: text }).first().waitFor({ timeout: 15000 });
}

async function go(path) {
  await page.goto(`${BASE}${path}`);
}

before(async () => {
  assert.ok(BASE, 'XRAY_UI_URL is not set: run the tests through ui/e2e/run.sh');
  userDataDir = mkdtempSync(join(tmpdir(), 'xray-ui-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 800 },
    deviceScaleFactor: 1,
    timezoneId: 'UTC',
    locale: 'en-US',
  });
  page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
});

after(async () => {
  if (context) await context.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

describe('executions list', () => {
  it('shows every execution, newest first, with in → out', async () => {
    await go('/');
    const rows = page.locator('table.data tbody tr');
    await waitText(rows, 'competitor-selection');
    const total = manifest.competitor.length + manifest.triage.length + 1;
    assert.equal(await rows.count(), total);
    // Newest first: the last competitor run is newer than the first one.
    const ids = await page.locator('table.data tbody tr td:last-child a').evaluateAll((as) => as.map((a) => a.title));
    const newest = manifest.competitor.at(-1).id;
    const oldest = manifest.competitor[0].id;
    assert.ok(ids.indexOf(newest) < ids.indexOf(oldest), `${newest} should come before ${oldest}: ${ids}`);
    // Final in → out comes from the funnel of each run: the search's 5,000
    // candidates down to the one selected.
    const run = manifest.competitor.at(-1);
    const row = rowOf(rows, run.id);
    await waitText(row.locator('td.inout'), '→');
    assert.equal((await row.locator('td.inout').textContent()).trim(), `${n(run.found)} → 1`);
    await waitText(rows.filter({ hasText: manifest.bulk.id }).locator('td.num'), '10,000');
    // Every row's funnel has loaded (including the 10,000-step one).
    await page.waitForFunction(() => [...document.querySelectorAll('td.inout')].every((td) => !td.textContent.includes('…')));
    assert.equal((await rows.filter({ hasText: manifest.bulk.id }).locator('td.inout').textContent()).trim(), '99 → 97');
    await shot('executions');
  });

  it('puts filters in the URL and applies them', async () => {
    await page.locator('select[name=status]').selectOption('failed');
    await page.waitForURL(/status=failed/);
    const rows = page.locator('table.data tbody tr');
    const failed = manifest.competitor.filter((r) => r.failed);
    await rowOf(rows, failed[0].id).waitFor();
    assert.equal(await rows.count(), failed.length);
    for (const b of await rows.locator('.badge').allTextContents()) assert.equal(b, 'failed');

    // A shared URL restores the view: pipeline + environment + search. The
    // example reports environment "dev"; the other pipelines prod/staging.
    await go('/executions?pipeline=competitor-selection&environment=dev');
    await waitText(rows, 'dev');
    assert.equal(await rows.count(), manifest.competitor.length);
    assert.equal(await page.locator('input[name=pipeline]').inputValue(), 'competitor-selection');
    assert.equal(await page.locator('input[name=environment]').inputValue(), 'dev');
    await go('/executions?environment=staging');
    await waitText(rows, 'support-triage');
    assert.equal(await rows.count(), manifest.triage.filter((_, i) => i % 2).length);

    await go('/executions?q=bulk');
    await waitText(rows, manifest.bulk.id);
    assert.equal(await rows.count(), 1);

    await go('/executions?pipeline=no-such-pipeline');
    await waitText(page.locator('.notice'), 'No executions match these filters');
  });

  it('pages with the cursor', async () => {
    await go('/executions?pipeline=competitor-selection');
    const rows = page.locator('table.data tbody tr');
    await waitText(rows, 'competitor-selection');
    // The runs on pages of 50 fit on one page: no "Older" link.
    assert.equal(await page.locator('a[rel=next]').count(), 0);
  });
});

describe('execution detail', () => {
  const run = () => manifest.competitor.at(-1);

  it('opens from the list and shows the waterfall', async () => {
    await go('/executions');
    await rowOf(page.locator('table.data tbody tr'), run().id).locator('td:last-child a').click();
    await page.waitForURL(new RegExp(`/executions/${run().id}$`));
    await waitText(page.locator('h1'), 'competitor-selection');
    const names = await page.locator('.wf-row .wf-name-text').allTextContents();
    assert.deepEqual(names, STEPS);
    await waitText(page.locator('.facts'), `${n(run().found)} → 1`);
  });

  it('shows a step in the side panel: reasoning, rejections, JSON, candidates', async () => {
    await page.locator('.wf-row', { hasText: 'filter_candidates' }).click();
    const panel = page.locator('.side-panel');
    await waitText(panel.locator('h2'), 'filter_candidates');
    // The reasoning the example wrote, with this run's counts.
    await waitText(panel, `${run().kept} of ${run().found} candidates are in the category`);
    const bars = await panel.locator('.bars .bar-label').allTextContents();
    assert.deepEqual(bars, reasonsByCount(run().rejections));
    await waitText(panel, `${n(run().found)} in → ${n(run().kept)} out`);
    await waitText(panel.locator('.json').first(), 'price_band');
    // The SDK keeps at most 100 sampled decisions per step.
    const cands = panel.locator('table.data tbody tr');
    const all = await cands.count();
    assert.ok(all > 0 && all <= 100, `${all} candidate rows`);
    await panel.getByRole('combobox', { name: 'Show candidates with decision' }).selectOption('rejected');
    const rejected = await cands.count();
    assert.ok(rejected > 0 && rejected < all, `${rejected} of ${all} rejected`);
    assert.equal(await panel.locator('table.data tbody tr.cand-rejected').count(), rejected);
    assert.match(page.url(), /step=[0-9a-f]{16}/);
    await shot('execution');

    // The selected step survives a reload (it is in the URL).
    await page.reload();
    await waitText(page.locator('.side-panel h2'), 'filter_candidates');
  });

  it('moves through steps with the keyboard', async () => {
    await page.locator('.wf-scroll').focus();
    await page.keyboard.press('Home');
    await waitText(page.locator('.side-panel h2'), 'generate_keywords');
    await waitText(page.locator('.side-panel'), 'gpt-4o');
    await page.keyboard.press('ArrowDown');
    await waitText(page.locator('.side-panel h2'), 'search_catalogue');
    await page.keyboard.press('End');
    await waitText(page.locator('.side-panel h2'), 'select_competitor');
    await waitText(page.locator('.side-panel'), run().selected);
  });

  it('marks failed steps and the failed execution', async () => {
    const failed = manifest.competitor.find((r) => r.failed);
    await go(`/executions/${failed.id}`);
    await waitText(page.locator('.error-box'), failed.error);
    const failedRows = page.locator('.wf-row.is-failed .wf-name-text');
    await waitText(failedRows, 'select_competitor');
    assert.deepEqual(await failedRows.allTextContents(), ['select_competitor']);
    await page.getByRole('button', { name: /Next failed step/ }).click();
    await waitText(page.locator('.side-panel h2'), 'select_competitor');
    await waitText(page.locator('.side-panel .error-box'), failed.error);
  });
});

describe('funnel', () => {
  it('charts candidates per step and the rejection histogram', async () => {
    const run = manifest.competitor.at(-1);
    await go(`/executions/${run.id}`);
    await page.getByRole('tab', { name: 'Funnel' }).click();
    await page.waitForURL(/tab=funnel/);
    const rows = page.locator('svg.funnel .f-row');
    await waitText(rows, 'filter_candidates');
    // Every step that reported candidate counts (the LLM keyword step does not).
    const labels = await page.locator('svg.funnel .f-label').allTextContents();
    assert.deepEqual(labels, STEPS.slice(1));
    // The step that throws most candidates away is called out.
    const worst = page.locator('svg.funnel .f-worst .f-label');
    assert.equal(await worst.textContent(), 'filter_candidates');
    await waitText(page.locator('svg.funnel .f-worst'), `−${n(run.found - run.kept)} dropped`);
    const hist = page.locator('.hist').filter({ hasText: 'filter_candidates' });
    const reasons = await hist.locator('.bar-label').allTextContents();
    assert.deepEqual(reasons, reasonsByCount(run.rejections));
    await shot('funnel');
    // Clicking a funnel row opens the step in the timeline.
    await rows.filter({ hasText: 'select_competitor' }).click();
    await waitText(page.locator('.side-panel h2'), 'select_competitor');
  });
});

describe('10,000 steps', () => {
  it('renders only the visible rows and scrolls to any step', async () => {
    await go(`/executions/${manifest.bulk.id}`);
    await waitText(page.locator('.wf-axis'), '10,000 steps');
    const rendered = await page.locator('.wf-row').count();
    assert.ok(rendered > 10 && rendered < 150, `rendered ${rendered} rows`);
    // Nested steps are indented under their parent.
    assert.equal(await page.locator('.wf-row', { hasText: 'batch_000' }).getAttribute('aria-level'), '1');
    assert.equal(await page.locator('.wf-row', { hasText: 'enrich_item_00001' }).getAttribute('aria-level'), '2');
    await page.locator('.wf-scroll').evaluate((el) => { el.scrollTop = el.scrollHeight; });
    await waitText(page.locator('.wf-row'), 'enrich_item_09999');
    assert.ok(await page.locator('.wf-row').count() < 150);
    await page.getByRole('button', { name: /Next failed step/ }).click();
    await waitText(page.locator('.side-panel h2'), manifest.bulk.failed_step);
    await waitText(page.locator('.wf-row.is-selected'), manifest.bulk.failed_step);
  });
});

describe('pipelines', () => {
  it('lists volume, failure rate and durations per pipeline', async () => {
    await go('/pipelines');
    const rows = page.locator('table.data tbody tr');
    await waitText(rows, 'competitor-selection');
    assert.equal(await rows.count(), 3);
    const cs = rows.filter({ hasText: 'competitor-selection' });
    const cells = await cs.locator('td').allTextContents();
    const failed = manifest.competitor.filter((r) => r.failed).length;
    assert.equal(cells[1], String(manifest.competitor.length));
    assert.equal(cells[2], String(failed));
    assert.equal(cells[3], `${((failed / manifest.competitor.length) * 100).toFixed(1)}%`);
    await shot('pipelines');
  });

  it('shows the aggregated funnel with top rejection reasons and links to executions', async () => {
    await page.locator('table.data tbody tr a', { hasText: 'competitor-selection' }).first().click();
    await page.waitForURL(/\/pipelines\/competitor-selection/);
    await waitText(page.locator('svg.funnel'), 'filter_candidates');
    const filterRow = page.locator('table.steps-table tbody tr').filter({ hasText: 'filter_candidates' });
    const top = await filterRow.locator('.bar-label').allTextContents();
    // Summed over every run of the example.
    const totals = new Map();
    for (const r of manifest.competitor) for (const [reason, c] of r.rejections) totals.set(reason, (totals.get(reason) || 0) + c);
    assert.deepEqual(top, reasonsByCount([...totals]));
    await waitText(page.locator('.stats'), String(manifest.competitor.length));
    await shot('pipeline');
    await page.getByRole('link', { name: 'Failed executions' }).click();
    await page.waitForURL(/\/executions\?.*status=failed/);
    const rows = page.locator('table.data tbody tr');
    await waitText(rows, 'failed');
    assert.equal(await rows.count(), manifest.competitor.filter((r) => r.failed).length);
  });
});

describe('diff', () => {
  it('compares two runs of a pipeline side by side', async () => {
    const [a, b] = [manifest.competitor[0], manifest.competitor[1]];
    await go('/diff?pipeline=competitor-selection');
    await page.locator('#diff-a').selectOption(a.id);
    await page.locator('#diff-b').selectOption(b.id);
    await page.getByRole('button', { name: 'Compare' }).click();
    await page.waitForURL(new RegExp(`a=${a.id}.*b=${b.id}`));
    await waitText(page.locator('.diff-summary'), 'changed');
    // Two products: the filter kept different numbers of candidates.
    assert.notEqual(a.kept, b.kept);
    const filterRow = page.locator('table.diff-table tbody tr').filter({ hasText: 'filter_candidates' }).first();
    await waitText(filterRow.locator('.badge').first(), 'changed');
    await waitText(filterRow.locator('.changed-fields'), 'candidates_out');
    // Counts differ between the runs: those cells are highlighted.
    const highlighted = await filterRow.locator('td.diff-changed').allTextContents();
    assert.ok(highlighted.includes(`${n(a.found)} → ${n(a.kept)}`), highlighted.join(' | '));
    assert.ok(highlighted.includes(`${n(b.found)} → ${n(b.kept)}`), highlighted.join(' | '));
    await filterRow.getByRole('button').click();
    await waitText(page.locator('.diff-detail:not([hidden])'), 'Rejections');
    await shot('diff');
  });

  it('starts from two ticked rows of the list', async () => {
    const [a, b] = [manifest.competitor[2], manifest.competitor[3]];
    await go('/executions?pipeline=competitor-selection');
    const rows = page.locator('table.data tbody tr');
    await rowOf(rows, a.id).waitFor();
    await rowOf(rows, a.id).locator('input[type=checkbox]').check();
    await rowOf(rows, b.id).locator('input[type=checkbox]').check();
    await page.getByRole('button', { name: 'Compare selected' }).click();
    await page.waitForURL(new RegExp(`/diff\\?a=${a.id}&b=${b.id}`));
    await page.locator('.run-card').first().locator(`a[href="/executions/${a.id}"]`).waitFor();
  });
});

describe('auth and errors', () => {
  it('asks for an API key on 401 and sends it as a bearer token', async () => {
    // This server runs without auth; the 401 is produced by intercepting the
    // API, and the accepted made-up key is taken off before the request
    // goes on (the server would refuse it: a key that is sent must be
    // valid). The next test does the same against a server requiring keys.
    const seen = [];
    await page.route('**/api/v1/**', async (route) => {
      const headers = route.request().headers();
      const auth = headers.authorization || '';
      seen.push(auth);
      if (auth !== 'Bearer xr_e2e_valid') {
        await route.fulfill({ status: 401, contentType: 'application/json', body: JSON.stringify({ code: 'unauthorized', message: 'missing or invalid API key' }) });
      } else {
        delete headers.authorization;
        await route.continue({ headers });
      }
    });
    await go('/executions');
    const dialog = page.locator('dialog#key-dialog');
    await dialog.waitFor({ state: 'visible' });
    await page.getByRole('textbox', { name: 'API key' }).fill('xr_wrong');
    await page.getByRole('button', { name: 'Use key' }).click();
    await waitText(page.locator('#key-message'), 'rejected');
    await page.getByRole('textbox', { name: 'API key' }).fill('xr_e2e_valid');
    await page.getByRole('button', { name: 'Use key' }).click();
    await waitText(page.locator('table.data tbody tr'), 'competitor-selection');
    assert.ok(seen.includes('Bearer xr_e2e_valid'));
    await waitText(page.locator('#session'), 'default');
    const stored = await page.evaluate(() => sessionStorage.getItem('xray.apiKey'));
    assert.equal(stored, 'xr_e2e_valid');
    await page.getByRole('button', { name: 'Forget API key' }).click();
    await dialog.waitFor({ state: 'visible' });
    await page.keyboard.press('Escape');
    await page.unroute('**/api/v1/**');
  });

  it('asks a server that requires keys for one, refuses a wrong one and reads the key\'s app', async () => {
    const url = process.env.XRAY_UI_AUTH_URL;
    const key = process.env.XRAY_E2E_AUTH_KEY;
    assert.ok(url && key, 'XRAY_UI_AUTH_URL / XRAY_E2E_AUTH_KEY are not set: run through ui/e2e/run.sh');
    await page.goto(`${url}/executions`);
    const dialog = page.locator('dialog#key-dialog');
    await dialog.waitFor({ state: 'visible' });
    await page.getByRole('textbox', { name: 'API key' }).fill(`xr_${'w'.repeat(32)}`);
    await page.getByRole('button', { name: 'Use key' }).click();
    await waitText(page.locator('#key-message'), 'rejected');
    await page.getByRole('textbox', { name: 'API key' }).fill(key);
    await page.getByRole('button', { name: 'Use key' }).click();
    await waitText(page.locator('table.data tbody tr'), 'keyed-pipeline');
    await waitText(page.locator('#session'), process.env.XRAY_E2E_AUTH_APP);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('xray.apiKey')), key);
    await page.getByRole('button', { name: 'Forget API key' }).click();
    await dialog.waitFor({ state: 'visible' });
    await page.keyboard.press('Escape');
  });

  it('explains an unreachable API and an empty store', async () => {
    await page.route('**/api/v1/**', (route) => route.abort('connectionrefused'));
    await go('/executions');
    await waitText(page.locator('.notice-error'), 'Cannot reach the X-Ray API');
    await page.unroute('**/api/v1/**');
    await page.route('**/api/v1/**', (route) => route.fulfill({
      status: 200, contentType: 'application/json',
      body: JSON.stringify(route.request().url().includes('/pipelines') ? { from: '', to: '', pipelines: [] } : { items: [], next_cursor: null }),
    }));
    await go('/executions');
    await waitText(page.locator('.notice'), 'No data yet');
    await waitText(page.locator('.notice'), ':4318');
    await page.unroute('**/api/v1/**');
  });

  it('never serves the UI for unknown API paths', async () => {
    const res = await page.request.get(`${BASE}/api/v1/nope`);
    assert.equal(res.status(), 404);
    assert.match(res.headers()['content-type'], /json/);
  });

  it('logged no script errors', () => {
    const unexpected = consoleErrors.filter((e) => !/401|Failed to load resource|ERR_CONNECTION_REFUSED/.test(e));
    assert.deepEqual(unexpected, []);
  });
});
