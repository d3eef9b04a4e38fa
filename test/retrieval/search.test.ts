import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { allocCodes, bytesPerCode, toPackedBytes, type Codes } from '../../src/retrieval/codes.js';
import { searchTopK, type SearchOptions } from '../../src/retrieval/search.js';
import { FghError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

/** Random codes; with `pool`, drawn from that many distinct codes (lots of equal distances). */
function codes(rng: Rng, bits: number, n: number, pool = 0): Codes {
  const c = allocCodes(bits, n);
  const distinct = pool ? codes(rng, bits, pool) : null;
  for (let i = 0; i < n; i++) {
    if (distinct) {
      const k = rng.int(pool);
      c.data.set(distinct.data.subarray(k * c.stride, (k + 1) * c.stride), i * c.stride);
    } else {
      for (let b = 0; b < bits; b++) if (rng.bool()) c.data[i * c.stride + (b >> 3)]! |= 0x80 >> (b & 7);
    }
  }
  return c;
}

/** The obvious way: every distance bit by bit, then a stable sort by distance. */
function bruteTopK(db: Codes, q: Codes, i: number, k: number): Array<[number, number]> {
  const all: Array<[number, number]> = [];
  for (let j = 0; j < db.count; j++) {
    let d = 0;
    for (let b = 0; b < db.bits; b++) {
      const x = (db.data[j * db.stride + (b >> 3)]! >> (7 - (b & 7))) & 1;
      const y = (q.data[i * q.stride + (b >> 3)]! >> (7 - (b & 7))) & 1;
      d += x ^ y;
    }
    all.push([j, d]);
  }
  all.sort((a, b) => a[1] - b[1]); // Array.prototype.sort is stable: ties stay in index order
  return all.slice(0, k);
}

async function check(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void; is: (a: unknown, b: unknown, m?: string) => void }, db: Codes, q: Codes, k: number, opts: SearchOptions, what: string) {
  const r = await searchTopK(db, q, k, opts);
  const kk = Math.min(k, db.count);
  t.is(r.k, kk, `${what}: k`);
  for (let i = 0; i < q.count; i++) {
    const want = bruteTopK(db, q, i, k);
    const got = Array.from(r.indices.subarray(i * kk, (i + 1) * kk), (j, e) => [j, r.distances[i * kk + e]]);
    t.deepEqual(got, want, `${what}: query ${i}`);
  }
  return r;
}

test('exact top-K by (distance, index) for code lengths 1..256, K below, at and above N', async (t) => {
  const rng = new Rng(7);
  for (const bits of [1, 12, 32, 33, 48, 64, 100, 256]) {
    const db = codes(rng, bits, 700);
    const q = codes(rng, bits, 5);
    for (const k of [1, 10, 699, 700, 710]) await check(t, db, q, k, { threads: 1 }, `${bits} bits, K=${k}`);
  }
});

test('ties: codes from a small pool, so most distances are shared; order is by index within a distance', async (t) => {
  const rng = new Rng(8);
  for (const bits of [12, 64]) {
    const db = codes(rng, bits, 3000, 6);
    const q = codes(rng, bits, 6, 6);
    for (const k of [5, 100, 2999]) await check(t, db, q, k, { threads: 1, blockBytes: 1024 }, `${bits} bits pooled K=${k}`);
  }
});

test('worker threads give the same results: split by queries, split by database, batched queries', async (t) => {
  const rng = new Rng(9);
  const db = codes(rng, 48, 20000, 500);
  const many = codes(rng, 48, 12, 500);
  const one = codes(rng, 48, 1);
  const r1 = await check(t, db, many, 50, { threads: 2, workPerThread: 0 }, 'query split');
  t.is(r1.threads, 2);
  const r2 = await check(t, db, one, 50, { threads: 2, workPerThread: 0 }, 'database split');
  t.is(r2.threads, 2);
  await check(t, db, many, 30, { threads: 2, workPerThread: 0, maxResultBytes: 1000 }, 'batches of 4 queries');
  // More candidates than one kernel call can report (K above the 4096-pair buffer).
  await check(t, db, codes(rng, 48, 2), 6000, { threads: 1 }, 'K=6000');
});

test('edge cases and errors', async (t) => {
  const rng = new Rng(10);
  const empty = await searchTopK(allocCodes(16, 0), codes(rng, 16, 3), 5);
  t.deepEqual([empty.k, empty.indices.length], [0, 0]);
  const none = await searchTopK(codes(rng, 16, 3), allocCodes(16, 0), 5);
  t.deepEqual([none.queries, none.indices.length], [0, 0]);
  await t.throwsAsync(searchTopK(codes(rng, 16, 3), codes(rng, 24, 1), 5), { instanceOf: FghError, message: 'queries have 24-bit codes, the database 16-bit codes' });
  await t.throwsAsync(searchTopK(codes(rng, 16, 3), codes(rng, 16, 1), 0), { instanceOf: FghError, message: '--topk must be a positive integer, got 0' });
});

const faiss = referencePython('faiss', 'numpy');

(faiss ? test : test.skip)(`FAISS IndexBinaryFlat finds the same distances (its tie order may differ)${faiss ? '' : ` (${missingPythonMessage('faiss', 'numpy')})`}`, async (t) => {
  const py = faiss!;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-faiss-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const rng = new Rng(12);
  const db = codes(rng, 64, 100000);
  const q = codes(rng, 64, 20);
  writeFileSync(path.join(dir, 'db.bin'), toPackedBytes(db));
  writeFileSync(path.join(dir, 'q.bin'), toPackedBytes(q));
  const out = runPython(
    py,
    'import sys, json, numpy as np, faiss\nd = sys.argv[1]\nb = np.fromfile(d + "/db.bin", dtype=np.uint8).reshape(-1, 8)\nq = np.fromfile(d + "/q.bin", dtype=np.uint8).reshape(-1, 8)\nfaiss.omp_set_num_threads(1)\nx = faiss.IndexBinaryFlat(64)\nx.add(b)\nD, I = x.search(q, 100)\nprint(json.dumps({"D": D.tolist(), "I": I.tolist()}))',
    [dir],
  );
  const ref = JSON.parse(out) as { D: number[][]; I: number[][] };
  const r = await searchTopK(db, q, 100, { threads: 1 });
  t.is(bytesPerCode(64), 8);
  for (let i = 0; i < q.count; i++) {
    const dist = Array.from(r.distances.subarray(i * 100, (i + 1) * 100));
    t.deepEqual(dist, ref.D[i], `query ${i}: distances`);
    // Below the K-th distance the sets agree exactly; at it, FAISS may pick other tied items.
    const kth = dist[99]!;
    const ours = Array.from(r.indices.subarray(i * 100, (i + 1) * 100)).filter((_, e) => dist[e]! < kth).sort((a, b) => a - b);
    const theirs = ref.I[i]!.filter((_, e) => ref.D[i]![e]! < kth).sort((a, b) => a - b);
    t.deepEqual(ours, theirs, `query ${i}: items closer than the K-th distance`);
  }
});
