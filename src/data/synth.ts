import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadSharp } from './sharp.js';
import { FghError } from '../util/errors.js';
import { removeStaleTemps, tempNameFor } from '../util/atomic.js';
import { explainFsError, makeDirSync } from '../util/fs-errors.js';
import { Progress } from '../util/progress.js';
import { mixSeed, Rng } from '../util/rng.js';
import { packageVersion } from '../util/version.js';
import { Canvas, shapes, type Rgb } from './synth-draw.js';

/**
 * The embedded default dataset: "creatures" on varied backgrounds, whose class is given only by
 * two small parts — the colour of a crown on the head and the shape (and, beyond 20 classes, the
 * position) of a mark on the body. Every colour and shape used by a class part also appears in
 * bodies, backgrounds and distractors, so global colour statistics do not tell classes apart.
 * The creature faces right, tilted by up to 9 degrees, at a slightly varying scale and place (as
 * in a roughly cropped photograph): a ResNet trained from scratch learns these classes from a few
 * thousand images at 64 px, while random poses and tiny parts kept it at chance for as long as a
 * demo can train (PyTorch, same budget).
 */

/** Colours that name classes (crown); all of them also occur elsewhere in every class. */
export const CROWN_COLOURS: ReadonlyArray<{ name: string; rgb: Rgb }> = [
  { name: 'Red', rgb: [205, 40, 40] },
  { name: 'Yellow', rgb: [235, 200, 40] },
  { name: 'Blue', rgb: [40, 80, 210] },
  { name: 'Green', rgb: [40, 160, 70] },
  { name: 'White', rgb: [240, 240, 235] },
];
export const MARK_SHAPES = ['Dot', 'Bar', 'Ring', 'Triangle'] as const;
export const MARK_PLACES = ['Fore', 'Hind'] as const;
export const MAX_CLASSES = CROWN_COLOURS.length * MARK_SHAPES.length * MARK_PLACES.length;

const BODY_COLOURS: Rgb[] = [
  [120, 90, 60],
  [90, 90, 95],
  [160, 130, 90],
  [60, 50, 45],
  [180, 170, 150],
];
const PALETTE: Rgb[] = [...CROWN_COLOURS.map((c) => c.rgb), ...BODY_COLOURS, [30, 30, 30], [130, 180, 220], [200, 160, 200]];

export interface SynthOptions {
  classes: number;
  perClass: number;
  size: number;
  seed: number;
}

export const SYNTH_DEFAULTS: SynthOptions = { classes: 20, perClass: 30, size: 128, seed: 0 };

export interface SynthClass {
  name: string;
  crown: number;
  mark: number;
  place: number;
}

export function synthClass(c: number): SynthClass {
  const crown = c % CROWN_COLOURS.length;
  const mark = Math.floor(c / CROWN_COLOURS.length) % MARK_SHAPES.length;
  const place = Math.floor(c / (CROWN_COLOURS.length * MARK_SHAPES.length)) % MARK_PLACES.length;
  const name = `${CROWN_COLOURS[crown]!.name}_Crowned_${MARK_SHAPES[mark]}_${MARK_PLACES[place]}_Marked`;
  return { name, crown, mark, place };
}

/** Where the class parts landed in an image (pixels of the final image), for tests and debugging. */
export interface PartGeometry {
  crown: { x: number; y: number; r: number };
  mark: { x: number; y: number; r: number };
}

export interface SynthImage {
  rgb: Uint8Array;
  /** Rendered at twice the size; `encodeSynthImage` downsamples, which anti-aliases. */
  renderSize: number;
  parts: PartGeometry;
}

function markShape(kind: number, r: number): (u: number, v: number) => number {
  switch (kind) {
    case 0:
      return shapes.circle(r);
    case 1:
      return shapes.rect(r * 1.2, r * 0.4);
    case 2:
      return shapes.ring(r * 0.85, r * 0.45);
    default:
      return shapes.triangle(r * 1.1, r);
  }
}

/** Renders image `index` of class `c`; depends only on (seed, c, index), never on write order. */
export function renderSynthImage(seed: number, c: number, index: number, size: number): SynthImage {
  const rng = new Rng(mixSeed(seed, c, index));
  const S = size * 2;
  const cls = synthClass(c);
  const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]!;
  const canvas = new Canvas(S, S);

  // Background: a gradient between two palette colours, soft blobs and stripes, noise.
  canvas.gradient(pick(PALETTE), pick(PALETTE), rng.uniform(0, 2 * Math.PI));
  for (let i = 0, n = 3 + rng.int(4); i < n; i++) {
    const r = rng.uniform(0.08, 0.25) * S;
    canvas.fill(rng.uniform(0, S), rng.uniform(0, S), 0, r, pick(PALETTE), shapes.circle(r));
  }
  if (rng.next() < 0.5) {
    const angle = rng.uniform(0, Math.PI);
    for (let i = 0, n = 2 + rng.int(3); i < n; i++) {
      canvas.fill(rng.uniform(0, S), rng.uniform(0, S), angle, S, pick(PALETTE), shapes.rect(S, rng.uniform(0.01, 0.04) * S));
    }
  }
  // Distractors: the class parts' colours and mark shapes, loose in the scene.
  for (let i = 0, n = 1 + rng.int(2); i < n; i++) {
    const r = rng.uniform(0.025, 0.05) * S;
    canvas.fill(rng.uniform(0, S), rng.uniform(0, S), rng.uniform(0, 2 * Math.PI), 1.5 * r, pick(PALETTE), markShape(rng.int(MARK_SHAPES.length), r));
  }

  // The creature: tilt, scale and position vary a little; the body colour is any class's.
  const scale = rng.uniform(0.95, 1.1) * S;
  const a = 0.22 * scale; // body half-length
  const b = 0.12 * scale; // body half-height
  const angle = rng.uniform(-0.15, 0.15);
  const cx = rng.uniform(0.455, 0.545) * S;
  const cy = rng.uniform(0.477, 0.543) * S;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const at = (u: number, v: number): [number, number] => [cx + u * cos - v * sin, cy + u * sin + v * cos];
  const body = pick(BODY_COLOURS);
  const tail = at(-a * 1.05, 0);
  canvas.fill(tail[0], tail[1], angle + Math.PI, a * 0.5, body, shapes.triangle(a * 0.35, b * 0.8));
  canvas.fill(cx, cy, angle, a, body, shapes.ellipse(a, b));
  const headR = b * 0.75;
  const head = at(a * 0.95, -b * 0.45);
  canvas.fill(head[0], head[1], 0, headR, pick(BODY_COLOURS), shapes.circle(headR));
  const beak = at(a * 0.95 + headR * 1.2, -b * 0.45);
  canvas.fill(beak[0], beak[1], angle, headR * 0.6, [70, 60, 40], shapes.triangle(headR * 0.45, headR * 0.3));
  const eye = at(a * 0.95 + headR * 0.35, -b * 0.6);
  canvas.fill(eye[0], eye[1], 0, headR * 0.2, [15, 15, 15], shapes.circle(headR * 0.15));

  // Class part 1: the crown's colour.
  const crownR = headR * 0.67;
  const crown = at(a * 0.95, -b * 0.45 - headR * 1.04);
  canvas.fill(crown[0], crown[1], angle, crownR, CROWN_COLOURS[cls.crown]!.rgb, shapes.ellipse(crownR, crownR * 0.75));
  // Class part 2: the mark's shape (and place, fore or hind half of the body).
  const markR = b * 0.6;
  const mark = at(cls.place === 0 ? a * 0.35 : -a * 0.45, b * 0.1);
  const markColour: Rgb = rng.next() < 0.5 ? [25, 25, 25] : [235, 235, 230];
  canvas.fill(mark[0], mark[1], angle + rng.uniform(-0.3, 0.3), markR * 1.5, markColour, markShape(cls.mark, markR));

  canvas.noise(rng, 10);
  return {
    rgb: canvas.toBytes(),
    renderSize: S,
    parts: {
      crown: { x: crown[0] / 2, y: crown[1] / 2, r: crownR / 2 },
      mark: { x: mark[0] / 2, y: mark[1] / 2, r: markR / 2 },
    },
  };
}

/** The final JPEG: rendered at 2x, downsampled (anti-aliasing) and encoded at quality 90. */
export async function encodeSynthImage(img: SynthImage, size: number): Promise<Buffer> {
  return (await loadSharp())(img.rgb, { raw: { width: img.renderSize, height: img.renderSize, channels: 3 } })
    .resize(size, size, { kernel: 'lanczos3' })
    .jpeg({ quality: 90, chromaSubsampling: '4:4:4' })
    .toBuffer();
}

export function validateSynthOptions(o: SynthOptions): void {
  const int = (v: number, name: string, lo: number, hi: number): void => {
    if (!Number.isInteger(v) || v < lo || v > hi) throw new FghError(`--${name} must be an integer in ${lo}..${hi}, got ${v}`);
  };
  int(o.classes, 'classes', 2, MAX_CLASSES);
  int(o.perClass, 'per-class', 2, 100_000);
  int(o.size, 'size', 32, 1024);
  int(o.seed, 'seed', 0, 2 ** 32 - 1);
}

const MARKER = 'fgh synth';

/** True if DIR may be (re)written: absent, empty, or an earlier synth output. */
function replaceable(dir: string): boolean {
  if (!existsSync(dir)) return true;
  const entries = readdirSync(dir);
  if (entries.length === 0) return true;
  const readme = path.join(dir, 'README.txt');
  return existsSync(readme) && readFileSync(readme, 'utf8').startsWith(MARKER);
}

export interface SynthSummary {
  out: string;
  classes: number;
  images: number;
  train: number;
  test: number;
  size: number;
  seed: number;
  seconds: number;
}

/**
 * Writes the dataset in the CUB-200-2011 layout. It is built in a temporary sibling folder and
 * renamed into place at the end, so an interrupted run never leaves a complete-looking dataset.
 */
export async function writeSynthDataset(out: string, opts: SynthOptions, progress?: Progress): Promise<SynthSummary> {
  validateSynthOptions(opts);
  const start = performance.now();
  const dest = path.resolve(out);
  if (!replaceable(dest)) throw new FghError(`${out}: exists and is not an fgh synth dataset; choose another --out or remove it`);
  const tmp = tempNameFor(dest);
  try {
    // What a run killed midway left; a running one's stays.
    removeStaleTemps(dest);
    makeDirSync(path.join(tmp, 'images'));
    const images: string[] = [];
    const labels: number[] = [];
    const split: number[] = [];
    const classLines: string[] = [];
    const splitRng = new Rng(mixSeed(opts.seed, 0x5eed));
    for (let c = 0; c < opts.classes; c++) {
      const cls = synthClass(c);
      const dirName = `${String(c + 1).padStart(3, '0')}.${cls.name}`;
      mkdirSync(path.join(tmp, 'images', dirName));
      classLines.push(`${c + 1} ${dirName}`);
      const order = splitRng.shuffle(Array.from({ length: opts.perClass }, (_, i) => i));
      const isTrain = new Array<boolean>(opts.perClass).fill(false);
      for (let i = 0; i < Math.ceil(opts.perClass / 2); i++) isTrain[order[i]!] = true;
      for (let i = 0; i < opts.perClass; i++) {
        images.push(`${dirName}/${cls.name}_${String(i + 1).padStart(4, '0')}.jpg`);
        labels.push(c + 1);
        split.push(isTrain[i] ? 1 : 0);
      }
    }
    // Decoding-free work, so a small pool keeps sharp's encoder threads busy.
    const total = images.length;
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let k = next++; k < total; k = next++) {
        const c = labels[k]! - 1;
        const index = k - c * opts.perClass;
        const jpeg = await encodeSynthImage(renderSynthImage(opts.seed, c, index, opts.size), opts.size);
        await writeFile(path.join(tmp, 'images', images[k]!), jpeg);
        progress?.tick();
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    const lines = (f: (i: number) => string): string => images.map((_, i) => f(i)).join('\n') + '\n';
    await writeFile(path.join(tmp, 'images.txt'), lines((i) => `${i + 1} ${images[i]}`));
    await writeFile(path.join(tmp, 'image_class_labels.txt'), lines((i) => `${i + 1} ${labels[i]}`));
    await writeFile(path.join(tmp, 'train_test_split.txt'), lines((i) => `${i + 1} ${split[i]}`));
    await writeFile(path.join(tmp, 'classes.txt'), classLines.join('\n') + '\n');
    await writeFile(
      path.join(tmp, 'README.txt'),
      `${MARKER} ${packageVersion()}: a synthetic fine-grained dataset in the CUB-200-2011 layout.\n` +
        `classes ${opts.classes}, ${opts.perClass} images per class, ${opts.size} px, seed ${opts.seed}.\n` +
        'Each image shows one creature, facing right at a slightly varying tilt, scale and place, on a random background with distractors.\n' +
        'The class is the colour of the crown on its head and the shape of the mark on its body (and, beyond 20\n' +
        'classes, whether the mark is on the fore or hind half); all these colours and shapes also appear elsewhere.\n',
    );
    if (existsSync(dest)) rmSync(dest, { recursive: true, force: true });
    renameSync(tmp, dest);
    progress?.finish();
    const train = split.filter((s) => s === 1).length;
    return { out: dest, classes: opts.classes, images: total, train, test: total - train, size: opts.size, seed: opts.seed, seconds: (performance.now() - start) / 1000 };
  } catch (e) {
    try {
      rmSync(tmp, { recursive: true, force: true });
    } catch {
      /* the write's own error is what matters */
    }
    throw explainFsError(e, out);
  }
}
