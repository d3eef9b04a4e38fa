import test from 'ava';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { requireReference } from '../helpers/python.js';
import { readCodeStore } from '../../src/retrieval/code-store.js';
import { readNpy } from '../../src/util/npy.js';
import { startServer, type RunningServer } from '../../src/serve/server.js';
import { projectRoot } from '../helpers/cli.js';
import { makeServeFixture, type ServeFixture } from '../helpers/serve-fixture.js';
import type { SearchOutcome } from '../../web/src/outcome.js';

/**
 * End to end in Debian's Chromium (no browser download): the page encodes a gallery image itself
 * and must get the code `fgh encode` stored for that file, and find the image first.
 */
const CHROMIUM = process.env.FGH_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = requireReference(existsSync(CHROMIUM), `Chromium at ${CHROMIUM} (Debian: apt-get install chromium, or set FGH_CHROMIUM)`);
const SHOTS = path.join(projectRoot, 'test-results');


let fx: ServeFixture;
let server: RunningServer;
let browser: Browser;

if (haveChromium) {
  test.before(async () => {
    fx = await makeServeFixture();
    server = await startServer({ model: fx.model, db: fx.db, images: fx.root, dataset: 'cub', query: fx.query, port: 0 });
    // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });
  test.after.always(async () => {
    await browser?.close();
    await server?.close();
    fx?.cleanup();
  });
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Gallery items whose code no earlier item has: with ties broken by index, each must rank itself first. */
function firstOfTheirCode(): number[] {
  const s = readCodeStore(fx.db);
  const seen = new Set<string>();
  const out: number[] = [];
  for (let i = 0; i < s.header.count; i++) {
    const c = hex(s.codes.data.subarray(i * s.header.stride, (i + 1) * s.header.stride));
    if (!seen.has(c)) out.push(i);
    seen.add(c);
  }
  return out;
}

/**
 * Polls an expression from Node: the page's CSP forbids the string evaluation that in-page
 * polling (waitForFunction) relies on, while page.evaluate runs through the DevTools protocol.
 */
async function pollUntil(page: Page, expression: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await page.evaluate(expression))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${expression}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function waitFor(page: Page, states: string): Promise<string> {
  await page.waitForSelector(states.split('|').map((s) => `body[data-state=${s}]`).join(', '), { timeout: 120_000 });
  return (await page.getAttribute('body', 'data-state')) ?? '';
}

(haveChromium ? test.serial : test.skip)('in Chromium: the page computes the code fgh encode stored and ranks the image first; drop, keyboard, phone width', async (t) => {
  const store = readCodeStore(fx.db);
  const candidates = firstOfTheirCode();
  t.log(`${store.header.count} gallery codes, ${candidates.length} distinct`);
  const pick = candidates[candidates.length - 1]!; // the last distinct one: its rank 1 is not index 0 by luck
  const second = candidates[Math.floor(candidates.length / 2)]!;
  const fileOf = (i: number): string => {
    const line = readFileSync(path.join(fx.root, 'images.txt'), 'utf8').split('\n').find((l) => l.split(' ')[0] === store.ids[i]);
    return path.join(fx.root, 'images', line!.split(' ')[1]!);
  };
  const codeBytes = Math.ceil(fx.bits / 8);
  const storedCode = (i: number): string => hex(store.codes.data.subarray(i * store.header.stride, i * store.header.stride + codeBytes));

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(server.url);
  t.is(await waitFor(page, 'ready|error'), 'ready', (await page.textContent('#status')) ?? '');

  // Pick a file with the file input.
  await page.setInputFiles('#file', fileOf(pick));
  t.is(await waitFor(page, 'done|error'), 'done', (await page.textContent('#status')) ?? '');
  const got = (await page.evaluate('window.fgh.last')) as SearchOutcome;
  t.log(`page (${got.ep}): ${path.basename(fileOf(pick))} code ${got.code}, stored ${storedCode(pick)}; ms ${Object.entries(got.timings).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
  t.is(got.code, storedCode(pick), 'the code computed in the page = the code fgh encode stored');
  // Stronger than the code: the page's preprocessing and graph give fgh encode's features.
  const feats = readNpy(fx.dbFeatures);
  const row = Array.from((feats.data as Float32Array).subarray(pick * fx.bits, (pick + 1) * fx.bits));
  const featErr = Math.max(...row.map((v, j) => Math.abs(v - got.features[j]!)));
  t.log(`features: page vs fgh encode max abs diff ${featErr.toExponential(2)} over ${fx.bits}`);
  t.true(featErr <= 1e-5, `features differ by ${featErr}`);
  t.is(got.ids[0], store.ids[pick], 'top-1 is the image itself');
  t.is(got.distances[0], 0);
  t.deepEqual([...got.distances].sort((a, b) => a - b), got.distances, 'ranked by distance');
  t.is(await page.locator('#results li').count(), Math.min(10, store.header.count));
  t.is(await page.locator('#results li').first().getAttribute('data-id'), store.ids[pick]!);
  t.is(await page.textContent('#query-code'), storedCode(pick));
  const alts = (await page.evaluate(`Array.from(document.querySelectorAll('img')).filter((e) => e.offsetParent !== null).map((e) => e.alt)`)) as string[];
  t.true(alts.length > 0 && alts.every((a) => a.trim().length > 0), 'every visible image has alt text');
  t.true(await page.evaluate(`(() => { const e = document.querySelector('#results img'); return e.complete && e.naturalWidth > 0; })()`), 'gallery image loads');
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, 'serve-search.png'), fullPage: true });

  // Drop a second file on the drop zone.
  const bytes = readFileSync(fileOf(second)).toString('base64');
  const dt = await page.evaluateHandle(`(() => {
    const bin = Uint8Array.from(atob(${JSON.stringify(bytes)}), (c) => c.charCodeAt(0));
    const d = new DataTransfer();
    d.items.add(new File([bin], ${JSON.stringify(path.basename(fileOf(second)))}, { type: 'image/jpeg' }));
    return d;
  })()`);
  await page.dispatchEvent('#drop', 'drop', { dataTransfer: dt });
  await pollUntil(page, `window.fgh.last && window.fgh.last.file === ${JSON.stringify(path.basename(fileOf(second)))}`);
  const dropped = (await page.evaluate('window.fgh.last')) as SearchOutcome;
  t.is(dropped.code, storedCode(second));
  t.is(dropped.ids[0], store.ids[second]);
  // Changing K searches the dropped image again.
  await page.fill('#topk', '3');
  await page.dispatchEvent('#topk', 'change');
  await pollUntil(page, `document.querySelectorAll('#results li').length === 3`);
  t.is(await page.locator('#results li').first().getAttribute('data-id'), store.ids[second]!);

  // Keyboard: Tab reaches the tabs and the file input; arrows switch to the evaluation view.
  await page.focus('#tab-search');
  await page.keyboard.press('ArrowRight');
  t.is(await page.evaluate('document.activeElement.id'), 'tab-eval');
  t.true(await page.isVisible('#view-eval'));
  t.false(await page.isVisible('#view-search'));
  await page.waitForSelector('#current-map');
  t.regex((await page.textContent('#current-map')) ?? '', /^mAP@all 0\.\d{4}/);
  t.true(await pollUntil(page, `(() => { const e = document.querySelector('img.pr'); return e && e.complete && e.naturalWidth > 0; })()`).then(() => true), 'the PR curve loads');
  await page.screenshot({ path: path.join(SHOTS, 'serve-evaluation.png'), fullPage: true });
  await page.keyboard.press('ArrowLeft');
  const reached: string[] = [];
  await page.focus('#tab-search');
  for (let i = 0; i < 4; i++) {
    await page.keyboard.press('Tab');
    reached.push((await page.evaluate('document.activeElement.id')) as string);
  }
  t.true(reached.includes('file'), `Tab order: ${reached.join(' ')}`);

  // Phone width: nothing overflows sideways.
  await page.setViewportSize({ width: 375, height: 800 });
  const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number;
  t.true(overflow <= 0, `horizontal overflow ${overflow}px at 375 px`);
  await page.screenshot({ path: path.join(SHOTS, 'serve-phone.png'), fullPage: true });
  t.deepEqual(errors, []);
  t.log(`screenshots in ${SHOTS}`);
  await page.close();
});

if (!haveChromium) {
  console.warn(`serve browser test: skipped, no Chromium at ${CHROMIUM} (apt install chromium, or set FGH_CHROMIUM)`);
}
