import type { SgdStepAttrs } from '../fused-kernels.js';
import { Func } from '../../util/wasm-asm.js';
import type { LocalMemory } from '../../util/wasm-api.js';
import { forLoop, instantiateKernels, kernelModule, locals, op, params, type Code } from './instructions.js';

/**
 * fgh's in-place SGD step (sgdLoop in src/backend/onnxruntime/sgd-step.ts) with WebAssembly SIMD,
 * four floats at a time: the same float32 operations in the same order (WebAssembly never fuses a
 * multiply and an add), so the same bits. The arrays stream through the kernel's memory in chunks
 * small enough to stay in cache, so the copies cost little next to the one pass over memory both
 * forms make; the scalar loop did about 4 ns an element.
 */

const CHUNK = 16384; // floats per array per call: 3 x 64 KiB
const [LR, MOMENTUM, DECAY] = [0, 4, 8]; // byte addresses of the scalars
const [P_AT, G_AT, B_AT] = [64, 64 + 4 * CHUNK, 64 + 8 * CHUNK];

function sgdFunction(name: string, nesterov: boolean, decay: boolean): Func {
  // Parameter: the number of bytes in the chunk (a multiple of 16).
  const a = params(['bytes']);
  const f = new Func(name, ['i32'], []);
  const { i } = locals(f, 'i32', ['i']);
  const v = locals(f, 'v128', ['p', 'd', 'b', 'lr', 'm', 'wd']);
  const { get, set, i32 } = op;
  const at = (base: number): Code => [...i32(base), ...get(i), ...op.add];
  const step: Code = [
    ...at(P_AT), ...op.v128Load, ...set(v.p),
    // d = g + p * wd
    ...at(G_AT), ...op.v128Load, ...(decay ? [...get(v.p), ...get(v.wd), ...op.f32x4Mul, ...op.f32x4Add] : []), ...set(v.d),
    // nb = b * m + d, stored
    ...at(B_AT), ...op.v128Load, ...get(v.m), ...op.f32x4Mul, ...get(v.d), ...op.f32x4Add, ...set(v.b),
    ...at(B_AT), ...get(v.b), ...op.v128Store,
    // p = p - (nesterov ? d + nb * m : nb) * lr
    ...at(P_AT),
    ...get(v.p), ...(nesterov ? [...get(v.d), ...get(v.b), ...get(v.m), ...op.f32x4Mul, ...op.f32x4Add] : get(v.b)), ...get(v.lr), ...op.f32x4Mul, ...op.f32x4Sub,
    ...op.v128Store,
  ];
  f.emit(
    ...i32(LR), ...op.v128Load32Splat, ...set(v.lr),
    ...i32(MOMENTUM), ...op.v128Load32Splat, ...set(v.m),
    ...i32(DECAY), ...op.v128Load32Splat, ...set(v.wd),
    ...forLoop(i, i32(0), get(a.bytes), i32(16), step),
  );
  return f;
}

const PAGES = Math.ceil((B_AT + 4 * CHUNK) / 65536);

export const SGD_STEP_WASM = kernelModule(
  [sgdFunction('plain', false, false), sgdFunction('decay', false, true), sgdFunction('nesterov', true, false), sgdFunction('nesterovDecay', true, true)],
  PAGES,
);

interface Kernel {
  plain(bytes: number): void;
  decay(bytes: number): void;
  nesterov(bytes: number): void;
  nesterovDecay(bytes: number): void;
}

let kernel: { exports: Kernel; memory: LocalMemory } | null | undefined;

function compiled(): { exports: Kernel; memory: LocalMemory } | null {
  if (kernel === undefined) kernel = instantiateKernels<Kernel>(SGD_STEP_WASM, PAGES, PAGES);
  return kernel;
}

/**
 * The SGD step in place on whole groups of four elements; returns how many it did (a multiple of
 * 4, 0 without WebAssembly SIMD), leaving the rest to the scalar loop.
 */
export function sgdStepSimd(p: Float32Array, g: Float32Array, b: Float32Array, a: SgdStepAttrs): number {
  const k = compiled();
  if (!k) return 0;
  const done = p.length - (p.length % 4);
  const heap = new Float32Array(k.memory.buffer);
  const e = k.exports;
  heap[LR / 4] = a.lr;
  heap[MOMENTUM / 4] = a.momentum;
  heap[DECAY / 4] = a.weightDecay;
  // The variant as sgdLoop picks it: by the float32 weight decay.
  const decay = Math.fround(a.weightDecay) !== 0;
  const run = a.nesterov ? (decay ? e.nesterovDecay : e.nesterov) : decay ? e.decay : e.plain;
  const [hp, hg, hb] = [heap.subarray(P_AT / 4, P_AT / 4 + CHUNK), heap.subarray(G_AT / 4, G_AT / 4 + CHUNK), heap.subarray(B_AT / 4, B_AT / 4 + CHUNK)];
  for (let from = 0; from < done; from += CHUNK) {
    const n = Math.min(CHUNK, done - from);
    hp.set(p.subarray(from, from + n));
    hg.set(g.subarray(from, from + n));
    hb.set(b.subarray(from, from + n));
    run(n * 4);
    p.set(hp.subarray(0, n), from);
    b.set(hb.subarray(0, n), from);
  }
  return done;
}
