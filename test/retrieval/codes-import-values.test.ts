import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readNpy, writeNpySync, type NpyArray } from '../../src/util/npy.js';
import { fgh, fghEach, type BatchResult } from '../helpers/cli.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

/**
 * `fgh codes import` refuses values its store cannot hold as given (class ids beyond int32, NaN
 * codes, multi-hot values other than 0/1) with one line naming the file, the row and the value,
 * and leaves an existing store at --out as it was.
 */

const N = 3;
const BITS = 8;

interface Dir {
  dir: string;
  codes: string;
  store: string;
  /** The store's bytes before the failing import. */
  before: Buffer;
  npy(name: string, arr: NpyArray): string;
}

/** One store for all tests: each refused import must leave it as it was. */
function setup(): Dir {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-import-values-'));
  let made = 0;
  const npy = (name: string, arr: NpyArray): string => {
    const file = path.join(dir, `${made++}-${name}`);
    writeNpySync(file, arr);
    return file;
  };
  const codes = npy('codes.npy', { dtype: 'f4', shape: [N, BITS], data: Float32Array.from({ length: N * BITS }, (_, k) => (k % 3 === 0 ? 1 : -1)) });
  const labels = npy('ok-labels.npy', { dtype: 'i8', shape: [N], data: BigInt64Array.from([0n, 1n, 2n]) });
  const store = path.join(dir, 'db.fghc');
  const r = fgh('codes', 'import', '--codes', codes, '--labels', labels, '--out', store);
  if (r.status !== 0) throw new Error(r.stderr);
  return { dir, codes, store, before: readFileSync(store), npy };
}

/** A refused import: the arguments before --out, and the one-line message it must give. */
interface Refusal {
  args: string[];
  message: RegExp;
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

let d: Dir;
/** Every refusal, by test title: made in `before` (its files need the fixture), run there in one batch. */
const makers = new Map<string, () => Refusal>();
const refusals = new Map<string, Refusal>();
const results = new Map<string, BatchResult[]>();

function refusal(title: string, make: () => Refusal): void {
  makers.set(title, make);
  test(title, (t) => refusedTwice(t, title));
}

test.before(() => {
  d = setup();
  for (const [title, make] of makers) refusals.set(title, make());
  // Replacing and appending; one process for all runs (each start of the CLI costs ~0.3 s).
  const ways = [[], ['--append']];
  const runs = [...refusals.values()].flatMap((r) => ways.map((extra) => ['codes', 'import', ...r.args, '--out', d.store, ...extra]));
  const out = fghEach(runs, { watch: [d.store] });
  [...refusals.keys()].forEach((title, i) => results.set(title, out.slice(i * ways.length, (i + 1) * ways.length)));
});
test.after.always(() => rmSync(d.dir, { recursive: true, force: true }));

/** Both ways of writing to an existing store fail with the message and leave it byte for byte. */
function refusedTwice(t: import('ava').ExecutionContext, title: string): void {
  const { message } = refusals.get(title)!;
  const before = createHash('sha256').update(d.before).digest('hex');
  results.get(title)!.forEach((r, i) => {
    const way = i === 0 ? 'replace' : '--append';
    t.is(r.status, 1, `${way}: ${r.stderr}`);
    t.regex(r.stderr, message, way);
    t.is(r.stderr.split('\n').length, 2, 'one line');
    t.is(r.files[d.store], before, `the store is unchanged (${way})`);
  });
}

for (const [value, shown] of [
  [2n ** 40n, '1099511627776'],
  [2n ** 32n + 1n, '4294967297'],
  [2n ** 31n, '2147483648'],
  [-2n, '-2'],
  [2n ** 60n, '1152921504606846976'],
] as const) {
  refusal(`int64 class id ${shown} is refused naming the file, the row and the value`, () => {
    const labels = d.npy('labels.npy', { dtype: 'i8', shape: [N], data: BigInt64Array.from([0n, 1n, value]) });
    return { args: ['--codes', d.codes, '--labels', labels], message: new RegExp(`^fgh: ${esc(labels)}: item 2 has class id ${shown}; .*-1.*2147483647.*\\n$`) };
  });
}

test('int64 class ids at the ends of int32 (-1 and 2^31-1) are stored as given; one beyond is not', (t) => {
  const beyond = d.npy('beyond.npy', { dtype: 'i8', shape: [N], data: BigInt64Array.from([-1n, 2147483647n, 2147483648n]) });
  const refused = fgh('codes', 'import', '--codes', d.codes, '--labels', beyond, '--out', path.join(d.dir, 'beyond.fghc'));
  t.is(refused.status, 1, refused.stderr);
  const labels = d.npy('labels.npy', { dtype: 'i8', shape: [N], data: BigInt64Array.from([-1n, 2147483647n, 5n]) });
  const out = path.join(d.dir, 'ends.fghc');
  const r = fgh('codes', 'import', '--codes', d.codes, '--labels', labels, '--out', out, '--json');
  t.is(r.status, 0, r.stderr);
  t.like(JSON.parse(r.stdout), { labels: 'single', num_classes: 2147483648 });
  const e = fgh('codes', 'export', out, '--npy', path.join(d.dir, 'x'));
  t.is(e.status, 0, e.stderr);
  const back = readNpy(path.join(d.dir, 'x.labels.npy'));
  t.deepEqual([back.dtype, Array.from(back.data as Int32Array)], ['i4', [-1, 2147483647, 5]]);
});

for (const dtype of ['f4', 'f8'] as const) {
  refusal(`float codes (${dtype}) holding NaN are refused naming the file and the row`, () => {
    const data = dtype === 'f4' ? new Float32Array(N * BITS).fill(1) : new Float64Array(N * BITS).fill(-1);
    data[1 * BITS + 5] = Number.NaN;
    const codes = d.npy(`nan-${dtype}.npy`, { dtype, shape: [N, BITS], data });
    return { args: ['--codes', codes], message: new RegExp(`^fgh: ${esc(codes)}: row 1 column 5 holds NaN; .*\\n$`) };
  });
}

const multiHotCases: Array<[string, NpyArray, string, string]> = [
  ['2 in a uint8 one-hot row', { dtype: 'u1', shape: [N, 4], data: Uint8Array.from([1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0]) }, 'row 1 column 1', '2'],
  ['0.5 in a float multi-hot row', { dtype: 'f4', shape: [N, 4], data: Float32Array.from([1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0.5, 1]) }, 'row 2 column 2', '0.5'],
  ['-1 in an int8 multi-hot row', { dtype: 'i1', shape: [N, 4], data: Int8Array.from([1, 1, 0, 0, -1, 1, 0, 0, 0, 0, 1, 1]) }, 'row 1 column 0', '-1'],
  ['NaN in a float64 multi-hot row', { dtype: 'f8', shape: [N, 4], data: Float64Array.from([1, 1, 0, Number.NaN, 0, 1, 0, 0, 0, 0, 1, 1]) }, 'row 0 column 3', 'NaN'],
];
for (const [what, arr, cell, shown] of multiHotCases) {
  refusal(`multi-hot labels: ${what} is refused`, () => {
    const labels = d.npy('labels.npy', arr);
    return { args: ['--codes', d.codes, '--labels', labels], message: new RegExp(`^fgh: ${esc(labels)}: ${cell} holds ${shown}; .*0 or 1.*\\n$`) };
  });
}

test('numpy reads the fixtures as the values the tests mean (2^40, 2^32+1, 2^31, NaN)', (t) => {
  const py = referencePython('numpy');
  if (!py) {
    t.log(missingPythonMessage('numpy'));
    t.pass();
    return;
  }
  const ids = d.npy('ids.npy', { dtype: 'i8', shape: [3], data: BigInt64Array.from([2n ** 40n, 2n ** 32n + 1n, 2n ** 31n]) });
  const nan = new Float32Array(2 * BITS).fill(1);
  nan[BITS + 5] = Number.NaN;
  const codes = d.npy('nan.npy', { dtype: 'f4', shape: [2, BITS], data: nan });
  const out = runPython(py, 'import sys, json, numpy as np\na = np.load(sys.argv[1]); c = np.load(sys.argv[2])\nprint(json.dumps([str(a.dtype), a.tolist(), np.argwhere(np.isnan(c)).tolist()]))', [ids, codes]);
  t.deepEqual(JSON.parse(out), ['int64', [2 ** 40, 2 ** 32 + 1, 2 ** 31], [[1, 5]]]);
});
