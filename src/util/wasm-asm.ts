/**
 * A minimal WebAssembly binary writer: just enough to emit fgh's kernels (one module, an imported
 * memory, a few exported functions), with no compiler toolchain at build or install time.
 * Retrieval uses WebAssembly for its native population count (i64.popcnt), which JavaScript
 * lacks, and generates its kernels at run time for the exact code length so that every word of a
 * code is an unrolled load/xor/popcnt; the training backend's kernels in src/backend/simd use its
 * 128-bit SIMD (v128 values; their opcodes in src/backend/simd/instructions.ts). Binary format:
 * https://webassembly.github.io/spec/core/binary/
 */

export type ValType = 'i32' | 'i64' | 'f64' | 'v128';

const VALTYPE: Record<ValType, number> = { i32: 0x7f, i64: 0x7e, f64: 0x7c, v128: 0x7b };

/** Opcodes used by the kernels. */
export const Op = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  end: 0x0b,
  br: 0x0c,
  br_if: 0x0d,
  return: 0x0f,
  drop: 0x1a,
  local_get: 0x20,
  local_set: 0x21,
  local_tee: 0x22,
  i32_load: 0x28,
  i64_load: 0x29,
  i32_store: 0x36,
  i32_const: 0x41,
  select: 0x1b,
  f32_const: 0x43,
  i32_eqz: 0x45,
  i32_eq: 0x46,
  i32_ne: 0x47,
  i32_lt_s: 0x48,
  i32_lt_u: 0x49,
  i32_gt_s: 0x4a,
  i32_ge_s: 0x4e,
  i32_ge_u: 0x4f,
  i32_popcnt: 0x69,
  i32_add: 0x6a,
  i32_sub: 0x6b,
  i32_mul: 0x6c,
  i32_rem_u: 0x70,
  i32_and: 0x71,
  i32_or: 0x72,
  i32_xor: 0x73,
  i32_shl: 0x74,
  i64_popcnt: 0x7b,
  i64_add: 0x7c,
  i64_xor: 0x85,
  i32_wrap_i64: 0xa7,
  /** Block type "no result". */
  void: 0x40,
} as const;

export function uleb(n: number): number[] {
  if (!Number.isInteger(n) || n < 0) throw new Error(`uleb: ${n}`);
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

export function sleb(n: number): number[] {
  if (!Number.isInteger(n) || n < -(2 ** 31) || n >= 2 ** 31) throw new Error(`sleb: ${n}`);
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** A function under construction: parameters are locals 0..p-1, `local()` adds more. */
export class Func {
  readonly code: number[] = [];
  private readonly extra: ValType[] = [];

  constructor(
    readonly name: string,
    readonly params: ValType[],
    readonly results: ValType[],
  ) {}

  local(type: ValType): number {
    this.extra.push(type);
    return this.params.length + this.extra.length - 1;
  }

  emit(...bytes: number[]): this {
    for (const b of bytes) this.code.push(b);
    return this;
  }

  get(i: number): this {
    return this.emit(Op.local_get, ...uleb(i));
  }

  set(i: number): this {
    return this.emit(Op.local_set, ...uleb(i));
  }

  tee(i: number): this {
    return this.emit(Op.local_tee, ...uleb(i));
  }

  i32(v: number): this {
    return this.emit(Op.i32_const, ...sleb(v));
  }

  /** A load or store with its memarg (alignment as log2 bytes, constant offset). */
  mem(op: number, align: number, offset: number): this {
    return this.emit(op, ...uleb(align), ...uleb(offset));
  }

  /** The body bytes: local declarations (run-length grouped), code, end. */
  body(): number[] {
    const groups: Array<[number, ValType]> = [];
    for (const t of this.extra) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    const locals = [...uleb(groups.length), ...groups.flatMap(([n, t]) => [...uleb(n), VALTYPE[t]])];
    const all = [...locals, ...this.code, Op.end];
    return [...uleb(all.length), ...all];
  }
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function name(s: string): number[] {
  const b = [...new TextEncoder().encode(s)];
  return [...uleb(b.length), ...b];
}

/**
 * A module importing `env.memory` (shared when `shared`, so retrieval's worker threads can run the
 * same kernels on one copy of the database) and exporting `funcs` by name.
 */
export function assemble(funcs: Func[], opts: { shared: boolean; maxPages: number }): Uint8Array {
  const types = funcs.map((f) => [0x60, ...vector(f.params.map((p) => [VALTYPE[p]])), ...vector(f.results.map((r) => [VALTYPE[r]]))]);
  const limits = opts.shared ? [0x03, ...uleb(0), ...uleb(opts.maxPages)] : [0x01, ...uleb(0), ...uleb(opts.maxPages)];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vector(types)),
    ...section(2, vector([[...name('env'), ...name('memory'), 0x02, ...limits]])),
    ...section(3, vector(funcs.map((_, i) => uleb(i)))),
    ...section(7, vector(funcs.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vector(funcs.map((f) => f.body()))),
  ];
  return new Uint8Array(bytes);
}
