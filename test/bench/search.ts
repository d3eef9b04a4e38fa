/**
 * bench:search: top-100 of 1,000 queries over 1,000,000 random 64-bit codes, fgh (one thread and
 * all cores) against FAISS IndexBinaryFlat on one thread, in the same run, alternating rounds so
 * that both see the same machine load. Checks that the results agree (FAISS breaks ties its own
 * way, so distances are compared per query and item sets below the K-th distance).
 * Options: --rounds N (default 3), --n N, --queries N, --k N.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { toPackedBytes } from '../../src/retrieval/codes.js';
import { searchTopK, type SearchResult } from '../../src/retrieval/search.js';
import { Rng } from '../../src/util/rng.js';
import { pythonWith, runPython } from '../helpers/python.js';
import { numberArg, randomCodes } from '../helpers/bench.js';


const N = numberArg('n', 1_000_000);
const Q = numberArg('queries', 1000);
const K = numberArg('k', 100);
const ROUNDS = numberArg('rounds', 3);
const BITS = 64;


const FAISS = String.raw`
import sys, time, numpy as np, faiss
d, k = sys.argv[1], int(sys.argv[2])
faiss.omp_set_num_threads(1)
db = np.fromfile(d + '/db.bin', dtype=np.uint8).reshape(-1, 8)
q = np.fromfile(d + '/q.bin', dtype=np.uint8).reshape(-1, 8)
index = faiss.IndexBinaryFlat(64)
index.add(db)
t = time.perf_counter()
D, I = index.search(q, k)
print(time.perf_counter() - t)
D.astype(np.int32).tofile(d + '/D.bin')
I.astype(np.int64).tofile(d + '/I.bin')
`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (s: number) => `${(s * 1000).toFixed(0)} ms`;

function compare(r: SearchResult, dir: string): string {
  const D = new Int32Array(readFileSync(path.join(dir, 'D.bin')).buffer.slice(0));
  const I = new BigInt64Array(readFileSync(path.join(dir, 'I.bin')).buffer.slice(0));
  let distMismatch = 0;
  let setMismatch = 0;
  let boundaryTies = 0;
  for (let i = 0; i < Q; i++) {
    const ours = Array.from(r.distances.subarray(i * K, (i + 1) * K));
    const theirs = Array.from(D.subarray(i * K, (i + 1) * K));
    if (ours.join() !== theirs.join()) distMismatch++;
    const kth = ours[K - 1]!;
    const a = Array.from(r.indices.subarray(i * K, (i + 1) * K)).filter((_, e) => ours[e]! < kth).sort((x, y) => x - y);
    const b = Array.from(I.subarray(i * K, (i + 1) * K), Number).filter((_, e) => theirs[e]! < kth).sort((x, y) => x - y);
    if (a.join() !== b.join()) setMismatch++;
    const oursAtKth = new Set(Array.from(r.indices.subarray(i * K, (i + 1) * K)).filter((_, e) => ours[e] === kth));
    if (Array.from(I.subarray(i * K, (i + 1) * K), Number).some((j, e) => theirs[e] === kth && !oursAtKth.has(j))) boundaryTies++;
  }
  return distMismatch === 0 && setMismatch === 0
    ? `results agree: same distances for all ${Q} queries, same items below the K-th distance; FAISS chose other tied items at the K-th distance for ${boundaryTies} queries (fgh takes the lowest indices)`
    : `MISMATCH: distances differ for ${distMismatch} queries, item sets for ${setMismatch}`;
}

async function main(): Promise<void> {
  const rng = new Rng(2024);
  const db = randomCodes(rng, N, BITS);
  const q = randomCodes(rng, Q, BITS);
  const cores = os.availableParallelism();
  console.log(`bench:search  top-${K} of ${Q} queries over ${N.toLocaleString('en-US')} random ${BITS}-bit codes, ${cores} cores, node ${process.version}`);
  const py = pythonWith('faiss', 'numpy');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-bench-search-'));
  try {
    if (py) {
      writeFileSync(path.join(dir, 'db.bin'), toPackedBytes(db));
      writeFileSync(path.join(dir, 'q.bin'), toPackedBytes(q));
    } else {
      console.log('FAISS not found (Debian: apt-get install python3-faiss python3-numpy); timing fgh only');
    }
    const faiss: number[] = [];
    const one: number[] = [];
    const all: number[] = [];
    let last: SearchResult | null = null;
    let threadsUsed = 1;
    for (let round = 0; round < ROUNDS; round++) {
      if (py) faiss.push(Number(runPython(py, FAISS, [dir, String(K)]).trim()));
      let t = performance.now();
      last = await searchTopK(db, q, K, { threads: 1 });
      one.push((performance.now() - t) / 1000);
      t = performance.now();
      const r = await searchTopK(db, q, K);
      all.push((performance.now() - t) / 1000);
      threadsUsed = r.threads;
      console.log(`  round ${round + 1}: ${py ? `FAISS ${fmt(faiss[round]!)}, ` : ''}fgh 1 thread ${fmt(one[round]!)}, fgh ${threadsUsed} threads ${fmt(all[round]!)}`);
    }
    console.log(`FAISS IndexBinaryFlat, 1 thread:  best ${py ? fmt(Math.min(...faiss)) : '-'}  median ${py ? fmt(median(faiss)) : '-'}`);
    console.log(`fgh, 1 thread:                    best ${fmt(Math.min(...one))}  median ${fmt(median(one))}  (${((Math.min(...one) * 1e9) / (N * Q)).toFixed(3)} ns per code compared)`);
    console.log(`fgh, ${threadsUsed} threads:                   best ${fmt(Math.min(...all))}  median ${fmt(median(all))}`);
    if (py) {
      console.log(`ratio FAISS / fgh (1 thread):   best ${(Math.min(...faiss) / Math.min(...one)).toFixed(2)}x  median ${(median(faiss) / median(one)).toFixed(2)}x   (goal >= 1)`);
      console.log(`ratio FAISS / fgh (${threadsUsed} threads):  best ${(Math.min(...faiss) / Math.min(...all)).toFixed(2)}x  median ${(median(faiss) / median(all)).toFixed(2)}x`);
      console.log(compare(last!, dir));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
