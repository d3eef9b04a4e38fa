/**
 * Exact top-K retrieval by Hamming distance, ties broken by database index, for one query or a
 * batch. Work is split into tasks over query ranges (many queries) or database ranges (few
 * queries, then merged), cache-blocked so that each block of the database serves every query of a
 * task while it is in cache, and spread over worker threads when the work is large enough.
 */
import { FghError } from '../util/errors.js';
import { codeStride, type Codes } from './codes.js';
import { kernelModule } from './kernels.js';
import { CONTROL_BYTES, searchScratchBytes, type SearchJob, type SearchTask } from './jobs.js';
import { MemoryPlan, bytesOf } from './memory.js';
import { Pool, threadsFor, type ThreadOptions } from './pool.js';
import { stableSortByDistance } from './topk.js';
import type { WasmMemory } from '../util/wasm-api.js';

export interface SearchOptions extends ThreadOptions {
  /** Bytes of database per cache block (default 256 KiB). */
  blockBytes?: number;
  /** Largest results area per batch of queries (default 256 MiB); more queries run in batches. */
  maxResultBytes?: number;
  /** Hears (queries done, queries) from time to time. */
  progress?: (done: number, total: number) => void;
}

export interface SearchResult {
  /** Results per query: min(K, database size). */
  k: number;
  queries: number;
  /** [queries, k] database indices, by (distance, index). */
  indices: Int32Array;
  /** [queries, k] Hamming distances. */
  distances: Int32Array;
  /** Threads actually used. */
  threads: number;
}

/**
 * A database loaded into retrieval memory once, for any number of searches (the one-shot
 * `searchTopK` builds one and closes it). Searches on one index run one after another; worker
 * threads are kept between searches and do not keep the process alive. `close()` ends them.
 */
export class HammingIndex {
  private pool: Pool | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly bits: number,
    readonly count: number,
    private readonly memory: WasmMemory,
    private readonly dbAt: number,
    private readonly dbEnd: number,
  ) {}

  static fromCodes(db: Codes): HammingIndex {
    const plan = new MemoryPlan();
    const dbAt = plan.take(db.count * db.stride);
    const memory = plan.allocate(`loading ${db.count} codes`, true);
    bytesOf(memory, dbAt, db.count * db.stride).set(db.data.subarray(0, db.count * db.stride));
    return new HammingIndex(db.bits, db.count, memory, dbAt, plan.bytes);
  }

  get stride(): number {
    return codeStride(this.bits);
  }

  /** Top-K by (distance, index) for every query. */
  search(queries: Codes, k: number, opts: SearchOptions = {}): Promise<SearchResult> {
    const run = this.queue.then(() => this.run(queries, k, opts));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
    await this.pool?.close();
    this.pool = null;
  }

  private async run(queries: Codes, k: number, opts: SearchOptions): Promise<SearchResult> {
    if (this.closed) throw new Error('HammingIndex: closed');
    if (queries.bits !== this.bits) throw new FghError(`queries have ${queries.bits}-bit codes, the database ${this.bits}-bit codes`);
    if (!Number.isInteger(k) || k < 1) throw new FghError(`--topk must be a positive integer, got ${k}`);
    const n = this.count;
    const nq = queries.count;
    const stride = this.stride;
    const kOut = Math.min(k, n);
    const indices = new Int32Array(nq * kOut);
    const distances = new Int32Array(nq * kOut);
    if (nq === 0 || n === 0) return { k: kOut, queries: nq, indices, distances, threads: 1 };

    const threads = threadsFor(nq * n * Math.max(1, stride / 8), opts);
    // Few queries: split the database instead, each task finds every query's top K in its range.
    const dbSplits = nq >= 2 * threads || threads === 1 ? 1 : Math.min(4 * threads, Math.max(1, Math.floor(n / 4096)));
    const perQueryBytes = kOut * 8 * dbSplits;
    const batch = Math.max(1, Math.min(nq, Math.floor((opts.maxResultBytes ?? 256 * 2 ** 20) / perQueryBytes)));
    const batches = Math.ceil(nq / batch);

    const plan = new MemoryPlan(this.dbEnd);
    const control = plan.take(batches * CONTROL_BYTES);
    const qAt = plan.take(batch * stride);
    const scratchBytes = searchScratchBytes();
    const scratch = plan.take(threads * scratchBytes);
    const results = plan.take(batch * perQueryBytes);
    plan.fit(this.memory, `searching ${n} codes with ${nq} queries`);
    const pool = this.poolFor(threads);
    const block = Math.max(256, Math.floor((opts.blockBytes ?? 256 * 1024) / stride));
    for (let b = 0; b < batches; b++) {
      const q0 = b * batch;
      const q1 = Math.min(nq, q0 + batch);
      const m = q1 - q0;
      bytesOf(this.memory, qAt, m * stride).set(queries.data.subarray(q0 * stride, q1 * stride));
      const tasks: SearchTask[] = [];
      if (dbSplits === 1) {
        // Chunks small enough to balance the threads, large enough to reuse each cached block.
        const chunk = Math.max(1, Math.min(64, Math.ceil(m / (threads * 8))));
        for (let s = 0; s < m; s += chunk) {
          const e = Math.min(m, s + chunk);
          tasks.push({ q0: s, q1: e, j0: 0, j1: n, out: results + s * kOut * 8 });
        }
      } else {
        for (let s = 0; s < dbSplits; s++) {
          const j0 = Math.floor((s * n) / dbSplits);
          const j1 = Math.floor(((s + 1) * n) / dbSplits);
          tasks.push({ q0: 0, q1: m, j0, j1, out: results + s * m * kOut * 8 });
        }
      }
      const job: SearchJob = {
        kind: 'search', control: control + b * CONTROL_BYTES, bits: this.bits, stride, db: this.dbAt, queries: qAt, k: kOut,
        block, scratch, scratchBytes, tasks,
      };
      const perTask = m / tasks.length;
      await pool.run(job, opts.progress && ((f) => opts.progress!(dbSplits === 1 ? q0 + Math.round(f * perTask) : q0 + (f === tasks.length ? m : 0), nq)), threads);
      collect(this.memory, job, m, q0, indices, distances);
    }
    return { k: kOut, queries: nq, indices, distances, threads };
  }

  /** The kept pool, replaced by a bigger one when a search may use more threads. */
  private poolFor(threads: number): Pool {
    if (this.pool && this.pool.threads >= threads) return this.pool;
    void this.pool?.close();
    this.pool = new Pool(kernelModule({ bits: this.bits, labels: { kind: 'none' } }), this.memory, threads);
    return this.pool;
  }
}

export async function searchTopK(db: Codes, queries: Codes, k: number, opts: SearchOptions = {}): Promise<SearchResult> {
  const index = HammingIndex.fromCodes(db);
  try {
    return await index.search(queries, k, opts);
  } finally {
    await index.close();
  }
}

/** Copies a batch's results out; with database splits, merges the splits' lists per query. */
function collect(memory: WasmMemory, job: SearchJob, m: number, q0: number, indices: Int32Array, distances: Int32Array): void {
  const buf = memory.buffer;
  const kOut = job.k;
  if (job.tasks.every((t) => t.j0 === 0)) {
    for (const t of job.tasks) {
      const len = (t.q1 - t.q0) * kOut;
      indices.set(new Int32Array(buf, t.out, len), (q0 + t.q0) * kOut);
      distances.set(new Int32Array(buf, t.out + len * 4, len), (q0 + t.q0) * kOut);
    }
    return;
  }
  // Splits are in database order, so concatenating them keeps index order within each distance.
  const idx = new Int32Array(job.tasks.length * kOut);
  const dist = new Int32Array(job.tasks.length * kOut);
  for (let i = 0; i < m; i++) {
    let len = 0;
    for (const t of job.tasks) {
      const kt = Math.min(kOut, t.j1 - t.j0);
      const tIdx = new Int32Array(buf, t.out, m * kt);
      const tDist = new Int32Array(buf, t.out + m * kt * 4, m * kt);
      idx.set(tIdx.subarray(i * kt, (i + 1) * kt), len);
      dist.set(tDist.subarray(i * kt, (i + 1) * kt), len);
      len += kt;
    }
    stableSortByDistance(idx, dist, len, job.bits, kOut, indices, distances, (q0 + i) * kOut);
  }
}
