/**
 * Retrieval metrics with the reference semantics (SEMICON utils/evaluate.py, sRLH
 * utils/cal_map.py), ties broken by database index:
 *
 * - relevant = the query and the item share at least one label;
 * - ranking = Hamming distance ascending, then database index (a stable sort);
 * - AP@M = mean, over the relevant items among the first M ranked, of (their rank among relevant
 *   items) / (their rank); a query with no relevant item in the first M has AP 0 and still counts
 *   in the mean (mAP = sum of AP / number of queries). mAP@all is M = database size.
 * - `referenceSlice: s` reproduces `retrieval[:s]` of SEMICON's code with Python slice semantics:
 *   its default topk = -1 keeps M = N - 1, dropping the last ranked item of every query.
 * - precision@K = relevant in the first min(K, N) / min(K, N); recall@K = relevant in the first
 *   K / relevant in the database (0 for a query with none), both averaged over all queries.
 * - precision-recall by Hamming radius r = 0..bits, over the items at distance <= r: precision is
 *   averaged over the queries that retrieve at least one item at that radius, recall over all
 *   queries; queries with no relevant item in the database are left out of both curves.
 */
import { FghError } from '../util/errors.js';
import { type Codes } from './codes.js';
import { alignLabels, type Labels } from './labels.js';
import { kernelModule } from './kernels.js';
import { CONTROL_BYTES, rankScratchBytes, type RankJob } from './jobs.js';
import { MemoryPlan, bytesOf } from './memory.js';
import { Pool, threadsFor, type ThreadOptions } from './pool.js';

export interface EvalOptions extends ThreadOptions {
  /** mAP@K (and the default K of precision@K / recall@K). */
  topk?: number;
  /** SEMICON's `[:topk]` slice, Python semantics (e.g. -1); excludes `topk`. */
  referenceSlice?: number;
  /** K values for precision@K and recall@K (default: [topk] or [100]). */
  at?: number[];
  /** Also compute the precision-recall curve by Hamming radius. */
  prCurve?: boolean;
  /** Hears (queries done, queries) from time to time. */
  progress?: (done: number, total: number) => void;
}

export interface PrCurve {
  /** radius[r] = r, 0..bits. */
  radius: number[];
  /** Mean precision of the items within the radius (null where no query retrieves anything). */
  precision: Array<number | null>;
  recall: number[];
  /** Queries with at least one relevant database item (the ones the curve averages). */
  queries: number;
}

export interface EvalResult {
  map: number;
  /** K of mAP@K; null for mAP@all. */
  topk: number | null;
  /** The reference slice used, if any. */
  referenceSlice: number | null;
  /** Ranked items per query that AP counts. */
  cutoff: number;
  numQuery: number;
  numDb: number;
  bits: number;
  at: Array<{ k: number; precision: number; recall: number }>;
  /** Per query AP. */
  ap: Float64Array;
  /** Per query number of relevant database items. */
  relevant: Int32Array;
  pr?: PrCurve;
  threads: number;
}

/** The number of ranked items kept by Python's `seq[:s]` on a sequence of length n. */
export function pythonSliceLength(n: number, s: number): number {
  return s >= 0 ? Math.min(s, n) : Math.max(0, n + s);
}

export async function evaluate(query: Codes, queryLabels: Labels, db: Codes, dbLabels: Labels, opts: EvalOptions = {}): Promise<EvalResult> {
  if (query.bits !== db.bits) throw new FghError(`query codes have ${query.bits} bits, database codes ${db.bits}`);
  if (queryLabels.count !== query.count) throw new FghError(`${query.count} query codes but ${queryLabels.count} query labels`);
  if (dbLabels.count !== db.count) throw new FghError(`${db.count} database codes but ${dbLabels.count} database labels`);
  if (opts.topk !== undefined && opts.referenceSlice !== undefined) throw new FghError('--topk and --reference-slice exclude each other');
  if (opts.topk !== undefined && (!Number.isInteger(opts.topk) || opts.topk < 1)) throw new FghError(`--topk must be a positive integer, got ${opts.topk}`);
  if (opts.referenceSlice !== undefined && !Number.isInteger(opts.referenceSlice)) throw new FghError(`--reference-slice must be an integer, got ${opts.referenceSlice}`);
  const at = opts.at ?? [opts.topk ?? 100];
  for (const k of at) if (!Number.isInteger(k) || k < 1) throw new FghError(`precision/recall cutoffs must be positive integers, got ${k}`);

  const bits = db.bits;
  const n = db.count;
  const nq = query.count;
  const stride = db.stride;
  const cutoff = opts.referenceSlice !== undefined ? pythonSliceLength(n, opts.referenceSlice) : Math.min(opts.topk ?? n, n);
  const [ql, dl] = alignLabels(queryLabels, dbLabels);
  const words = ql.kind === 'multi' ? ql.words : 1;

  const threads = nq === 0 || n === 0 ? 1 : threadsFor(nq * n * (Math.max(1, stride / 8) + 1), opts);
  const chunk = Math.max(16, Math.ceil(nq / 4096));
  const tasks: Array<{ q0: number; q1: number }> = [];
  for (let s = 0; s < nq; s += chunk) tasks.push({ q0: s, q1: Math.min(nq, s + chunk) });

  const plan = new MemoryPlan();
  const control = plan.take(CONTROL_BYTES);
  const dbAt = plan.take(n * stride);
  const dbLabAt = plan.take(n * words * 4);
  const qAt = plan.take(nq * stride);
  const qLabAt = plan.take(nq * words * 4);
  const apAt = plan.take(nq * 8);
  const relTotalAt = plan.take(nq * 4);
  const relAtAt = plan.take(nq * at.length * 4);
  const prAt = opts.prCurve ? plan.take(tasks.length * 4 * (bits + 1) * 8) : -1;
  const scratchBytes = rankScratchBytes(bits, n);
  const scratch = plan.take(threads * scratchBytes);
  const memory = plan.allocate(`evaluating ${nq} queries against ${n} codes`);
  bytesOf(memory, dbAt, n * stride).set(db.data.subarray(0, n * stride));
  bytesOf(memory, qAt, nq * stride).set(query.data.subarray(0, nq * stride));
  const labelBytes = (l: Labels) => (l.kind === 'single' ? new Uint8Array(l.ids.buffer, l.ids.byteOffset, l.count * 4) : new Uint8Array(l.sets.buffer, l.sets.byteOffset, l.count * l.words * 4));
  bytesOf(memory, dbLabAt, n * words * 4).set(labelBytes(dl));
  bytesOf(memory, qLabAt, nq * words * 4).set(labelBytes(ql));

  const job: RankJob = {
    kind: 'rank', control, bits, stride, db: dbAt, dbCount: n, dbLabels: dbLabAt, queries: qAt, queryLabels: qLabAt,
    labelKind: ql.kind, labelWords: words, mapCutoff: cutoff, cutoffs: at, ap: apAt, relTotal: relTotalAt, relAt: relAtAt,
    pr: prAt, scratch, scratchBytes, tasks,
  };
  const labels = ql.kind === 'single' ? ({ kind: 'single' } as const) : ({ kind: 'multi', words } as const);
  const pool = new Pool(kernelModule({ bits, labels }), memory, threads);
  try {
    if (tasks.length) await pool.run(job, opts.progress && ((f) => opts.progress!(f === tasks.length ? nq : f * chunk, nq)));
  } finally {
    await pool.close();
  }

  const buf = memory.buffer;
  const ap = new Float64Array(buf, apAt, nq).slice();
  const relevant = new Int32Array(buf, relTotalAt, nq).slice();
  const relAt = new Int32Array(buf, relAtAt, nq * at.length);
  let sum = 0;
  for (let i = 0; i < nq; i++) sum += ap[i]!;
  const atOut = at.map((k, c) => {
    let p = 0;
    let r = 0;
    const denom = Math.min(k, n);
    for (let i = 0; i < nq; i++) {
      const hits = relAt[i * at.length + c]!;
      if (denom > 0) p += hits / denom;
      if (relevant[i]! > 0) r += hits / relevant[i]!;
    }
    return { k, precision: nq ? p / nq : 0, recall: nq ? r / nq : 0 };
  });
  const result: EvalResult = {
    map: nq ? sum / nq : 0,
    topk: opts.topk ?? null,
    referenceSlice: opts.referenceSlice ?? null,
    cutoff,
    numQuery: nq,
    numDb: n,
    bits,
    at: atOut,
    ap,
    relevant,
    threads,
  };
  if (opts.prCurve) result.pr = prCurveFrom(new Float64Array(buf, prAt, tasks.length * 4 * (bits + 1)), tasks.length, bits);
  return result;
}

/** Sums the per-task accumulators (in task order, so the result does not depend on threads). */
function prCurveFrom(acc: Float64Array, tasks: number, bits: number): PrCurve {
  const w = bits + 1;
  const precSum = new Float64Array(w);
  const precCnt = new Float64Array(w);
  const recSum = new Float64Array(w);
  const recCnt = new Float64Array(w);
  for (let t = 0; t < tasks; t++) {
    const base = t * 4 * w;
    for (let r = 0; r < w; r++) {
      precSum[r]! += acc[base + r]!;
      precCnt[r]! += acc[base + w + r]!;
      recSum[r]! += acc[base + 2 * w + r]!;
      recCnt[r]! += acc[base + 3 * w + r]!;
    }
  }
  const radius = Array.from({ length: w }, (_, r) => r);
  return {
    radius,
    precision: radius.map((r) => (precCnt[r]! > 0 ? precSum[r]! / precCnt[r]! : null)),
    recall: radius.map((r) => (recCnt[r]! > 0 ? recSum[r]! / recCnt[r]! : 0)),
    queries: recCnt[0]!,
  };
}
