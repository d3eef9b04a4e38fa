/**
 * Search and ranking work over one shared WebAssembly memory, split into tasks that the main
 * thread and worker threads claim one at a time (an atomic counter), so that the database is in
 * memory once and the split adapts to however fast each thread runs. Every per-query output has a
 * fixed place in memory, so results do not depend on which thread ran which task.
 */
import { RANK_GROUP, rankHistBytes, type KernelExports } from './kernels.js';
import type { WasmMemory } from '../util/wasm-api.js';
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
  return RANK_GROUP * (rankHistBytes(bits) + dbCount * 8);
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
  const hb = rankHistBytes(bits);
  const histAddr = scratch;
  const outAddr = scratch + RANK_GROUP * hb;
  // One view of the whole memory, indexed by int32 offsets: no per-query views to allocate.
  const m32 = new Int32Array(buf);
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
  const M = job.mapCutoff;
  const labelBytes = job.labelKind === 'single' ? 4 : 4 * job.labelWords;
  const labelled = (q: number): boolean => {
    if (qLabSingle) return qLabSingle[q]! >= 0;
    let any = 0;
    for (let w = 0; w < job.labelWords; w++) any |= qLabMulti![q * job.labelWords + w]!;
    return any !== 0;
  };

  for (let q0 = task.q0; q0 < task.q1; ) {
    // Whole groups of queries in one pass; the tail one at a time.
    const g = task.q1 - q0 >= RANK_GROUP ? RANK_GROUP : 1;
    m32.fill(0, histAddr >> 2, (histAddr + g * hb) >> 2);
    const qAddr = job.queries + q0 * job.stride;
    const qlAddr = job.queryLabels + q0 * labelBytes;
    if (g === RANK_GROUP) kx.rankGroup(qAddr, job.db, job.dbCount, histAddr, job.dbLabels, qlAddr, outAddr);
    else kx.rank(qAddr, job.db, job.dbCount, histAddr, job.dbLabels, qlAddr, outAddr);
    for (let k = 0; k < g; k++) {
      const q = q0 + k;
      const i = q - task.q0;
      const hist = (histAddr + k * hb) >> 2;
      const r = labelled(q) ? m32[hist + bits + 1]! : 0; // an unlabelled query has nothing relevant
      ap[i] = 0;
      relTotal[i] = r;
      for (let c = 0; c < nc; c++) relAt[i * nc + c] = 0;
      if (r === 0) continue;
      ap[i] = scoreQuery(m32, hist, (outAddr + k * job.dbCount * 8) >> 2, r, bits, M, cutoffs, relAt, i * nc, start, relNext);
      if (pr) addPrecisionRecall(pr, m32, hist, relNext, r, bits);
    }
    q0 += g;
  }
}

/**
 * AP over the first M ranks from the distance histogram (m32[hist + d]) and the relevant items'
 * (distance, tie) pairs in index order (from m32[rel]); records relevant-in-top-K counts. Leaves
 * in relNext[d] the number of relevant items at distance < d + 1 (cumulative), for the PR curve.
 */
function scoreQuery(
  m32: Int32Array, hist: number, rel: number, r: number, bits: number, M: number, cutoffs: number[], relAt: Int32Array, at: number,
  start: Int32Array, relNext: Int32Array,
): number {
  // rank of item j = 1 + items at smaller distances + items at the same distance with smaller index
  let acc = 0;
  for (let d = 0; d <= bits; d++) {
    start[d] = acc;
    acc += m32[hist + d]!;
  }
  // relNext[d] = relevant items at smaller distances: the rank among relevant items, minus one,
  // of the next relevant item met at distance d (they come in index order).
  relNext.fill(0);
  const relEnd = rel + 2 * r;
  for (let e = rel; e < relEnd; e += 2) relNext[m32[e]! + 1]!++;
  for (let d = 0; d <= bits; d++) relNext[d + 1]! += relNext[d]!;
  const nc = cutoffs.length;
  let sum = 0;
  let inTop = 0;
  for (let e = rel; e < relEnd; e += 2) {
    const d = m32[e]!;
    const pos = start[d]! + m32[e + 1]! + 1;
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
function addPrecisionRecall(pr: Float64Array, m32: Int32Array, hist: number, relCum: Int32Array, r: number, bits: number): void {
  // After scoreQuery, relCum[d] = relevant items at distance <= d.
  const w = bits + 1;
  let ret = 0;
  for (let rad = 0; rad <= bits; rad++) {
    ret += m32[hist + rad]!;
    const relRet = relCum[rad]!;
    if (ret > 0) {
      pr[rad]! += relRet / ret;
      pr[w + rad]! += 1;
    }
    pr[2 * w + rad]! += relRet / r;
    pr[3 * w + rad]! += 1;
  }
}
