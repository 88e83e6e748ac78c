// Measures the execution page on a large execution: time from navigation to
// the first painted waterfall rows, rows in the DOM, and the cost of
// repainting while scrolling. Not a test (timings vary by machine); the
// figures go to docs/benchmarks.md.
//
// Usage: node bench.mjs <base-url> <execution-id>
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, id] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), 'xray-ui-bench-'));
const ctx = await chromium.launchPersistentContext(dir, {
  executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium', headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  viewport: { width: 1280, height: 800 },
});
const page = ctx.pages()[0] || await ctx.newPage();
const runs = [];
for (let i = 0; i < 3; i++) {
  let apiMs = 0;
  page.on('requestfinished', async (r) => {
    if (r.url().endsWith(`/api/v1/executions/${id}`)) apiMs = (await r.timing()).responseEnd;
  });
  const t0 = Date.now();
  await page.goto(`${base}/executions/${id}`);
  await page.locator('.wf-row').first().waitFor({ timeout: 60000 });
  const total = Date.now() - t0;
  const rows = await page.locator('.wf-row').count();
  // 200 scroll positions across the whole list, each followed by a paint.
  // The same number of frames without scrolling is the machine's baseline.
  const frames = (move) => page.locator('.wf-scroll').evaluate(async (el, moving) => {
    const out = [];
    for (let k = 0; k < 200; k++) {
      if (moving) el.scrollTop = (el.scrollHeight * k) / 200;
      const s = performance.now();
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      out.push(performance.now() - s);
    }
    out.sort((a, b) => a - b);
    return { p50: Math.round(out[100]), p95: Math.round(out[190]) };
  }, move);
  const idle = await frames(false);
  const scroll = await frames(true);
  runs.push({ total, apiMs: Math.round(apiMs), rows, idle, scroll });
}
console.log(JSON.stringify(runs, null, 1));
await ctx.close();
rmSync(dir, { recursive: true, force: true });
