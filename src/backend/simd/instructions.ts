import { Op, assemble, sleb, uleb, type Func, type ValType } from '../../util/wasm-asm.js';
import { compileModule, instantiate, localMemory, type LocalMemory } from '../../util/wasm-api.js';

/**
 * Instructions for the SIMD kernels, as byte lists to compose with spread (src/util/wasm-asm.ts
 * has the core opcodes and writes the module), and the one way they are instantiated: with a
 * memory of their own. The SIMD opcodes are WebAssembly 2.0's fixed-width SIMD encodings.
 */

export type Code = number[];

const simd = (code: number): Code => [0xfd, ...uleb(code)];
const memarg: Code = [0, 0]; // alignment hint 1 byte (never traps), offset 0

export const op = {
  get: (i: number): Code => [Op.local_get, ...uleb(i)],
  set: (i: number): Code => [Op.local_set, ...uleb(i)],
  i32: (v: number): Code => [Op.i32_const, ...sleb(v)],
  add: [Op.i32_add],
  sub: [Op.i32_sub],
  mul: [Op.i32_mul],
  ltS: [Op.i32_lt_s],
  gtS: [Op.i32_gt_s],
  geS: [Op.i32_ge_s],
  and: [Op.i32_and],
  or: [Op.i32_or],
  eqz: [Op.i32_eqz],
  select: [Op.select],
  br: (depth: number): Code => [Op.br, ...uleb(depth)],
  brIf: (depth: number): Code => [Op.br_if, ...uleb(depth)],
  if: (body: Code): Code => [Op.if, Op.void, ...body, Op.end],
  block: (body: Code): Code => [Op.block, Op.void, ...body, Op.end],
  loop: (body: Code): Code => [Op.loop, Op.void, ...body, Op.end],
  v128Load: [...simd(0x00), ...memarg],
  v128Load32Splat: [...simd(0x09), ...memarg],
  v128Store: [...simd(0x0b), ...memarg],
  v128Zero: [...simd(0x0c), ...new Array<number>(16).fill(0)],
  f32x4Splat: (v: number): Code => [Op.f32_const, ...new Uint8Array(new Float32Array([v]).buffer), ...simd(0x13)],
  f32x4Eq: simd(0x41),
  f32x4Ne: simd(0x42),
  f32x4Add: simd(0xe4),
  f32x4Sub: simd(0xe5),
  f32x4Mul: simd(0xe6),
  v128And: simd(0x4e),
  v128AndNot: simd(0x4f),
  v128Or: simd(0x50),
  v128AnyTrue: simd(0x53),
  i32x4AllTrue: simd(0xa3),
};

/**
 * for (i = from; i < to; i += step) body, with `from`, `to` and `step` as code that leaves an i32
 * (`to` is evaluated on every iteration).
 */
export function forLoop(i: number, from: Code, to: Code, step: Code, body: Code): Code {
  return [
    ...from,
    ...op.set(i),
    ...op.block(op.loop([...op.get(i), ...to, ...op.geS, ...op.brIf(1), ...body, ...op.get(i), ...step, ...op.add, ...op.set(i), ...op.br(0)])),
  ];
}

/** Parameter indices by name (parameters are a function's first locals). */
export function params<K extends string>(names: readonly K[]): Record<K, number> & { count: number } {
  return Object.assign(Object.fromEntries(names.map((n, i) => [n, i])) as Record<K, number>, { count: names.length });
}

/** New locals of one type, by name. */
export function locals<K extends string>(f: Func, type: ValType, names: readonly K[]): Record<K, number> {
  return Object.fromEntries(names.map((n) => [n, f.local(type)])) as Record<K, number>;
}

/** A kernel module's bytes: `funcs` exported by name, `env.memory` imported (growable to `maxPages`). */
export function kernelModule(funcs: Func[], maxPages: number): Uint8Array {
  return assemble(funcs, { shared: false, maxPages });
}

/**
 * The module's exports and a memory of its own (`pages` of 64 KiB to start, growable to
 * `maxPages`), or null where this JavaScript engine has no WebAssembly SIMD.
 */
export function instantiateKernels<T>(bytes: Uint8Array, pages: number, maxPages: number): { exports: T; memory: LocalMemory } | null {
  try {
    const memory = localMemory(pages, maxPages);
    const exports = instantiate(compileModule(bytes), { env: { memory } }) as T;
    return { exports, memory };
  } catch {
    return null;
  }
}
