import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { writeNpySync } from '../../src/util/npy.js';
import { packSigns } from '../../src/retrieval/codes.js';
import { singleLabels } from '../../src/retrieval/labels.js';
import { evaluate } from '../../src/retrieval/metrics.js';
import { searchTopK } from '../../src/retrieval/search.js';
import { Rng } from '../../src/util/rng.js';
import { fghEach } from '../helpers/cli.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = path.join(root, 'bin', 'fgh.js');

function fgh(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Fixture {
  dir: string;
  /** ±1 float32 [n, bits] database codes and int class ids. */
  dbSigns: Float32Array;
  dbIds: number[];
  qSigns: Float32Array;
  qIds: number[];
  n: number;
  nq: number;
  bits: number;
}

function fixture(t: { teardown: (f: () => void) => void }): Fixture {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const rng = new Rng(31);
  const n = 200;
  const nq = 12;
  const bits = 12;
  const signs = (m: number) => Float32Array.from({ length: m * bits }, () => (rng.bool() ? 1 : -1));
  const f: Fixture = { dir, dbSigns: signs(n), dbIds: Array.from({ length: n }, () => rng.int(6)), qSigns: signs(nq), qIds: Array.from({ length: nq }, () => rng.int(6)), n, nq, bits };
  writeNpySync(path.join(dir, 'db.npy'), { dtype: 'f4', shape: [n, bits], data: f.dbSigns });
  writeNpySync(path.join(dir, 'q.npy'), { dtype: 'f4', shape: [nq, bits], data: f.qSigns });
  // Database labels one-hot, query labels as ids: both forms are accepted.
  const oneHot = new Uint8Array(n * 6);
  f.dbIds.forEach((c, i) => (oneHot[i * 6 + c] = 1));
  writeNpySync(path.join(dir, 'db-labels.npy'), { dtype: 'u1', shape: [n, 6], data: oneHot });
  writeNpySync(path.join(dir, 'q-labels.npy'), { dtype: 'i8', shape: [nq], data: BigInt64Array.from(f.qIds.map(BigInt)) });
  writeFileSync(path.join(dir, 'ids.txt'), Array.from({ length: n }, (_, i) => `images/${String(i).padStart(3, '0')}.jpg\n`).join(''));
  return f;
}

test('codes import, info and export: the exported .npy files are what numpy expects', async (t) => {
  const f = fixture(t);
  const store = path.join(f.dir, 'db.fghc');
  const imp = fgh('codes', 'import', '--codes', path.join(f.dir, 'db.npy'), '--labels', path.join(f.dir, 'db-labels.npy'), '--ids', path.join(f.dir, 'ids.txt'), '--out', store, '--json');
  t.is(imp.status, 0, imp.stderr);
  t.like(JSON.parse(imp.stdout), { count: 200, bits: 12, labels: 'single', num_classes: 6, added: 200 });
  const info = fgh('codes', 'info', store);
  t.is(info.status, 0, info.stderr);
  t.regex(info.stdout, /version 1, 200 items, 12-bit codes, class ids \(6 classes\)\n1 chunks, \d+ bytes, all checksums valid/);
  const exp = fgh('codes', 'export', store, '--npy', path.join(f.dir, 'out', 'x'), '--json');
  t.is(exp.status, 0, exp.stderr);
  t.deepEqual(JSON.parse(exp.stdout).files.map((p: string) => path.basename(p)), ['x.codes.npy', 'x.labels.npy', 'x.ids.txt']);
  t.is(readFileSync(path.join(f.dir, 'out', 'x.ids.txt'), 'utf8'), readFileSync(path.join(f.dir, 'ids.txt'), 'utf8'));
  // numpy's own reading of the files (the part of this test that needs it).
  const py = referencePython('numpy');
  if (!py) {
    t.log(missingPythonMessage('numpy'));
    return;
  }
  const check = runPython(
    py,
    String.raw`
import sys, numpy as np
d = sys.argv[1]
x = np.load(d + '/db.npy'); lab = np.load(d + '/db-labels.npy')
c = np.load(d + '/out/x.codes.npy'); l = np.load(d + '/out/x.labels.npy')
assert c.dtype == np.uint8 and c.shape == (200, 2), (c.dtype, c.shape)
assert (c == np.packbits(x > 0, axis=1)).all(), 'codes differ'
assert l.dtype == np.int32 and (l == lab.argmax(1)).all(), 'labels differ'
print('ok')
`,
    [f.dir],
  );
  t.is(check.trim(), 'ok');
  // Re-importing the export gives the same store contents; --append adds to it.
  const again = path.join(f.dir, 'again.fghc');
  t.is(fgh('codes', 'import', '--codes', path.join(f.dir, 'out', 'x.codes.npy'), '--bits', '12', '--labels', path.join(f.dir, 'out', 'x.labels.npy'), '--ids', path.join(f.dir, 'out', 'x.ids.txt'), '--out', again).status, 0);
  const a = fgh('codes', 'import', '--codes', path.join(f.dir, 'out', 'x.codes.npy'), '--bits', '12', '--labels', path.join(f.dir, 'out', 'x.labels.npy'), '--out', again, '--append', '--json');
  t.is(a.status, 0, a.stderr);
  t.like(JSON.parse(a.stdout), { count: 400, chunks: 2, added: 200 });
});

test('eval: --json keys per cli.md, values as the library computes, .npy and store inputs, PR curves as SVG and PNG', async (t) => {
  const f = fixture(t);
  const store = path.join(f.dir, 'db.fghc');
  t.is(fgh('codes', 'import', '--codes', path.join(f.dir, 'db.npy'), '--labels', path.join(f.dir, 'db-labels.npy'), '--out', store).status, 0);
  const q = packSigns(f.qSigns, f.nq, f.bits);
  const db = packSigns(f.dbSigns, f.n, f.bits);
  const ql = singleLabels(f.qIds, 6);
  const dl = singleLabels(f.dbIds, 6);
  const svg = path.join(f.dir, 'pr.svg');
  const r1 = fgh('eval', '--query', path.join(f.dir, 'q.npy'), '--query-labels', path.join(f.dir, 'q-labels.npy'), '--db', store, '--json', '--pr-curve', svg);
  t.is(r1.status, 0, r1.stderr);
  const j1 = JSON.parse(r1.stdout);
  for (const key of ['map', 'topk', 'num_query', 'num_db', 'bits']) t.true(key in j1, key);
  const want = await evaluate(q, ql, db, dl, {});
  t.deepEqual([j1.map, j1.topk, j1.num_query, j1.num_db, j1.bits], [want.map, null, 12, 200, 12]);
  const text = readFileSync(svg, 'utf8');
  t.true(text.startsWith('<svg') && text.trimEnd().endsWith('</svg>'));
  t.regex(text, /<polyline [^>]*points="[\d.]+,[\d.]+( [\d.]+,[\d.]+)+"/);

  // Both sides as .npy, mAP@K; the database labels as one-hot.
  const png = path.join(f.dir, 'pr.png');
  const r2 = fgh('eval', '--query', path.join(f.dir, 'q.npy'), '--query-labels', path.join(f.dir, 'q-labels.npy'), '--db', path.join(f.dir, 'db.npy'), '--db-labels', path.join(f.dir, 'db-labels.npy'), '--topk', '20', '--json', '--pr-curve', png);
  t.is(r2.status, 0, r2.stderr);
  const want2 = await evaluate(q, ql, db, dl, { topk: 20 });
  t.like(JSON.parse(r2.stdout), { map: want2.map, topk: 20, precision_at_k: { 20: want2.at[0]!.precision } });
  const meta = await sharp(png).metadata();
  t.deepEqual([meta.format, meta.width, meta.height], ['png', 1280, 960]);

  // SEMICON's default slice; human output.
  const r3 = fgh('eval', '--query', path.join(f.dir, 'q.npy'), '--query-labels', path.join(f.dir, 'q-labels.npy'), '--db', store, '--reference-slice', '-1');
  t.is(r3.status, 0, r3.stderr);
  const want3 = await evaluate(q, ql, db, dl, { referenceSlice: -1 });
  t.true(r3.stdout.startsWith(`mAP (reference slice [:-1], 199 ranked): ${want3.map.toFixed(4)}  (12 queries, 200 database items, 12 bits)\n`), r3.stdout);
});

test('search --query-codes: top-K with ids, indices and distances, in query order', async (t) => {
  const f = fixture(t);
  const store = path.join(f.dir, 'db.fghc');
  t.is(fgh('codes', 'import', '--codes', path.join(f.dir, 'db.npy'), '--ids', path.join(f.dir, 'ids.txt'), '--out', store).status, 0);
  const r = fgh('search', '--db', store, '--query-codes', path.join(f.dir, 'q.npy'), '--topk', '5', '--json');
  t.is(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout) as { results: Array<{ query: number; ids: string[]; indices: number[]; distances: number[] }> };
  const want = await searchTopK(packSigns(f.dbSigns, f.n, f.bits), packSigns(f.qSigns, f.nq, f.bits), 5);
  t.is(got.results.length, f.nq);
  got.results.forEach((res, i) => {
    t.is(res.query, i);
    t.deepEqual(res.indices, Array.from(want.indices.subarray(i * 5, i * 5 + 5)));
    t.deepEqual(res.distances, Array.from(want.distances.subarray(i * 5, i * 5 + 5)));
    t.deepEqual(res.ids, res.indices.map((j) => `images/${String(j).padStart(3, '0')}.jpg`));
  });
  const plain = fgh('search', '--db', store, '--query-codes', path.join(f.dir, 'q.npy'), '--topk', '2');
  t.is(plain.status, 0);
  t.regex(plain.stdout, /^query 0:\n {2}1\. images\/\d{3}\.jpg {2}distance \d+ {2}index \d+\n {2}2\. /);
});

test('bad input: exit 1 with one line on stderr saying what is wrong', (t) => {
  const f = fixture(t);
  const store = path.join(f.dir, 'db.fghc');
  t.is(fgh('codes', 'import', '--codes', path.join(f.dir, 'db.npy'), '--labels', path.join(f.dir, 'db-labels.npy'), '--out', store).status, 0);
  const bytes = readFileSync(store);
  bytes[300] = bytes[300]! ^ 0xff;
  writeFileSync(path.join(f.dir, 'bad.fghc'), bytes);
  writeFileSync(path.join(f.dir, 'short-ids.txt'), 'a\nb\n');
  const q = path.join(f.dir, 'q.npy');
  const ql = path.join(f.dir, 'q-labels.npy');
  const cases: Array<[string[], RegExp]> = [
    [['eval', '--query', q, '--db', store], /^fgh: .*q\.npy: no labels; give --query-labels$/],
    [['eval', '--query', q, '--query-labels', ql, '--db', path.join(f.dir, 'nope.fghc')], /^fgh: .*nope\.fghc: no such file$/],
    [['eval', '--query', q, '--query-labels', ql, '--db', store, '--topk', '0'], /^fgh: --topk must be a positive integer, got "0"$/],
    [['eval', '--query', q, '--query-labels', ql, '--db', store, '--topk', '5', '--reference-slice', '-1'], /^fgh: --topk and --reference-slice exclude each other$/],
    [['eval', '--query', q, '--query-labels', ql, '--db', store, '--pr-curve', path.join(f.dir, 'pr.jpg')], /^fgh: .*pr\.jpg: --pr-curve writes \.svg or \.png, not "\.jpg"$/],
    [['eval', '--query', q, '--query-labels', ql, '--db', path.join(f.dir, 'bad.fghc')], /^fgh: .*bad\.fghc: chunk 0 \(offset 128\): corrupt data \(checksum mismatch\)$/],
    [['eval', '--query', ql, '--query-labels', ql, '--db', store], /^fgh: .*q-labels\.npy: codes must be a 2-D array/],
    [['eval', '--query', path.join(f.dir, 'ids.txt'), '--db', store], /^fgh: .*ids\.txt: neither an fgh code store nor a NumPy \.npy file$/],
    [['search', '--db', store, '--model', 'm.onnx', 'a.jpg', '--topk', '3'], /^fgh: m\.onnx: no such file/],
    [['search', '--db', store, '--topk', '3'], /^fgh: give either --model FILE\.onnx IMAGE\.\.\. or --query-codes FILE$/],
    [['search', '--db', q, '--query-codes', q, '--topk', '3'], /^fgh: .*q\.npy: --db must be a code store/],
    [['codes', 'import', '--codes', path.join(f.dir, 'db.npy'), '--ids', path.join(f.dir, 'short-ids.txt'), '--out', path.join(f.dir, 'x.fghc')], /^fgh: .*short-ids\.txt: 2 lines for 200 codes$/],
    [['codes', 'import', '--codes', path.join(f.dir, 'db.npy'), '--bits', '16', '--out', path.join(f.dir, 'x.fghc')], /^fgh: .*db\.npy: expected 16 columns \(one per bit\), the array has 12$/],
    [['codes', 'info', path.join(f.dir, 'bad.fghc')], /^fgh: .*bad\.fghc: chunk 0 .*checksum mismatch\)$/],
  ];
  const helps = [['eval'], ['search'], ['codes', 'import'], ['codes', 'export'], ['codes', 'info']];
  // One process for all cases (each start of the CLI costs ~0.3 s).
  const runs = fghEach([...cases.map(([args]) => args), ...helps.map((cmd) => [...cmd, '--help'])]);
  cases.forEach(([args, re], i) => {
    const r = runs[i]!;
    t.is(r.status, 1, args.join(' '));
    t.regex(r.stderr.trimEnd(), re, args.join(' '));
    t.is(r.stderr.trimEnd().split('\n').length, 1, `${args.join(' ')}: one line`);
    t.is(r.stdout, '', args.join(' '));
  });
  helps.forEach((cmd, i) => {
    const h = runs[cases.length + i]!;
    t.is(h.status, 0, cmd.join(' '));
    t.regex(h.stdout, /^Usage: fgh /);
  });
});
