import test from 'ava';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { DEFAULT_MAX_IMAGE_PIXELS, decodeRgb } from '../../src/data/image.js';
import { BatchLoader } from '../../src/data/loader.js';
import { FghError } from '../../src/util/errors.js';

// Tests here set FGH_MAX_IMAGE_PIXELS for this process: they run one at a time.

let dir: string;
/** A few hundred KB that declare 12000 x 12000 pixels: a decompression bomb. */
let bomb: string;
/** 50 x 50 = 2500 pixels. */
let small: string;

test.before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-image-limits-'));
  bomb = path.join(dir, 'bomb.png');
  await sharp({ create: { width: 12000, height: 12000, channels: 3, background: { r: 0, g: 0, b: 0 } } }).toColourspace('b-w').png({ compressionLevel: 9 }).toFile(bomb);
  small = path.join(dir, 'small.png');
  await sharp({ create: { width: 50, height: 50, channels: 3, background: { r: 200, g: 10, b: 10 } } }).png().toFile(small);
});

test.afterEach.always(() => {
  delete process.env.FGH_MAX_IMAGE_PIXELS;
});

test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

test.serial('a small file declaring 12000 x 12000 pixels is refused from its header, naming the limit and the variable', async (t) => {
  t.true(statSync(bomb).size < 1_000_000, `the bomb is ${statSync(bomb).size} bytes`);
  t.true(12000 * 12000 > DEFAULT_MAX_IMAGE_PIXELS);
  const start = performance.now();
  const rssBefore = process.memoryUsage().rss;
  // Not t.throwsAsync: on failure it would print the 432 MB of pixels it got instead.
  const e = await decodeRgb(bomb).then(
    (img) => `decoded ${img.width} x ${img.height}`,
    (err: unknown) => err,
  );
  const ms = performance.now() - start;
  const grew = process.memoryUsage().rss - rssBefore;
  t.log(`refused in ${ms.toFixed(0)} ms, RSS grew ${(grew / 2 ** 20).toFixed(1)} MB`);
  t.true(e instanceof FghError, String(e));
  t.is((e as Error).message, `${bomb}: 12000 x 12000 = 144000000 pixels, over the limit of ${DEFAULT_MAX_IMAGE_PIXELS} (FGH_MAX_IMAGE_PIXELS)`);
  // Decoding would take 432 MB for the RGB output alone.
  t.true(grew < 100 * 2 ** 20, `RSS grew ${grew} bytes`);
  t.true(ms < 3000, `${ms} ms`);
});

test.serial('FGH_MAX_IMAGE_PIXELS raises the limit (the bomb decodes) and lowers it (exactly at the limit passes)', async (t) => {
  process.env.FGH_MAX_IMAGE_PIXELS = String(12000 * 12000);
  const big = await decodeRgb(bomb);
  t.deepEqual([big.width, big.height, big.data.length], [12000, 12000, 12000 * 12000 * 3]);
  process.env.FGH_MAX_IMAGE_PIXELS = '2500';
  const img = await decodeRgb(small);
  t.deepEqual([img.width, img.height, Array.from(img.data.subarray(0, 3))], [50, 50, [200, 10, 10]]);
  process.env.FGH_MAX_IMAGE_PIXELS = '2499';
  await t.throwsAsync(decodeRgb(small), { instanceOf: FghError, message: `${small}: 50 x 50 = 2500 pixels, over the limit of 2499 (FGH_MAX_IMAGE_PIXELS)` });
});

test.serial('a bad FGH_MAX_IMAGE_PIXELS is a one-line error naming it, from a loader at once (not a skip per image)', async (t) => {
  for (const bad of ['0', '-5', '1.5', 'lots', '']) {
    process.env.FGH_MAX_IMAGE_PIXELS = bad;
    const message = new RegExp(`^FGH_MAX_IMAGE_PIXELS must be a positive integer .*got "${esc(bad)}"$`);
    await t.throwsAsync(decodeRgb(small), { instanceOf: FghError, message }, bad);
    t.throws(() => new BatchLoader([{ path: small, labels: [0], id: 'small' }], { batchSize: 1, size: 50, layout: 'nhwc', mean: [0, 0, 0], std: [1, 1, 1], transform: (img) => img, skipBadImages: true }), { instanceOf: FghError, message }, bad);
  }
});

test.serial('skip lists give the reason: the pixel count and the limit, not "unreadable"', async (t) => {
  const loader = new BatchLoader(
    [
      { path: small, labels: [0], id: 'small' },
      { path: bomb, labels: [0], id: 'bomb', source: 'images.txt:2' },
    ],
    { batchSize: 2, size: 50, layout: 'nhwc', mean: [0, 0, 0], std: [1, 1, 1], transform: (img) => img, skipBadImages: true },
  );
  const kept: string[] = [];
  for await (const b of loader) kept.push(...b.ids);
  t.deepEqual(kept, ['small']);
  t.deepEqual(loader.skipped, [{ path: bomb, source: 'images.txt:2', reason: `12000 x 12000 = 144000000 pixels, over the limit of ${DEFAULT_MAX_IMAGE_PIXELS} (FGH_MAX_IMAGE_PIXELS)` }]);
});
