import test from 'ava';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { writeSynthDataset } from '../../src/data/synth.js';
import { fgh } from '../helpers/cli.js';

/**
 * A corrupt image anywhere in a training run's splits (here a *test* image, used only by the
 * evaluation after an epoch) is found before the first epoch: the run stops at once naming it, or
 * with --skip-bad-images leaves it out, says why, and trains to the end.
 */
let work = '';
let root = '';
let bad = '';
let badSource = '';

test.before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'fgh-image-checks-'));
  root = path.join(work, 'synth');
  await writeSynthDataset(root, { classes: 2, perClass: 4, size: 48, seed: 5 });
  // The first test image (split 0) becomes bytes no decoder reads.
  const split = readFileSync(path.join(root, 'train_test_split.txt'), 'utf8').trim().split('\n').map((l) => l.split(' '));
  const id = split.find(([, s]) => s === '0')![0]!;
  const lines = readFileSync(path.join(root, 'images.txt'), 'utf8').trim().split('\n');
  const line = lines.findIndex((l) => l.startsWith(`${id} `));
  bad = path.join(root, 'images', lines[line]!.split(' ')[1]!);
  badSource = `images.txt:${line + 1}`;
  writeFileSync(bad, 'not an image at all');
});

test.after.always(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

// Two epochs, evaluated only after the second: a late check would have trained and saved epoch 1.
const trainArgs = (out: string) => ['train', '--method', 'srlh', '--dataset', 'cub', '--root', root, '--bits', '12', '--out', out, '--size', '48', '--epochs', '2', '--eval-every', '2', '--batch', '4', '--quiet'];

test.serial('a corrupt test image stops fgh train before epoch 1, in one line naming it', (t) => {
  const out = path.join(work, 'strict');
  const r = fgh(...trainArgs(out));
  t.is(r.status, 1, r.stderr);
  t.false(r.stderr.includes('internal error'), r.stderr);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('fgh: '));
  t.is(errors.length, 1, r.stderr);
  t.true(errors[0]!.startsWith(`fgh: ${badSource}: ${bad}: unreadable image (`), errors[0]);
  t.true(errors[0]!.includes('--skip-bad-images'), errors[0]);
  t.false(existsSync(path.join(out, '12')), 'no epoch was trained');
});

test.serial('with --skip-bad-images the run leaves the corrupt image out, says why, and completes', (t) => {
  const out = path.join(work, 'skipping');
  const r = fgh(...trainArgs(out), '--skip-bad-images', '--json');
  t.is(r.status, 0, r.stderr);
  t.true(r.stderr.includes(`warning: skipped ${bad} (${badSource}): unreadable image (`), r.stderr);
  t.true(r.stderr.includes('warning: skipped 1 unreadable or oversized image(s)'), r.stderr);
  const summary = JSON.parse(r.stdout) as { runs: Array<{ complete: boolean; epochs: number; lastMap: number | null }>; skipped: Array<{ path: string; source: string; reason: string }> };
  t.true(summary.runs[0]!.complete);
  t.is(summary.runs[0]!.epochs, 2);
  t.is(typeof summary.runs[0]!.lastMap, 'number');
  t.is(summary.skipped.length, 1);
  t.is(summary.skipped[0]!.path, bad);
  t.is(summary.skipped[0]!.source, badSource);
  t.regex(summary.skipped[0]!.reason, /^unreadable image \(.+\)$/);
});

test.serial('an image declaring more pixels than FGH_MAX_IMAGE_PIXELS is found by the same check, before epoch 1', async (t) => {
  // A copy of the dataset whose corrupt image is repaired and whose first image is larger than the rest.
  const big = path.join(work, 'big');
  cpSync(root, big, { recursive: true });
  const repaired = path.join(big, path.relative(root, bad));
  writeFileSync(repaired, await sharp({ create: { width: 48, height: 48, channels: 3, background: '#808080' } }).jpeg().toBuffer());
  const first = readFileSync(path.join(big, 'images.txt'), 'utf8').split('\n')[0]!.split(' ')[1]!;
  const large = path.join(big, 'images', first);
  writeFileSync(large, await sharp({ create: { width: 100, height: 60, channels: 3, background: '#808080' } }).jpeg().toBuffer());
  const out = path.join(work, 'oversized');
  const args = trainArgs(out).map((a) => (a === root ? big : a));
  process.env.FGH_MAX_IMAGE_PIXELS = '5000'; // the others have 48 x 48 = 2304
  try {
    const r = fgh(...args);
    t.is(r.status, 1, r.stderr);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('fgh: '));
    t.deepEqual(errors, [`fgh: images.txt:1: ${large}: 100 x 60 = 6000 pixels, over the limit of 5000 (FGH_MAX_IMAGE_PIXELS); --skip-bad-images leaves such images out`]);
    t.false(existsSync(path.join(out, '12')), 'no epoch was trained');
  } finally {
    delete process.env.FGH_MAX_IMAGE_PIXELS;
  }
});
