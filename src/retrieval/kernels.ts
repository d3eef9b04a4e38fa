/**
 * The two hot loops of retrieval, generated as WebAssembly for one code length (and label layout):
 *
 * - `scan(q, db, from, to, thr, out, cap) -> n`: for database items j in [from, to), computes
 *   d = Hamming(query, item j) and appends (j, d) to `out` (pairs of int32) when d < thr; stops
 *   after `cap` pairs. Top-K search keeps lowering `thr`, so after the first K items almost
 *   nothing is appended and the loop is load, xor, popcnt, compare.
 * - `rank(q, db, n, hist, lab, ql, out)`: for every item j in [0, n), in index order,
 *   t = hist[d]++ (so t = items before j at the same distance: its tie rank) and, when j shares
 *   a label with the query, appends (d, t) to `out`. With the final histogram that gives every
 *   relevant item's exact rank (distance, then index) with no sort at all.
 *   `rankGroup` does the same for RANK_GROUP queries in one pass over the database, which loads
 *   each code and label once for all of them (about 1.6x faster per query at 48 bits).
 *
 * Codes of <= 32 bits are one i32 word (stride 4); longer codes are whole i64 words (stride 8W).
 * Labels: `single` = int32 class ids at `lab`, and the query's id at `ql`; `multi` = W32 uint32
 * words per item at `lab`, and the query's words at `ql`.
 */
import { Func, Op, assemble } from '../util/wasm-asm.js';
import { codeStride } from './codes.js';
import { compileModule, instantiate, type WasmMemory, type WasmModule } from '../util/wasm-api.js';

export type LabelMode = { kind: 'none' } | { kind: 'single' } | { kind: 'multi'; words: number };

export interface KernelSpec {
  bits: number;
  labels: LabelMode;
}

export interface KernelExports {
  scan(q: number, db: number, from: number, to: number, thr: number, out: number, cap: number): number;
  /** Ranks one query (see the file comment); its relevant count is stored at hist + 4 (bits + 1). */
  rank(q: number, db: number, n: number, hist: number, lab: number, ql: number, out: number): void;
  /**
   * The same for RANK_GROUP consecutive queries at q (labels at ql), histograms rankHistBytes
   * apart from hist, outputs n * 8 bytes apart from out.
   */
  rankGroup(q: number, db: number, n: number, hist: number, lab: number, ql: number, out: number): void;
}

/** 4 GiB: the most a 32-bit WebAssembly memory can address. */
export const MAX_PAGES = 65536;

function specKey(s: KernelSpec): string {
  return `${s.bits}/${s.labels.kind}${s.labels.kind === 'multi' ? `/${s.labels.words}` : ''}`;
}

/**
 * Pushes the Hamming distance between the query words (locals `qw`) and the code at address
 * local `p` plus `at` bytes, as i32.
 */
function emitDistance(f: Func, p: number, at: number, qw: number[], wide: boolean): void {
  qw.forEach((w, k) => {
    f.get(p).mem(wide ? Op.i64_load : Op.i32_load, wide ? 3 : 2, at + k * (wide ? 8 : 4));
    f.get(w).emit(wide ? Op.i64_xor : Op.i32_xor, wide ? Op.i64_popcnt : Op.i32_popcnt);
    if (k > 0) f.emit(wide ? Op.i64_add : Op.i32_add);
  });
  if (wide) f.emit(Op.i32_wrap_i64);
}

function loadQueryWords(f: Func, q: number, bits: number, at = 0): { qw: number[]; wide: boolean; stride: number } {
  const stride = codeStride(bits);
  const wide = bits > 32;
  const words = wide ? stride / 8 : 1;
  const qw: number[] = [];
  for (let k = 0; k < words; k++) {
    const w = f.local(wide ? 'i64' : 'i32');
    f.get(q).mem(wide ? Op.i64_load : Op.i32_load, wide ? 3 : 2, at + k * (wide ? 8 : 4));
    f.set(w);
    qw.push(w);
  }
  return { qw, wide, stride };
}

/**
 * Items per loop iteration. Unrolling matters in V8: measured on the rank loop with 48-bit codes,
 * 1.22 ns per item rolled, 0.81 unrolled x2, 0.67 x8 (fewer loop-carried branches per item).
 */
function unrollFor(stride: number): number {
  return Math.max(1, Math.min(8, Math.floor(64 / stride)));
}

/**
 * Emits `loop` over items from local p (advancing by stride) until local `end`, U items per
 * iteration while a whole group fits, then one at a time; `item(u, depth)` emits one item at
 * byte offset u*stride, where `depth` is the br depth of the outermost block (to leave early).
 */
function emitUnrolled(f: Func, p: number, end: number, stride: number, U: number, advance: (n: number) => void, item: (u: number, depth: number) => void): void {
  const endU = f.local('i32');
  // endU = end - ((end - p) / stride % U) * stride
  f.get(end).get(end).get(p).emit(Op.i32_sub).i32(stride * U).emit(Op.i32_rem_u, Op.i32_sub).set(endU);
  f.emit(Op.block, Op.void); // depth reference for early exit
  f.emit(Op.block, Op.void, Op.loop, Op.void);
  f.get(p).get(endU).emit(Op.i32_ge_u, Op.br_if, 1);
  for (let u = 0; u < U; u++) item(u, 2);
  f.get(p).i32(stride * U).emit(Op.i32_add).set(p);
  advance(U);
  f.emit(Op.br, 0, Op.end, Op.end);
  f.emit(Op.block, Op.void, Op.loop, Op.void);
  f.get(p).get(end).emit(Op.i32_ge_u, Op.br_if, 1);
  item(0, 2);
  f.get(p).i32(stride).emit(Op.i32_add).set(p);
  advance(1);
  f.emit(Op.br, 0, Op.end, Op.end);
  f.emit(Op.end);
}

function scanFunc(bits: number): Func {
  // params: q, db, from, to, thr, out, cap
  const f = new Func('scan', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], ['i32']);
  const [q, db, from, to, thr, out, cap] = [0, 1, 2, 3, 4, 5, 6];
  const { qw, wide, stride } = loadQueryWords(f, q, bits);
  const p = f.local('i32');
  const end = f.local('i32');
  const c = f.local('i32');
  const d = f.local('i32');
  const j = f.local('i32');
  const o = f.local('i32');
  f.get(db).get(from).i32(stride).emit(Op.i32_mul, Op.i32_add).set(p);
  f.get(db).get(to).i32(stride).emit(Op.i32_mul, Op.i32_add).set(end);
  f.get(from).set(j);
  emitUnrolled(
    f, p, end, stride, unrollFor(stride),
    (n) => f.get(j).i32(n).emit(Op.i32_add).set(j),
    (u, depth) => {
      emitDistance(f, p, u * stride, qw, wide);
      f.tee(d).get(thr).emit(Op.i32_lt_u, Op.if, Op.void);
      f.get(out).get(c).i32(3).emit(Op.i32_shl, Op.i32_add).tee(o).get(j).i32(u).emit(Op.i32_add).mem(Op.i32_store, 2, 0);
      f.get(o).get(d).mem(Op.i32_store, 2, 4);
      // if (++c == cap) leave (the if adds one level)
      f.get(c).i32(1).emit(Op.i32_add).tee(c).get(cap).emit(Op.i32_eq, Op.br_if, depth + 1);
      f.emit(Op.end);
    },
  );
  f.get(c);
  return f;
}

/** Queries one `rank` call ranks together: each database code and label is loaded once for all of them. */
export const RANK_GROUP = 4;

/** Bytes of one query's histogram (bits + 1 counts, then the relevant count) in rank scratch. */
export function rankHistBytes(bits: number): number {
  return Math.ceil(((bits + 2) * 4) / 64) * 64;
}

function rankFunc(name: string, bits: number, labels: LabelMode, group: number): Func {
  // params: q, db, n, hist, lab, ql, out
  const f = new Func(name, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], []);
  const [q, db, n, hist, lab, ql, out] = [0, 1, 2, 3, 4, 5, 6];
  const stride = codeStride(bits);
  const hb = rankHistBytes(bits);
  const labWords = labels.kind === 'multi' ? labels.words : 1;
  const labStride = 4 * labWords;
  const qs = Array.from({ length: group }, (_, g) => {
    const code = loadQueryWords(f, q, bits, g * stride);
    const lw: number[] = [];
    if (labels.kind !== 'none') {
      for (let k = 0; k < labWords; k++) {
        const w = f.local('i32');
        f.get(ql).mem(Op.i32_load, 2, g * labStride + 4 * k).set(w);
        lw.push(w);
      }
    }
    const h = f.local('i32');
    f.get(hist).i32(g * hb).emit(Op.i32_add).set(h);
    const o = f.local('i32');
    f.get(out).get(n).i32(8 * g).emit(Op.i32_mul, Op.i32_add).set(o);
    const r = f.local('i32');
    const d = f.local('i32');
    const t = f.local('i32');
    return { code, lw, h, o, r, d, t };
  });
  const { wide } = qs[0]!.code;
  const p = f.local('i32');
  const end = f.local('i32');
  const lp = f.local('i32');
  const a = f.local('i32');
  const appendPair = (s: { o: number; r: number; d: number; t: number }): void => {
    f.get(s.o).get(s.r).i32(3).emit(Op.i32_shl, Op.i32_add).tee(a).get(s.d).mem(Op.i32_store, 2, 0);
    f.get(a).get(s.t).mem(Op.i32_store, 2, 4);
    f.get(s.r).i32(1).emit(Op.i32_add).set(s.r);
  };
  const lv = labWords === 1 ? f.local('i32') : -1;
  f.get(db).set(p);
  f.get(db).get(n).i32(stride).emit(Op.i32_mul, Op.i32_add).set(end);
  f.get(lab).set(lp);
  emitUnrolled(
    f, p, end, stride, unrollFor(stride),
    (k) => {
      if (labels.kind !== 'none') f.get(lp).i32(labStride * k).emit(Op.i32_add).set(lp);
    },
    (u) => {
      if (lv >= 0 && labels.kind !== 'none') f.get(lp).mem(Op.i32_load, 2, u * labStride).set(lv);
      for (const s of qs) {
        emitDistance(f, p, u * stride, s.code.qw, wide);
        f.set(s.d);
        // t = hist[d]; hist[d] = t + 1
        f.get(s.h).get(s.d).i32(2).emit(Op.i32_shl, Op.i32_add).tee(a);
        f.get(a).mem(Op.i32_load, 2, 0).tee(s.t).i32(1).emit(Op.i32_add).mem(Op.i32_store, 2, 0);
        if (labels.kind === 'none') continue;
        if (labels.kind === 'single') {
          f.get(lv).get(s.lw[0]!).emit(Op.i32_eq);
        } else {
          s.lw.forEach((w, k) => {
            if (lv >= 0) f.get(lv);
            else f.get(lp).mem(Op.i32_load, 2, u * labStride + 4 * k);
            f.get(w).emit(Op.i32_and);
            if (k > 0) f.emit(Op.i32_or);
          });
        }
        f.emit(Op.if, Op.void);
        appendPair(s);
        f.emit(Op.end);
      }
    },
  );
  // Each query's relevant count goes after its histogram.
  for (const s of qs) f.get(s.h).get(s.r).mem(Op.i32_store, 2, (bits + 1) * 4);
  return f;
}

const cache = new Map<string, WasmModule>();

/** The compiled kernels for one code length and label layout (cached; a Module can be posted to workers). */
export function kernelModule(spec: KernelSpec): WasmModule {
  const key = specKey(spec);
  let m = cache.get(key);
  if (!m) {
    m = compileModule(assemble([scanFunc(spec.bits), rankFunc('rank', spec.bits, spec.labels, 1), rankFunc('rankGroup', spec.bits, spec.labels, RANK_GROUP)], { shared: true, maxPages: MAX_PAGES }));
    cache.set(key, m);
  }
  return m;
}

export function instantiateKernels(module: WasmModule, memory: WasmMemory): KernelExports {
  return instantiate(module, { env: { memory } }) as unknown as KernelExports;
}
