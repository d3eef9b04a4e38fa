/**
 * Fashion-MNIST (Xiao et al. 2017) from Debian's dataset-fashion-mnist, as a seeded,
 * class-stratified fgh `folder` dataset: <dir>/<class>/<part>-<index>.png (greyscale PNG, which
 * fgh decodes to RGB as PIL's convert('RGB') does), train.txt (from the official training set:
 * the database) and test.txt (from t10k: the queries). Class folders are prefixed with the
 * Fashion-MNIST label ("0-T-shirt-top" ... "9-Ankle-boot") so that fgh's sorted class ids are
 * the dataset's own labels. A manifest written last makes a second call with the same options a
 * no-op, and an interrupted write is redone.
 */
import { requireReference } from './python.js';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';
import { resizeBilinear } from '../../src/data/pixels.js';
import { Rng } from '../../src/util/rng.js';

export const FASHION_MNIST_DIR = process.env.FGH_FASHION_MNIST ?? '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;

/** The folder of class `c`: its label, then its name with "/" and spaces as "-". */
export function classFolder(c: number): string {
  return `${c}-${FASHION_MNIST_CLASSES[c]!.replace(/[/ ]/g, '-')}`;
}

export type FashionMnistPart = 'train' | 't10k';

const FILES = (part: FashionMnistPart) => ({
  images: path.join(FASHION_MNIST_DIR, `${part}-images-idx3-ubyte.gz`),
  labels: path.join(FASHION_MNIST_DIR, `${part}-labels-idx1-ubyte.gz`),
});

export function fashionMnistAvailable(): boolean {
  return (['train', 't10k'] as const).every((p) => existsSync(FILES(p).images) && existsSync(FILES(p).labels));
}

export const MISSING_FASHION_MNIST = `skipped: needs Fashion-MNIST in ${FASHION_MNIST_DIR} (Debian: apt-get install dataset-fashion-mnist, or set FGH_FASHION_MNIST)`;

/** fashionMnistAvailable() for tests that compare on it: under CI=true its absence is an error. */
export function referenceFashionMnist(): boolean {
  return requireReference(fashionMnistAvailable(), MISSING_FASHION_MNIST.replace(/^skipped: needs /, ''));
}

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** count x rows x cols bytes, row-major. */
  pixels: Uint8Array;
}

/** An IDX file (big-endian header: 0, 0, type 0x08 = ubyte, number of dimensions; then the sizes). */
function readIdx(file: string, dims: number): { shape: number[]; data: Uint8Array } {
  const bytes = gunzipSync(readFileSync(file));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4 + 4 * dims || view.getUint16(0) !== 0 || bytes[2] !== 0x08 || bytes[3] !== dims) {
    throw new Error(`${file}: not an IDX file of ${dims}-d unsigned bytes`);
  }
  const shape = Array.from({ length: dims }, (_, i) => view.getUint32(4 + 4 * i));
  const start = 4 + 4 * dims;
  const size = shape.reduce((a, b) => a * b, 1);
  if (bytes.length !== start + size) throw new Error(`${file}: ${bytes.length - start} data bytes, the header says ${size}`);
  return { shape, data: bytes.subarray(start) };
}

export function readIdxImages(file: string): IdxImages {
  const { shape, data } = readIdx(file, 3);
  return { count: shape[0]!, rows: shape[1]!, cols: shape[2]!, pixels: data };
}

export function readIdxLabels(file: string): Uint8Array {
  return readIdx(file, 1).data;
}

const cache = new Map<FashionMnistPart, { images: IdxImages; labels: Uint8Array }>();

/** One part of Fashion-MNIST, read once per process. */
export function readFashionMnist(part: FashionMnistPart): { images: IdxImages; labels: Uint8Array } {
  let v = cache.get(part);
  if (!v) {
    const images = readIdxImages(FILES(part).images);
    const labels = readIdxLabels(FILES(part).labels);
    if (labels.length !== images.count) throw new Error(`${FILES(part).labels}: ${labels.length} labels for ${images.count} images`);
    for (const l of labels) if (l >= FASHION_MNIST_CLASSES.length) throw new Error(`${FILES(part).labels}: label ${l} out of range`);
    v = { images, labels };
    cache.set(part, v);
  }
  return v;
}

export interface FashionMnistOptions {
  /** Database images, from the official training set (default 2000). */
  train?: number;
  /** Query images, from t10k (default 1000). */
  query?: number;
  seed?: number;
  /** Side of the written images (default: the original 28 px); upscaled as PIL's bilinear resize does. */
  size?: number;
}

export interface FashionMnistSplit {
  dir: string;
  /** Class folder names, index = label. */
  classes: string[];
  train: number;
  query: number;
  /** Images per class: [train, query] by label. */
  perClass: Array<[number, number]>;
  /** False when the directory already held this split. */
  written: boolean;
}

const MANIFEST = 'fashion-mnist.json';
const FORMAT = 'fgh-fashion-mnist/1';

interface Manifest {
  format: string;
  train: number;
  query: number;
  seed: number;
  size: number;
  perClass: Array<[number, number]>;
}

/** Per-class counts: n / 10 each, the remainder to the lowest labels. */
function stratify(n: number): number[] {
  const c = FASHION_MNIST_CLASSES.length;
  return Array.from({ length: c }, (_, i) => Math.floor(n / c) + (i < n % c ? 1 : 0));
}

/** `counts[c]` indices of each class, drawn without replacement, ascending within a class. */
function draw(labels: Uint8Array, counts: number[], rng: Rng, part: string): number[][] {
  const byClass: number[][] = counts.map(() => []);
  labels.forEach((l, i) => byClass[l]!.push(i));
  return byClass.map((idx, c) => {
    if (counts[c]! > idx.length) throw new Error(`Fashion-MNIST ${part} has ${idx.length} images of class ${c}, asked for ${counts[c]}`);
    return rng
      .sample(idx.length, counts[c]!)
      .map((j) => idx[j]!)
      .sort((a, b) => a - b);
  });
}

function readManifest(dir: string): Manifest | null {
  try {
    return JSON.parse(readFileSync(path.join(dir, MANIFEST), 'utf8')) as Manifest;
  } catch {
    return null;
  }
}

async function writePng(file: string, pixels: Uint8Array, side: number, size: number): Promise<void> {
  let grey = pixels;
  if (size !== side) {
    const rgb = new Uint8Array(side * side * 3);
    for (let i = 0; i < side * side; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = pixels[i]!;
    const big = resizeBilinear({ width: side, height: side, data: rgb }, size, size);
    grey = new Uint8Array(size * size);
    for (let i = 0; i < size * size; i++) grey[i] = big.data[3 * i]!;
  }
  await sharp(Buffer.from(grey.buffer, grey.byteOffset, grey.byteLength), { raw: { width: size, height: size, channels: 1 } })
    .toColourspace('b-w')
    .png()
    .toFile(file);
}

/**
 * Writes (or finds already written) the split in `dir`. Refuses a non-empty directory that is not
 * one of these splits; a different split written earlier is replaced.
 */
export async function writeFashionMnist(dir: string, opts: FashionMnistOptions = {}): Promise<FashionMnistSplit> {
  const want = { format: FORMAT, train: opts.train ?? 2000, query: opts.query ?? 1000, seed: opts.seed ?? 0, size: opts.size ?? 28 };
  for (const [k, v] of Object.entries({ train: want.train, query: want.query, size: want.size })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`writeFashionMnist: ${k} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(want.seed) || want.seed < 0) throw new Error(`writeFashionMnist: seed must be a non-negative integer, got ${want.seed}`);
  const classes = FASHION_MNIST_CLASSES.map((_, c) => classFolder(c));
  const done = readManifest(dir);
  const same = done !== null && (Object.keys(want) as Array<keyof typeof want>).every((k) => done[k] === want[k]);
  if (same && existsSync(path.join(dir, 'train.txt')) && existsSync(path.join(dir, 'test.txt'))) {
    return { dir, classes, train: want.train, query: want.query, perClass: done.perClass, written: false };
  }
  mkdirSync(dir, { recursive: true });
  const ours = new Set([MANIFEST, 'train.txt', 'test.txt', ...classes]);
  const foreign = readdirSync(dir).filter((e) => !ours.has(e));
  if (done === null && foreign.length > 0) throw new Error(`${dir}: not empty and not a Fashion-MNIST split (holds ${foreign.slice(0, 3).join(', ')}); choose another directory`);
  // The manifest goes first and comes back last: a half-written split is never taken as done.
  for (const e of ours) rmSync(path.join(dir, e), { recursive: true, force: true });

  const rng = new Rng(want.seed);
  const perClass: Array<[number, number]> = classes.map(() => [0, 0]);
  const lists: Record<'train' | 'test', string[]> = { train: [], test: [] };
  for (const [part, split, n] of [['train', 'train', want.train], ['t10k', 'test', want.query]] as const) {
    const { images, labels } = readFashionMnist(part);
    const chosen = draw(labels, stratify(n), rng.fork(), part);
    const side = images.rows;
    const jobs: Array<{ file: string; index: number }> = [];
    chosen.forEach((idx, c) => {
      mkdirSync(path.join(dir, classes[c]!), { recursive: true });
      perClass[c]![split === 'train' ? 0 : 1] = idx.length;
      for (const i of idx) {
        const rel = `${classes[c]}/${part}-${String(i).padStart(5, '0')}.png`;
        lists[split].push(rel);
        jobs.push({ file: path.join(dir, rel), index: i });
      }
    });
    // A few encodes in flight: sharp runs them on its own threads.
    for (let s = 0; s < jobs.length; s += 16) {
      await Promise.all(jobs.slice(s, s + 16).map((j) => writePng(j.file, images.pixels.subarray(j.index * side * side, (j.index + 1) * side * side), side, want.size)));
    }
  }
  writeFileSync(path.join(dir, 'train.txt'), `${lists.train.join('\n')}\n`);
  writeFileSync(path.join(dir, 'test.txt'), `${lists.test.join('\n')}\n`);
  const manifest: Manifest = { ...want, perClass };
  writeFileSync(path.join(dir, MANIFEST), `${JSON.stringify(manifest, null, 1)}\n`);
  return { dir, classes, train: want.train, query: want.query, perClass, written: true };
}
