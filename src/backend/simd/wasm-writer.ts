/**
 * A minimal WebAssembly binary writer for fgh's few SIMD kernels: i32 parameters, i32 or v128
 * locals, one exported memory. Kernels are written as instruction lists (the `op` helpers), so
 * no compiler toolchain is needed at build or install time; `WebAssembly.validate` checks the
 * result. Opcodes are the WebAssembly 2.0 core and fixed-width SIMD encodings.
 */

export type Code = number[];

export function uleb(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    const byte = v & 0x7f;
    v >>>= 7;
    out.push(v ? byte | 0x80 : byte);
  } while (v);
  return out;
}

export function sleb(value: number): number[] {
  const out: number[] = [];
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

const I32 = 0x7f;
const V128 = 0x7b;
const simd = (code: number): Code => [0xfd, ...uleb(code)];
const memarg: Code = [0, 0]; // alignment hint 1 byte (never traps), offset 0

/** Instructions (each returns its bytes; compose with spread). */
export const op = {
  get: (i: number): Code => [0x20, ...uleb(i)],
  set: (i: number): Code => [0x21, ...uleb(i)],
  i32: (v: number): Code => [0x41, ...sleb(v)],
  add: [0x6a],
  sub: [0x6b],
  mul: [0x6c],
  ltS: [0x48],
  gtS: [0x4a],
  geS: [0x4e],
  and: [0x71],
  or: [0x72],
  eqz: [0x45],
  select: [0x1b],
  br: (depth: number): Code => [0x0c, ...uleb(depth)],
  brIf: (depth: number): Code => [0x0d, ...uleb(depth)],
  if: (body: Code): Code => [0x04, 0x40, ...body, 0x0b],
  block: (body: Code): Code => [0x02, 0x40, ...body, 0x0b],
  loop: (body: Code): Code => [0x03, 0x40, ...body, 0x0b],
  v128Load: [...simd(0x00), ...memarg],
  v128Store: [...simd(0x0b), ...memarg],
  v128Zero: [...simd(0x0c), ...new Array<number>(16).fill(0)],
  f32x4Splat: (v: number): Code => [0x43, ...new Uint8Array(new Float32Array([v]).buffer), ...simd(0x13)],
  f32x4Eq: simd(0x41),
  f32x4Ne: simd(0x42),
  f32x4Add: simd(0xe4),
  f32x4Sub: simd(0xe5),
  f32x4Mul: simd(0xe6),
  v128Load32Splat: [...simd(0x09), ...memarg],
  v128And: simd(0x4e),
  v128AndNot: simd(0x4f),
  v128Or: simd(0x50),
  v128AnyTrue: simd(0x53),
  i32x4AllTrue: simd(0xa3),
};

/**
 * for (i = from; i < to; i += step) body, with `from`, `to` and `step` as code that leaves an i32
 * (`to` is evaluated on every iteration). Inside `body`, br(1) leaves the loop.
 */
export function forLoop(i: number, from: Code, to: Code, step: Code, body: Code): Code {
  return [
    ...from,
    ...op.set(i),
    ...op.block(op.loop([...op.get(i), ...to, ...op.geS, ...op.brIf(1), ...body, ...op.get(i), ...step, ...op.add, ...op.set(i), ...op.br(0)])),
  ];
}

export interface WasmFunction {
  name: string;
  /** Number of i32 parameters. */
  params: number;
  /** Returns one i32. */
  result: boolean;
  /** Extra locals after the parameters: i32s first, then v128s. */
  i32Locals: number;
  v128Locals: number;
  body: Code;
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function name(s: string): number[] {
  const bytes = [...new TextEncoder().encode(s)];
  return [...uleb(bytes.length), ...bytes];
}

/** A module with the functions and one memory (`initialPages` of 64 KiB, growable), both exported. */
export function wasmModule(functions: WasmFunction[], initialPages = 1): Uint8Array {
  const types = functions.map((f) => [0x60, ...vec(new Array<number[]>(f.params).fill([I32])), ...(f.result ? [1, I32] : [0])]);
  const exports = [...functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]), [...name('memory'), 0x02, 0]];
  const bodies = functions.map((f) => {
    const locals = [f.i32Locals ? [...uleb(f.i32Locals), I32] : [], f.v128Locals ? [...uleb(f.v128Locals), V128] : []].filter((l) => l.length > 0);
    const body = [...vec(locals), ...f.body, 0x0b];
    return [...uleb(body.length), ...body];
  });
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(3, vec(functions.map((_, i) => uleb(i)))),
    ...section(5, vec([[0x00, ...uleb(initialPages)]])),
    ...section(7, vec(exports)),
    ...section(10, vec(bodies)),
  ]);
}
