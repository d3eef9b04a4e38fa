/**
 * Search and ranking work over one shared WebAssembly memory, split into tasks that the main
 * thread and worker threads claim one at a time (an atomic counter), so that the database is in
 * memory once and the split adapts to however fast each thread runs. Every per-query output has a
 * fixed place in memory, so results do not depend on which thread ran which task.
 */
import type { KernelExports } from './kernels.js';
import type { WasmMemory } from './wasm-api.js';
import { TopK } from './topk.js';

/** Candidate pairs the scan kernel may report per call. */
export const SCAN_CAP = 4096;

/**
 * Every job has its own control block (two int32: next task to claim, tasks finished), so that a
 * worker that starts late and still holds an old job finds that job's counter exhausted.
 */
export const CONTROL_BYTES = 8;

export interface SearchTask {
  q0: number;
  q1: number;
  j0: number;
  j1: number;
  /** Byte offset of (q1-q0) x kOut int32 indices, followed by as many int32 distances. */
  out: number;
}

export interface SearchJob {
  kind: 'search';
  control: number;
  bits: number;
  stride: number;
  db: number;
  queries: number;
  k: number;
  /** Database items per cache block (every query of a task scans a block before the next). */
  block: number;
  scratch: number;
  scratchBytes: number;
  tasks: SearchTask[];
}

export interface RankJob {
  kind: 'rank';
  control: number;
  bits: number;
  stride: number;
  db: number;
  dbCount: number;
  dbLabels: number;
  queries: number;
  /** Single labels: int32 per query; multi: `labelWords` uint32 per query. */
  queryLabels: number;
  labelKind: 'single' | 'multi';
  labelWords: number;
  /** Ranked items that count for AP (mAP@all: dbCount). */
  mapCutoff: number;
  /** Cutoffs K whose relevant-in-top-K counts are recorded (precision@K, recall@K). */
  cutoffs: number[];
  /** Per query: float64 AP. */
  ap: number;
  /** Per query: int32 relevant items in the whole database. */
  relTotal: number;
  /** Per query: int32 relevant items in the top K, one per cutoff. */
  relAt: number;
  /** When >= 0: per task, float64 [4][bits+1]: precision sum, precision count, recall sum, recall count by radius. */
  pr: number;
  scratch: number;
  scratchBytes: number;
  tasks: Array<{ q0: number; q1: number }>;
}

export type Job = SearchJob | RankJob;

/** Bytes of per-thread scratch a job needs. */
export function searchScratchBytes(): number {
  return SCAN_CAP * 8;
}

export function rankScratchBytes(bits: number, dbCount: number): number {
  return align64((bits + 2) * 4) + dbCount * 8;
}

export function align64(n: number): number {
  return Math.ceil(n / 64) * 64;
}

/**
 * Claims and runs tasks until none is left; wakes waiters on the finished count after each.
 * `afterTask` (main thread only) reports progress.
 */
export function runTasks(memory: WasmMemory, kernels: KernelExports, job: Job, thread: number, afterTask?: (finished: number) => void): void {
  const control = new Int32Array(memory.buffer, job.control, 2);
  for (;;) {
    const t = Atomics.add(control, 0, 1);
    if (t >= job.tasks.length) return;
    if (job.kind === 'search') runSearchTask(memory, kernels, job, job.tasks[t]!, thread);
    else runRankTask(memory, kernels, job, t, thread);
    const finished = Atomics.add(control, 1, 1) + 1;
    Atomics.notify(control, 1);
    afterTask?.(finished);
  }
}

function runSearchTask(memory: WasmMemory, kx: KernelExports, job: SearchJob, task: SearchTask, thread: number): void {
  const buf = memory.buffer;
  const scratch = job.scratch + thread * job.scratchBytes;
  const pairs = new Int32Array(buf, scratch, SCAN_CAP * 2);
  const nq = task.q1 - task.q0;
  const kOut = Math.min(job.k, task.j1 - task.j0);
  const states: TopK[] = [];
  for (let i = 0; i < nq; i++) states.push(new TopK(job.k, job.bits));
  for (let jb = task.j0; jb < task.j1; jb += job.block) {
    const je = Math.min(task.j1, jb + job.block);
    for (let i = 0; i < nq; i++) {
      const st = states[i]!;
      const qAddr = job.queries + (task.q0 + i) * job.stride;
      let from = jb;
      while (st.threshold > 0) {
        const n = kx.scan(qAddr, job.db, from, je, st.threshold, scratch, SCAN_CAP);
        if (n > 0) st.pushPairs(pairs, 0, n);
        if (n < SCAN_CAP) break;
        from = pairs[2 * (n - 1)]! + 1;
      }
    }
  }
  const outIdx = new Int32Array(buf, task.out, nq * kOut);
  const outDist = new Int32Array(buf, task.out + nq * kOut * 4, nq * kOut);
  for (let i = 0; i < nq; i++) states[i]!.emit(outIdx, outDist, i * kOut);
}

function runRankTask(memory: WasmMemory, kx: KernelExports, job: RankJob, taskIndex: number, thread: number): void {
  const buf = memory.buffer;
  const { bits, cutoffs } = job;
  const task = job.tasks[taskIndex]!;
  const scratch = job.scratch + thread * job.scratchBytes;
  const histAddr = scratch;
  const outAddr = scratch + align64((bits + 2) * 4);
  const hist = new Int32Array(buf, histAddr, bits + 1);
  const nq = task.q1 - task.q0;
  const ap = new Float64Array(buf, job.ap + task.q0 * 8, nq);
  const relTotal = new Int32Array(buf, job.relTotal + task.q0 * 4, nq);
  const nc = cutoffs.length;
  const relAt = new Int32Array(buf, job.relAt + task.q0 * nc * 4, nq * nc);
  const pr = job.pr >= 0 ? new Float64Array(buf, job.pr + taskIndex * 4 * (bits + 1) * 8, 4 * (bits + 1)) : null;
  const qLabSingle = job.labelKind === 'single' ? new Int32Array(buf, job.queryLabels, task.q1) : null;
  const qLabMulti = job.labelKind === 'multi' ? new Uint32Array(buf, job.queryLabels, task.q1 * job.labelWords) : null;
  const start = new Int32Array(bits + 2);
  const relNext = new Int32Array(bits + 2);
  const rel = new Int32Array(buf, outAddr, 2 * job.dbCount);
  const M = job.mapCutoff;

  for (let i = 0; i < nq; i++) {
    const q = task.q0 + i;
    ap[i] = 0;
    relTotal[i] = 0;
    relAt.fill(0, i * nc, (i + 1) * nc);
    let ql: number;
    if (qLabSingle) {
      ql = qLabSingle[q]!;
      if (ql < 0) continue; // unlabelled query: nothing is relevant
    } else {
      ql = job.queryLabels + q * job.labelWords * 4;
      let any = 0;
      for (let w = 0; w < job.labelWords; w++) any |= qLabMulti![q * job.labelWords + w]!;
      if (any === 0) continue;
    }
    hist.fill(0);
    const r = kx.rank(job.queries + q * job.stride, job.db, job.dbCount, histAddr, job.dbLabels, ql, outAddr);
    relTotal[i] = r;
    if (r === 0) continue;
    ap[i] = scoreQuery(hist, rel, r, bits, M, cutoffs, relAt, i * nc, start, relNext);
    if (pr) addPrecisionRecall(pr, hist, relNext, r, bits);
  }
}

/**
 * AP over the first M ranks from the distance histogram and the relevant items' (distance, tie)
 * pairs in index order; records relevant-in-top-K counts. Leaves in relNext[d] the number of
 * relevant items at distance < d + 1 (cumulative), for the PR curve.
 */
function scoreQuery(
  hist: Int32Array, rel: Int32Array, r: number, bits: number, M: number, cutoffs: number[], relAt: Int32Array, at: number,
  start: Int32Array, relNext: Int32Array,
): number {
  // rank of item j = 1 + items at smaller distances + items at the same distance with smaller index
  let acc = 0;
  for (let d = 0; d <= bits; d++) {
    start[d] = acc;
    acc += hist[d]!;
  }
  // relNext[d] = relevant items at smaller distances: the rank among relevant items, minus one,
  // of the next relevant item met at distance d (they come in index order).
  relNext.fill(0);
  for (let e = 0; e < 2 * r; e += 2) relNext[rel[e]! + 1]!++;
  for (let d = 0; d <= bits; d++) relNext[d + 1]! += relNext[d]!;
  const nc = cutoffs.length;
  let sum = 0;
  let inTop = 0;
  for (let e = 0; e < 2 * r; e += 2) {
    const d = rel[e]!;
    const pos = start[d]! + rel[e + 1]! + 1;
    const relRank = ++relNext[d]!;
    if (pos <= M) {
      sum += relRank / pos;
      inTop++;
    }
    for (let c = 0; c < nc; c++) if (pos <= cutoffs[c]!) relAt[at + c]!++;
  }
  return inTop > 0 ? sum / inTop : 0;
}

/** Adds one query's precision and recall by Hamming radius to the task's sums. */
function addPrecisionRecall(pr: Float64Array, hist: Int32Array, relCum: Int32Array, r: number, bits: number): void {
  // After scoreQuery, relCum[d] = relevant items at distance <= d.
  const w = bits + 1;
  let ret = 0;
  for (let rad = 0; rad <= bits; rad++) {
    ret += hist[rad]!;
    const relRet = relCum[rad]!;
    if (ret > 0) {
      pr[rad]! += relRet / ret;
      pr[w + rad]! += 1;
    }
    pr[2 * w + rad]! += relRet / r;
    pr[3 * w + rad]! += 1;
  }
}
