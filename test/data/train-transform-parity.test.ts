import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeRgb, resizeBilinear, hflip, type RgbImage } from '../../src/data/image.js';
import {
  applyCropFlip,
  applySrlh,
  randomResizedCropBox,
  sampleCropFlip,
  sampleSrlh,
  semiconAugment,
  srlhAugment,
  type CropFlipParams,
  type SrlhParams,
} from '../../src/train/augment.js';
import { Rng } from '../../src/util/rng.js';
import { readBundle } from '../helpers/bundle.js';
import { missingPythonMessage, referencePython } from '../helpers/python.js';

/**
 * The training transforms against torchvision 0.14 on PIL images, with the random parameters
 * fixed: our crop box, flip and jitter factors are given to torchvision.transforms.functional.
 * And the distribution of our RandomResizedCrop boxes against torchvision's get_params.
 */

const here = path.dirname(fileURLToPath(import.meta.url));
const script = path.resolve(here, '../../../test/python/train_transform_reference.py');
const MODULES = ['torch', 'torchvision', 'PIL', 'scipy', 'numpy'];
const python = referencePython(...MODULES);
const pyTest = python ? test : test.skip;
if (!python) console.warn(`train transform parity: ${missingPythonMessage(...MODULES)}`);

const SIZE = 224;
const DRAWS = 5000;
const STAT_SIZES: Array<[number, number]> = [
  [500, 375],
  [333, 500],
  // So elongated that most attempts are rejected and some draws fall back to the central crop.
  [1000, 150],
];

let dir = '';
let prepared: { images: Array<{ name: string; width: number; height: number }>; crops: Record<string, Array<[number, number, number, number]>> } | null = null;

test.before(() => {
  if (!python) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-train-tf-'));
  const r = spawnSync(python, [script, 'prepare', dir, String(DRAWS), ...STAT_SIZES.map(([w, h]) => `${w}x${h}`)], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`reference script failed: ${r.stderr}`);
  prepared = JSON.parse(r.stdout) as typeof prepared;
});
test.after.always(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Param = ({ kind: 'crop' } & CropFlipParams) | ({ kind: 'srlh' } & SrlhParams);

/** Mean and max |a - b| in uint8 levels (= units of 1/255 after ToTensor). */
function diff(a: RgbImage, b: { shape: number[]; data: Float32Array }): { mean: number; max: number } {
  if (a.height !== b.shape[0] || a.width !== b.shape[1]) throw new Error(`size ${a.width}x${a.height} vs ${b.shape.join('x')}`);
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!);
    sum += d;
    max = Math.max(max, d);
  }
  return { mean: sum / a.data.length, max };
}

pyTest('RandomResizedCrop + flip and Resize + flip + ColorJitter match torchvision with the same parameters', async (t) => {
  const rng = new Rng(2024);
  const params: Array<Param & { name: string }> = [];
  for (const { name, width, height } of prepared!.images) {
    for (let k = 0; k < 6; k++) params.push({ name, kind: 'crop', ...sampleCropFlip(width, height, rng) });
    // The whole image, and a small box that is upsampled.
    params.push({ name, kind: 'crop', box: { left: 0, top: 0, width, height }, flip: true });
    params.push({ name, kind: 'crop', box: { left: 7, top: 5, width: 40, height: 31 }, flip: false });
    for (let k = 0; k < 4; k++) params.push({ name, kind: 'srlh', ...sampleSrlh(rng) });
    // The ends of the jitter ranges, in both orders.
    params.push({ name, kind: 'srlh', flip: false, jitter: { brightness: 1.2, contrast: 0.8, brightnessFirst: true } });
    params.push({ name, kind: 'srlh', flip: true, jitter: { brightness: 0.8, contrast: 1.2, brightnessFirst: false } });
  }
  t.true(params.some((p) => p.kind === 'crop' && p.flip) && params.some((p) => p.kind === 'crop' && !p.flip), 'both flips drawn');
  t.true(params.some((p) => p.kind === 'srlh' && p.jitter.brightnessFirst) && params.some((p) => p.kind === 'srlh' && !p.jitter.brightnessFirst), 'both jitter orders drawn');

  const r = spawnSync(python!, [script, 'apply', dir], { input: JSON.stringify(params), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`reference script failed: ${r.stderr}`);
  const ref = readBundle(path.join(dir, 'ref'));

  // Same input pixels (PIL's decode, losslessly re-encoded) isolate the transforms; our own
  // decode of the JPEGs (sharp) is the end-to-end figure.
  const samePixels = new Map<string, RgbImage>();
  const ownDecode = new Map<string, RgbImage>();
  for (const { name } of prepared!.images) {
    samePixels.set(name, await decodeRgb(path.join(dir, `${name}.pil.png`)));
    ownDecode.set(name, await decodeRgb(path.join(dir, name)));
  }
  const apply = (img: RgbImage, p: Param) => (p.kind === 'crop' ? applyCropFlip(img, SIZE, p) : applySrlh(img, SIZE, p));
  const stats = { crop: { same: [] as number[], sameMax: 0, own: [] as number[], ownMax: 0, oldBox: [] as number[], oldBoxMax: 0 }, srlh: { same: [] as number[], sameMax: 0, own: [] as number[], ownMax: 0 } };
  params.forEach((p, i) => {
    const want = ref.get(String(i))!;
    const same = diff(apply(samePixels.get(p.name)!, p), want);
    const own = diff(apply(ownDecode.get(p.name)!, p), want);
    const s = stats[p.kind];
    s.same.push(same.mean);
    s.sameMax = Math.max(s.sameMax, same.max);
    s.own.push(own.mean);
    s.ownMax = Math.max(s.ownMax, own.max);
    t.true(same.mean < 1, `${p.name} #${i} ${p.kind}: mean |diff| ${same.mean}/255 from identical pixels`);
    t.true(own.mean < 1, `${p.name} #${i} ${p.kind}: mean |diff| ${own.mean}/255 from our decode`);
    if (p.kind === 'crop') {
      // What the previous code did: PIL's resize(box=...), whose filter reads past the box edges.
      const old = resizeBilinear(samePixels.get(p.name)!, SIZE, SIZE, p.box);
      const d = diff(p.flip ? hflip(old) : old, want);
      stats.crop.oldBox.push(d.mean);
      stats.crop.oldBoxMax = Math.max(stats.crop.oldBoxMax, d.max);
    }
  });
  const avg = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const worst = (a: number[]) => Math.max(...a);
  for (const kind of ['crop', 'srlh'] as const) {
    const s = stats[kind];
    t.log(
      `${kind === 'crop' ? 'resized_crop+hflip' : 'resize+hflip+jitter'} (${s.same.length} images): identical input pixels mean ${avg(s.same).toExponential(2)}/255 (worst image ${worst(s.same).toExponential(2)}) max ${s.sameMax}/255; ` +
        `our JPEG decode mean ${avg(s.own).toFixed(3)}/255 (worst ${worst(s.own).toFixed(3)}) max ${s.ownMax}/255`,
    );
  }
  t.log(`previous crop (resize with box, no crop): mean ${avg(stats.crop.oldBox).toExponential(2)}/255 (worst ${worst(stats.crop.oldBox).toExponential(2)}) max ${stats.crop.oldBoxMax}/255`);
  // PIL's arithmetic is integer (resize) and C float (blend); we reproduce both exactly.
  t.is(stats.crop.sameMax, 0, 'crop: identical to torchvision from identical pixels');
  t.is(stats.srlh.sameMax, 0, 'sRLH: identical to torchvision from identical pixels');
});

pyTest('randomResizedCropBox draws from the distribution of torchvision RandomResizedCrop.get_params', (t) => {
  const rng = new Rng(5);
  for (const [W, H] of STAT_SIZES) {
    const theirs = prepared!.crops[`${W}x${H}`]!.map(([top, left, h, w]) => ({ left, top, width: w, height: h }));
    const ours = Array.from({ length: DRAWS }, () => randomResizedCropBox(W, H, rng));
    const features = {
      'area fraction': (b: Box) => (b.width * b.height) / (W * H),
      'log aspect': (b: Box) => Math.log(b.width / b.height),
      'centre x': (b: Box) => (b.left + b.width / 2) / W,
      'centre y': (b: Box) => (b.top + b.height / 2) / H,
    };
    const parts: string[] = [];
    for (const [name, f] of Object.entries(features)) {
      const a = ours.map(f);
      const b = theirs.map(f);
      const [ma, va] = meanVar(a);
      const [mb, vb] = meanVar(b);
      // Two independent samples of 5000: the difference of means has standard error
      // sqrt(va/n + vb/n); 4 standard errors is exceeded by chance with probability 6e-5.
      const se = Math.sqrt(va / a.length + vb / b.length);
      t.true(Math.abs(ma - mb) < 4 * se, `${W}x${H} ${name}: mean ${ma} vs torchvision ${mb} (se ${se})`);
      // Two-sample Kolmogorov-Smirnov at significance 1e-4: D < c * sqrt((n + m) / (n m)) with
      // c = sqrt(-ln(1e-4 / 2) / 2) = 2.23, i.e. D < 0.0445 for n = m = 5000.
      const d = ks(a, b);
      const crit = Math.sqrt(-Math.log(1e-4 / 2) / 2) * Math.sqrt((a.length + b.length) / (a.length * b.length));
      t.true(d < crit, `${W}x${H} ${name}: KS D = ${d} >= ${crit}`);
      parts.push(`${name} mean ${ma.toFixed(4)} vs ${mb.toFixed(4)} (|diff| ${(Math.abs(ma - mb) / se).toFixed(2)} se), KS D ${d.toFixed(4)} (crit ${crit.toFixed(4)})`);
    }
    t.log(`${W}x${H}: ${parts.join('; ')}`);
  }
  // The comparison has the power to see a wrong sampler: scale 0.2..1 instead of 0.08..1.
  const theirs = prepared!.crops['500x375']!.map(([, , h, w]) => (w * h) / (500 * 375));
  const wrong = Array.from({ length: DRAWS }, () => randomResizedCropBox(500, 375, rng, [0.2, 1])).map((b) => (b.width * b.height) / (500 * 375));
  const d = ks(wrong, theirs);
  t.log(`a wrong sampler (scale 0.2..1): KS D ${d.toFixed(4)}`);
  t.true(d > 0.0445);
});

test('srlhAugment and semiconAugment are the sampling followed by the application', async (t) => {
  const px = new Uint8Array(90 * 70 * 3).map((_, i) => (i * 37 + (i >> 5)) & 255);
  const img: RgbImage = { width: 90, height: 70, data: px };
  for (let seed = 0; seed < 8; seed++) {
    t.deepEqual(srlhAugment(32)(img, new Rng(seed)), applySrlh(img, 32, sampleSrlh(new Rng(seed))));
    t.deepEqual(semiconAugment(32)(img, new Rng(seed)), applyCropFlip(img, 32, sampleCropFlip(90, 70, new Rng(seed))));
  }
  // The jitter factors stay in torchvision's range [0.8, 1.2].
  const rng = new Rng(3);
  const js = Array.from({ length: 2000 }, () => sampleSrlh(rng).jitter);
  t.true(js.every((j) => j.brightness >= 0.8 && j.brightness <= 1.2 && j.contrast >= 0.8 && j.contrast <= 1.2));
  const first = js.filter((j) => j.brightnessFirst).length / js.length;
  t.true(Math.abs(first - 0.5) < 0.05, `brightness first in ${first} of draws`);
});

type Box = { left: number; top: number; width: number; height: number };

function meanVar(a: number[]): [number, number] {
  const m = a.reduce((x, y) => x + y, 0) / a.length;
  return [m, a.reduce((x, y) => x + (y - m) ** 2, 0) / (a.length - 1)];
}

/** Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs. */
function ks(a: number[], b: number[]): number {
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < x.length && j < y.length) {
    const v = Math.min(x[i]!, y[j]!);
    while (i < x.length && x[i]! <= v) i++;
    while (j < y.length && y[j]! <= v) j++;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  return d;
}
