import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { renderSynthImage, synthClass, writeSynthDataset, CROWN_COLOURS } from '../../src/data/synth.js';
import { projectRoot } from '../../src/util/version.js';

const tmp = (): string => mkdtempSync(path.join(os.tmpdir(), 'fgh-synth-'));
const lines = (file: string): string[][] => readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(' '));

test('writes the CUB-200-2011 layout with consistent ids, labels and a per-class half split', async (t) => {
  const dir = tmp();
  try {
    const out = path.join(dir, 'ds');
    const s = await writeSynthDataset(out, { classes: 6, perClass: 7, size: 64, seed: 3 });
    t.is(s.images, 42);
    const images = lines(path.join(out, 'images.txt'));
    const labels = lines(path.join(out, 'image_class_labels.txt'));
    const split = lines(path.join(out, 'train_test_split.txt'));
    const classes = lines(path.join(out, 'classes.txt'));
    t.is(classes.length, 6);
    t.deepEqual(classes[0], ['1', `001.${synthClass(0).name}`]);
    t.is(images.length, 42);
    for (let i = 0; i < 42; i++) {
      t.is(images[i]![0], String(i + 1));
      t.is(labels[i]![0], String(i + 1));
      t.is(split[i]![0], String(i + 1));
      const cls = Number(labels[i]![1]);
      t.true(images[i]![1]!.startsWith(`${classes[cls - 1]![1]}/`), 'the image lives in its class folder');
      const meta = await sharp(path.join(out, 'images', images[i]![1]!)).metadata();
      t.is(meta.width, 64);
      t.is(meta.format, 'jpeg');
    }
    for (let c = 1; c <= 6; c++) {
      const train = split.filter((_, i) => labels[i]![1] === String(c) && split[i]![1] === '1').length;
      t.is(train, 4, `class ${c}: ceil(7/2) train images`);
    }
    t.deepEqual(readdirSync(dir), ['ds'], 'no temporary folder is left behind');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('deterministic per seed, different across seeds', async (t) => {
  const dir = tmp();
  try {
    const opts = { classes: 3, perClass: 3, size: 48, seed: 9 };
    await writeSynthDataset(path.join(dir, 'a'), opts);
    await writeSynthDataset(path.join(dir, 'b'), opts);
    await writeSynthDataset(path.join(dir, 'c'), { ...opts, seed: 10 });
    for (const rel of lines(path.join(dir, 'a', 'images.txt')).map((l) => l[1]!)) {
      const a = readFileSync(path.join(dir, 'a', 'images', rel));
      t.true(a.equals(readFileSync(path.join(dir, 'b', 'images', rel))), `${rel} is identical for the same seed`);
      t.false(a.equals(readFileSync(path.join(dir, 'c', 'images', rel))), `${rel} differs for another seed`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('refuses to overwrite a folder that is not a synth dataset', async (t) => {
  const dir = tmp();
  try {
    mkdirSync(path.join(dir, 'mine'));
    writeFileSync(path.join(dir, 'mine', 'precious.txt'), 'keep me');
    await t.throwsAsync(writeSynthDataset(path.join(dir, 'mine'), { classes: 2, perClass: 2, size: 32, seed: 0 }), { message: /is not an fgh synth dataset/ });
    t.is(readFileSync(path.join(dir, 'mine', 'precious.txt'), 'utf8'), 'keep me');
    await t.throwsAsync(writeSynthDataset(path.join(dir, 'x'), { classes: 1, perClass: 2, size: 32, seed: 0 }), { message: /--classes must be an integer in 2\.\.40, got 1/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Nearest-centroid accuracy with leave-one-out, in float64. */
function nearestCentroidAccuracy(features: number[][], labels: number[]): number {
  const classes = [...new Set(labels)];
  let correct = 0;
  for (let i = 0; i < features.length; i++) {
    let best = -1;
    let bestD = Infinity;
    for (const c of classes) {
      const members = features.filter((_, j) => j !== i && labels[j] === c);
      const centroid = members[0]!.map((_, k) => members.reduce((s, f) => s + f[k]!, 0) / members.length);
      const d = centroid.reduce((s, v, k) => s + (v - features[i]![k]!) ** 2, 0);
      if (d < bestD) [bestD, best] = [d, c];
    }
    if (best === labels[i]) correct++;
  }
  return correct / features.length;
}

test('fine-grained: global colour histograms do not tell classes apart, the crown part does', (t) => {
  const size = 96;
  const perClass = 12;
  const nClasses = 10;
  const hist: number[][] = [];
  const crown: number[][] = [];
  const labels: number[] = [];
  const crownLabels: number[] = [];
  for (let c = 0; c < nClasses; c++) {
    for (let i = 0; i < perClass; i++) {
      const img = renderSynthImage(1, c, i, size);
      const S = img.renderSize;
      // Global colour histogram: 4 levels per channel, 64 bins, normalised.
      const h = new Array<number>(64).fill(0);
      for (let p = 0; p < S * S; p++) h[(img.rgb[3 * p]! >> 6) * 16 + (img.rgb[3 * p + 1]! >> 6) * 4 + (img.rgb[3 * p + 2]! >> 6)]! += 1 / (S * S);
      hist.push(h);
      labels.push(c);
      // Mean colour inside the crown (geometry in final-image pixels; the render is 2x).
      const { x, y, r } = img.parts.crown;
      const m = [0, 0, 0];
      let n = 0;
      for (let yy = Math.floor((y - r / 2) * 2); yy <= (y + r / 2) * 2; yy++)
        for (let xx = Math.floor((x - r / 2) * 2); xx <= (x + r / 2) * 2; xx++) {
          if (xx < 0 || yy < 0 || xx >= S || yy >= S) continue;
          for (let k = 0; k < 3; k++) m[k]! += img.rgb[3 * (yy * S + xx) + k]!;
          n++;
        }
      crown.push(m.map((v) => v / Math.max(1, n)));
      crownLabels.push(synthClass(c).crown);
    }
  }
  const chance = 1 / nClasses;
  const histAcc = nearestCentroidAccuracy(hist, labels);
  const crownAcc = nearestCentroidAccuracy(crown, crownLabels);
  t.log(`nearest-centroid accuracy: colour histogram ${(100 * histAcc).toFixed(1)}% (chance ${(100 * chance).toFixed(0)}%), crown colour ${(100 * crownAcc).toFixed(1)}% (chance ${(100 / CROWN_COLOURS.length).toFixed(0)}%)`);
  t.true(histAcc < 2.5 * chance, `global colour histograms classify at ${histAcc}`);
  t.true(crownAcc > 0.9, `the crown region carries the colour label: ${crownAcc}`);
});

test('fgh synth CLI: --json summary, and one-line errors for bad flags', (t) => {
  const dir = tmp();
  const bin = path.join(projectRoot(), 'bin', 'fgh.js');
  try {
    const ok = spawnSync(process.execPath, [bin, 'synth', '--out', path.join(dir, 'd'), '--classes', '3', '--per-class', '4', '--size', '40', '--json'], { encoding: 'utf8' });
    t.is(ok.status, 0, ok.stderr);
    const s = JSON.parse(ok.stdout) as { images: number; classes: number; train: number; test: number };
    t.deepEqual([s.images, s.classes, s.train, s.test], [12, 3, 6, 6]);
    const bad = spawnSync(process.execPath, [bin, 'synth', '--out', path.join(dir, 'e'), '--size', '8'], { encoding: 'utf8' });
    t.is(bad.status, 1);
    t.is(bad.stderr.trim(), 'fgh: --size must be an integer in 32..1024, got 8');
    const worse = spawnSync(process.execPath, [bin, 'synth', '--out', path.join(dir, 'e'), '--seed', 'abc'], { encoding: 'utf8' });
    t.not(worse.status, 0);
    t.is(worse.stderr.trim().split('\n').length, 1, worse.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
