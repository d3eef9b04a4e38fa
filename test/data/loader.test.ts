import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import { evalTransform, resizeBilinear, decodeRgb, normalizeInto } from '../../src/data/image.js';
import { BatchLoader, type LoaderOptions } from '../../src/data/loader.js';
import { writeSynthDataset } from '../../src/data/synth.js';
import type { Sample } from '../../src/data/types.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../src/export/metadata.js';
import { Rng } from '../../src/util/rng.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'fgh-loader-'));
let samples: Sample[] = [];
test.before(async () => {
  await writeSynthDataset(path.join(root, 'ds'), { classes: 3, perClass: 6, size: 40, seed: 2 });
  samples = split(loadDataset('cub', { root: path.join(root, 'ds') }), 'all');
});
test.after.always(() => rmSync(root, { recursive: true, force: true }));

const opts = (extra: Partial<LoaderOptions> = {}): LoaderOptions => ({
  batchSize: 4,
  size: 32,
  layout: 'nchw',
  mean: IMAGENET_MEAN,
  std: IMAGENET_STD,
  transform: (img) => resizeBilinear(img, 32, 32),
  ...extra,
});

test('in order: every sample once, labels and ids follow, pixels equal the single-image pipeline', async (t) => {
  const seen: number[] = [];
  let first: Float32Array | null = null;
  for await (const b of new BatchLoader(samples, opts())) {
    t.deepEqual(b.labels, b.indices.map((i) => samples[i]!.labels));
    t.deepEqual(b.ids, b.indices.map((i) => samples[i]!.id));
    t.deepEqual(b.shape, [b.indices.length, 3, 32, 32]);
    seen.push(...b.indices);
    first ??= b.images.slice(0, 3 * 32 * 32);
  }
  t.deepEqual(seen, samples.map((_, i) => i));
  const single = new Float32Array(3 * 32 * 32);
  normalizeInto(evalTransform(await decodeRgb(samples[0]!.path), 'resize-224', 32), single, 0, 'nchw', IMAGENET_MEAN, IMAGENET_STD);
  t.deepEqual(first, single);
});

test('shuffled: a permutation, deterministic per seed; drop-last', async (t) => {
  const run = async (seed: number, dropLast = false): Promise<number[]> => {
    const out: number[] = [];
    for await (const b of new BatchLoader(samples, opts({ rng: new Rng(seed), dropLast }))) out.push(...b.indices);
    return out;
  };
  const a = await run(1);
  t.deepEqual([...a].sort((x, y) => x - y), samples.map((_, i) => i));
  t.deepEqual(await run(1), a);
  t.notDeepEqual(await run(2), a);
  t.is((await run(1, true)).length, 16, '18 samples in batches of 4, the last partial batch dropped');
});

test('prefetch is bounded: decodes in flight never exceed prefetch x batch size, and overlap a slow consumer', async (t) => {
  let maxInFlight = 0;
  let current = 0;
  let busyAtConsumerStart = 0;
  const loader = new BatchLoader(samples, opts({ prefetch: 2, onDecode: (n) => {
    current = n;
    maxInFlight = Math.max(maxInFlight, n);
  } }));
  for await (const _ of loader) {
    if (current > 0) busyAtConsumerStart++;
    await new Promise((r) => setTimeout(r, 30));
  }
  const decodesDuringConsumer = busyAtConsumerStart;
  t.log(`max decodes in flight ${maxInFlight}; batches handed over while later ones were decoding: ${busyAtConsumerStart}`);
  t.true(maxInFlight <= 8);
  t.true(maxInFlight > 4, 'more than one batch decodes at a time');
  t.true(decodesDuringConsumer > 0, 'decoding overlaps the consumer');
});

test('an unreadable image fails naming it and its metadata line, or is skipped and reported', async (t) => {
  const bad = path.join(root, 'bad.jpg');
  writeFileSync(bad, 'not a jpeg');
  const list: Sample[] = [...samples.slice(0, 3), { path: bad, labels: [0], id: 'bad', source: 'images.txt:99' }];
  const e = await t.throwsAsync(async () => {
    for await (const _ of new BatchLoader(list, opts())) void _;
  });
  t.regex(e!.message, new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: unreadable image \\(.*\\) \\(declared at images\\.txt:99\\)$`));
  const loader = new BatchLoader(list, opts({ skipBadImages: true }));
  let n = 0;
  for await (const b of loader) n += b.indices.length;
  t.is(n, 3);
  t.is(loader.skipped.length, 1);
  t.like(loader.skipped[0], { path: bad, source: 'images.txt:99' });
  // The decoder's own words, not just "unreadable".
  t.regex(loader.skipped[0]!.reason, /^unreadable image \(.+\)$/);
});
