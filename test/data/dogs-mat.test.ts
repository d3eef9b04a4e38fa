import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { loadDataset } from '../../src/data/datasets/index.js';
import { parseMat, readMatFile } from '../../src/data/datasets/matlab.js';
import type { Dataset } from '../../src/data/types.js';
import { FghError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { missingPythonMessage, referencePython } from '../helpers/python.js';

/**
 * Stanford Dogs' MATLAB lists: files written by scipy.io.savemat (compressed or not, 1xN or
 * Nx1, struct or top-level variables, file_list as a cell of strings or of 1x1 cells) and
 * big-endian files written by a small Python writer that scipy's reader checks, loaded over a
 * tree of real JPEGs and compared with the same lists given as SEMICON's train.txt/test.txt.
 */

const here = path.dirname(fileURLToPath(import.meta.url));
const script = path.resolve(here, '../../../test/python/dogs_mat_fixtures.py');
const python = referencePython('scipy', 'numpy');
const pyTest = python ? test : test.skip;
if (!python) console.warn(`dogs-mat: ${missingPythonMessage('scipy', 'numpy')}`);

const TRAIN: Array<[string, number]> = [
  ['n02085620-Chihuahua/n02085620_10074.jpg', 1],
  ['n02085782-Japanese_spaniel/n02085782_1039.jpg', 2],
  ['n02086910-papillon/n02086910_10147.jpg', 4],
];
const TEST: Array<[string, number]> = [
  ['n02085620-Chihuahua/n02085620_2650.jpg', 1],
  ['n02086910-papillon/n02086910_103.jpg', 4],
];
// As the text lists name them: class = label - 1, named from the <wnid>-<breed> folder; a label
// with no image keeps its number.
const CLASSES = ['Chihuahua', 'Japanese_spaniel', '3', 'papillon'];

interface Spec {
  path: string;
  form: 'struct' | 'top';
  var?: string;
  compress?: boolean;
  oned_as?: 'row' | 'column';
  cells: 'char' | 'nested';
  labels_dtype?: string;
  endian?: 'big';
  extra?: boolean;
  entries: Array<[string | number, number]>;
}

type Variant = Omit<Spec, 'path' | 'entries' | 'var'>;

const VARIANTS: Record<string, Variant> = {
  'struct-compressed-column-nested': { form: 'struct', compress: true, oned_as: 'column', cells: 'nested', extra: true },
  'struct-plain-row-char': { form: 'struct', compress: false, oned_as: 'row', cells: 'char', labels_dtype: 'uint8', extra: true },
  'top-compressed-row-nested': { form: 'top', compress: true, oned_as: 'row', cells: 'nested', labels_dtype: 'int32' },
  'top-plain-column-char': { form: 'top', compress: false, oned_as: 'column', cells: 'char', labels_dtype: 'uint16' },
  'struct-bigendian-nested': { form: 'struct', cells: 'nested', endian: 'big' },
  'top-bigendian-char': { form: 'top', cells: 'char', endian: 'big' },
};

let work = '';
const roots = new Map<string, string>();

function listFiles(v: Variant, root: string): [string, string] {
  return v.form === 'struct' ? [path.join(root, 'train_data.mat'), path.join(root, 'test_data.mat')] : [path.join(root, 'lists/train_list.mat'), path.join(root, 'lists/test_list.mat')];
}

function specs(name: string, v: Variant, train = TRAIN as Spec['entries'], testEntries = TEST as Spec['entries'], vars = ['train_info', 'test_info']): Spec[] {
  const root = path.join(work, name);
  mkdirSync(root, { recursive: true });
  symlinkSync(path.join(work, 'images'), path.join(root, 'images'));
  roots.set(name, root);
  const [a, b] = listFiles(v, root);
  return [
    { ...v, path: a, var: vars[0]!, entries: train },
    // The extra variables go in the training file only, keeping the test files small for fuzzing.
    { ...v, path: b, var: vars[1]!, entries: testEntries, extra: false },
  ];
}

test.before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'fgh-dogs-mat-'));
  // Real (small) JPEGs under images/Images/<wnid-breed>/.
  const rng = new Rng(7);
  for (const [rel] of [...TRAIN, ...TEST]) {
    const file = path.join(work, 'images/Images', rel);
    mkdirSync(path.dirname(file), { recursive: true });
    const px = Buffer.from(Array.from({ length: 24 * 18 * 3 }, () => rng.int(256)));
    await sharp(px, { raw: { width: 24, height: 18, channels: 3 } }).jpeg({ quality: 85 }).toFile(file);
  }
  // The same lists as SEMICON's text files, the reference for every MATLAB variant.
  const text = path.join(work, 'text');
  mkdirSync(text);
  symlinkSync(path.join(work, 'images'), path.join(text, 'images'));
  writeFileSync(path.join(text, 'train.txt'), TRAIN.map(([f, l]) => `${f} ${l}\n`).join(''));
  writeFileSync(path.join(text, 'test.txt'), TEST.map(([f, l]) => `${f} ${l}\n`).join(''));
  roots.set('text', text);
  if (!python) return;
  const all: Spec[] = Object.entries(VARIANTS).flatMap(([name, v]) => specs(name, v));
  const base: Variant = { form: 'struct', compress: true, oned_as: 'column', cells: 'nested' };
  all.push(...specs('missing-image', base, [TRAIN[0]!, ['n02085782-Japanese_spaniel/missing.jpg', 2]]));
  all.push(...specs('number-entry', { ...base, form: 'top', compress: false }, TRAIN, [TEST[0]!, [3, 4]]));
  all.push(...specs('label-zero', base, [[TRAIN[0]![0], 0]]));
  all.push(...specs('wrong-variable', base, TRAIN, TEST, ['info', 'info']));
  const r = spawnSync(python, [script, path.join(work, 'refused.mat')], { input: JSON.stringify(all), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`fixture script failed: ${r.stderr}`);
});
test.after.always(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** What a loaded dataset says, with paths relative to its root (roots differ between variants). */
function view(d: Dataset) {
  const split = (s: 'train' | 'test') => (d.splits[s] ?? []).map((x) => ({ path: path.relative(d.root, x.path), labels: x.labels, id: x.id }));
  return { classes: d.classes, train: split('train'), test: split('test'), warnings: d.warnings };
}

test('the text lists (the reference for the MATLAB variants) load as expected', (t) => {
  const d = loadDataset('dogs', { root: roots.get('text')! });
  t.deepEqual(d.classes, CLASSES);
  t.deepEqual(
    view(d).train.map((s) => [s.path, s.labels[0]]),
    TRAIN.map(([f, l]) => [`images/Images/${f}`, l - 1]),
  );
});

for (const [name, v] of Object.entries(VARIANTS)) {
  pyTest(`dogs from ${v.form === 'struct' ? 'train_data.mat/test_data.mat' : 'lists/*_list.mat'}: ${name}`, (t) => {
    const root = roots.get(name)!;
    const d = loadDataset('dogs', { root });
    const want = view(loadDataset('dogs', { root: roots.get('text')! }));
    t.deepEqual(view(d), want, 'same samples, labels, ids, classes and warnings as train.txt/test.txt');
    t.deepEqual(d.classes, CLASSES);
    t.is(d.splits.train!.length, TRAIN.length);
    t.is(d.splits.test!.length, TEST.length);
    const trainFile = v.form === 'struct' ? 'train_data.mat' : 'lists/train_list.mat';
    t.deepEqual(
      d.splits.train!.map((s) => s.source),
      TRAIN.map((_, i) => `${trainFile} entry ${i + 1}`),
    );
  });
}

pyTest('variables not asked for are skipped undecoded; large ones decode column-major', (t) => {
  for (const name of ['struct-compressed-column-nested', 'struct-plain-row-char']) {
    const file = path.join(roots.get(name)!, 'train_data.mat');
    // The file also holds a sparse matrix, which the reader refuses but loadDogs never decodes.
    t.throws(() => readMatFile(file, ['train_fg_data']), { message: `${file}: variable "train_fg_data": a sparse array, which is not supported` });
    // A 200x100 matrix (larger than the reader's first look at each variable) of (i*100+j)/7.
    const m = readMatFile(file, ['train_data']).get('train_data')!;
    if (m.kind !== 'numeric') return t.fail(m.kind);
    t.deepEqual(m.dims, [200, 100]);
    let bad = 0;
    for (let j = 0; j < 100; j++) for (let i = 0; i < 200; i++) if (m.data[j * 200 + i] !== (i * 100 + j) / 7) bad++;
    t.is(bad, 0, name);
  }
});

pyTest('a missing image, a malformed entry, a bad label and a missing variable name the .mat file and the entry', (t) => {
  const root = roots.get('missing-image')!;
  t.throws(() => loadDataset('dogs', { root }), {
    message: `train_data.mat entry 2: image not found: ${path.join(root, 'images/Images/n02085782-Japanese_spaniel/missing.jpg')}`,
  });
  const skipped = loadDataset('dogs', { root, skipBadImages: true });
  t.is(skipped.splits.train!.length, 1);
  t.deepEqual(skipped.skipped.map((s) => s.source), ['train_data.mat entry 2']);
  t.throws(() => loadDataset('dogs', { root: roots.get('number-entry')! }), {
    message: 'lists/test_list.mat entry 2: file_list element is a 1x1 double array, expected a non-empty string',
  });
  t.throws(() => loadDataset('dogs', { root: roots.get('label-zero')! }), { message: 'train_data.mat entry 1: label 0 out of range (labels are integers in 1..100000)' });
  const wrong = roots.get('wrong-variable')!;
  t.throws(() => loadDataset('dogs', { root: wrong }), { message: `${path.join(wrong, 'train_data.mat')}: no variable "train_info" (the file has "info")` });
  const refused = path.join(work, 'refused.mat');
  t.throws(() => readMatFile(refused, ['obj']), { message: `${refused}: variable "obj": a MATLAB object, which is not supported` });
  t.deepEqual(readMatFile(refused, ['ok']).get('ok'), { kind: 'numeric', class: 'double', dims: [1, 1], data: new Float64Array([7]), logical: false });
});

/** Runs `f`; true if it returned, false if it threw a one-line FghError naming the file; rethrows anything else. */
function oneLine(t: { fail: (m: string) => void }, f: () => unknown, what: string): boolean {
  try {
    f();
    return true;
  } catch (e) {
    if (!(e instanceof FghError)) throw new Error(`${what}: not an FghError: ${String(e)}`);
    if (e.message.includes('\n') || !e.message.startsWith('x.mat')) t.fail(`${what}: ${JSON.stringify(e.message)}`);
    return false;
  }
}

pyTest('every truncation of a list file is a one-line error; random corruption never escapes as a crash', (t) => {
  const files: Array<[string, string]> = [
    ['compressed', path.join(roots.get('struct-compressed-column-nested')!, 'test_data.mat')],
    ['plain', path.join(roots.get('struct-plain-row-char')!, 'test_data.mat')],
    ['big-endian', path.join(roots.get('struct-bigendian-nested')!, 'test_data.mat')],
    ['top-level', path.join(roots.get('top-plain-column-char')!, 'lists/test_list.mat')],
    ['top-level', path.join(roots.get('top-compressed-row-nested')!, 'lists/test_list.mat')],
  ];
  const rng = new Rng(11);
  for (const [name, file] of files) {
    const buf = readFileSync(file);
    const names = name === 'top-level' ? ['file_list', 'labels'] : ['test_info'];
    t.true(oneLine(t, () => parseMat(buf, 'x.mat', names), name), `${name}: the intact file reads`);
    let truncOk = 0;
    for (let k = 0; k < buf.length; k++) if (oneLine(t, () => parseMat(buf.subarray(0, k), 'x.mat', names), `${name} cut at ${k}`)) truncOk++;
    t.is(truncOk, 0, `${name}: a truncated file read without error`);
    // Corrupt 1..4 bytes at random (past the header), 1500 times: a result or a one-line error.
    let ok = 0;
    for (let trial = 0; trial < 1500; trial++) {
      const b = Buffer.from(buf);
      for (let k = 1 + rng.int(4); k > 0; k--) b[128 + rng.int(b.length - 128)] = rng.int(256);
      if (oneLine(t, () => parseMat(b, 'x.mat', names), `${name} trial ${trial}`)) ok++;
    }
    t.log(`${name}: ${buf.length} bytes; ${buf.length} truncations all refused; 1500 corruptions: ${ok} still read, ${1500 - ok} one-line errors`);
  }
});

// ---- hand-made files for what scipy does not write -----------------------------------------

const u32 = (...v: number[]) => Buffer.from(new Uint32Array(v).buffer);
const i32 = (...v: number[]) => Buffer.from(new Int32Array(v).buffer);
const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((8 - (b.length % 8)) % 8)]);
/** A little-endian data element (never the small format). */
const el = (type: number, data: Buffer) => pad(Buffer.concat([u32(type, data.length), data]));
/** A miMATRIX of class `cls` (1 cell, 6 double). */
const matrix = (cls: number, dims: number[], name: string, body: Buffer) => el(14, Buffer.concat([el(6, u32(cls, 0)), el(5, i32(...dims)), el(1, Buffer.from(name)), body]));
function header(text = 'MATLAB 5.0 MAT-file, hand-made', version = 0x0100): Buffer {
  const h = Buffer.alloc(128, 0x20);
  h.write(text, 0, 'latin1');
  h.fill(0, 116, 124);
  h.writeUInt16LE(version, 124);
  h.write('IM', 126, 'latin1');
  return h;
}
const double = (name: string, ...v: number[]) => matrix(6, [1, v.length], name, el(9, Buffer.from(new Float64Array(v).buffer)));

test('the hand-made writer makes files the reader accepts (the refusals below are about their one change)', (t) => {
  const buf = Buffer.concat([header(), double('x', 1, 2.5), matrix(1, [1, 2], 'c', Buffer.concat([double('', 3), double('', 4)]))]);
  const m = parseMat(buf, 'x.mat');
  t.deepEqual(m.get('x'), { kind: 'numeric', class: 'double', dims: [1, 2], data: new Float64Array([1, 2.5]), logical: false });
  const c = m.get('c')!;
  t.is(c.kind === 'cell' ? c.items.length : -1, 2);
});

test('v7.3, HDF5, v4 and non-MAT files are refused in one line', (t) => {
  const v73 = Buffer.concat([header('MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .', 0x0200), Buffer.alloc(384), Buffer.from('\x89HDF\r\n\x1a\n', 'latin1')]);
  t.throws(() => parseMat(v73, 'x.mat'), { message: 'x.mat: a MATLAB 7.3 (HDF5) MAT-file, which is not supported: save it with -v7' });
  // The same header without its text: the version field alone says 7.3.
  t.throws(() => parseMat(Buffer.concat([header('', 0x0200), Buffer.alloc(8)]), 'x.mat'), { message: /^x\.mat: a MATLAB 7\.3 \(HDF5\) MAT-file/ });
  t.throws(() => parseMat(Buffer.from('\x89HDF\r\n\x1a\n'.padEnd(600, '\0'), 'latin1'), 'x.mat'), { message: /^x\.mat: an HDF5 file/ });
  t.throws(() => parseMat(Buffer.from('hello'), 'x.mat'), { message: 'x.mat: not a MATLAB v5 MAT-file (5 bytes, shorter than the 128-byte header)' });
  // A v4 file starts directly with a matrix header (type 0, 1 row, 1 column, real, name length 2).
  t.throws(() => parseMat(Buffer.concat([i32(0, 1, 1, 0, 2), Buffer.from('x\0'), Buffer.alloc(200)]), 'x.mat'), { message: 'x.mat: not a MATLAB v5 MAT-file (no v5 header; MATLAB v4 files are not supported)' });
});

test('declared sizes are checked before allocating: huge dimensions, deep nesting, zip bombs', (t) => {
  // A 2^31-1 x 2^31-1 cell with one element.
  const huge = Buffer.concat([header(), matrix(1, [0x7fffffff, 0x7fffffff], 'c', double('', 1))]);
  t.throws(() => parseMat(huge, 'x.mat'), { message: /^x\.mat: variable "c": 2147483647x2147483647 array declared but only \d+ bytes of data follow$/ });
  // A double matrix whose data is shorter than its dimensions say.
  const short = Buffer.concat([header(), matrix(6, [1000, 1000], 'd', el(9, Buffer.alloc(16)))]);
  t.throws(() => parseMat(short, 'x.mat'), { message: 'x.mat: variable "d": 16 bytes of data for 1000000 element(s) of 8 byte(s)' });
  // An element declaring more bytes than the file has.
  const long = Buffer.concat([header(), u32(14, 1 << 30), Buffer.alloc(64)]);
  t.throws(() => parseMat(long, 'x.mat'), { message: 'x.mat: truncated data element at byte 128 (1073741824 bytes declared, 64 present)' });
  // 10000 nested cells: refused by depth, not by a stack overflow.
  let v = double('', 1);
  for (let i = 0; i < 10000; i++) v = matrix(1, [1, 1], i === 9999 ? 'deep' : '', v);
  t.throws(() => parseMat(Buffer.concat([header(), v]), 'x.mat'), { message: /^x\.mat: variable "deep": (\{1\})+: arrays nested deeper than 64 levels$/ });
  // A compressed variable that inflates to 16 MiB, with a 1 MiB limit.
  const n = 1 << 21;
  const big = matrix(6, [1, n], 'z', el(9, Buffer.alloc(8 * n)));
  const z = deflateSync(big);
  const bomb = Buffer.concat([header(), u32(15, z.length), z]);
  t.throws(() => parseMat(bomb, 'x.mat', ['z'], { maxInflatedBytes: 1 << 20 }), { message: 'x.mat: compressed element at byte 128: decompresses to more than 1048576 bytes' });
  // ... and without the limit it reads (the 4 KiB look at its name inflates only a little of it).
  const m = parseMat(bomb, 'x.mat', ['z']).get('z')!;
  t.is(m.kind === 'numeric' ? m.data.length : -1, n);
});
