import type { SgdStepAttrs } from '../fused-kernels.js';
import { forLoop, op, wasmModule, type Code, type WasmFunction } from './wasm-writer.js';

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

// Parameter: the number of bytes in the chunk (a multiple of 16). Locals: i, then v128s.
const [BYTES, I] = [0, 1];
const [VP, VD, VB, LRV, MV, WDV] = [2, 3, 4, 5, 6, 7];
const { get, set, i32 } = op;
const at = (base: number): Code => [...i32(base), ...get(I), ...op.add];

function sgdFunction(name: string, nesterov: boolean, decay: boolean): WasmFunction {
  const step: Code = [
    ...at(P_AT), ...op.v128Load, ...set(VP),
    // d = g + p * wd
    ...at(G_AT), ...op.v128Load, ...(decay ? [...get(VP), ...get(WDV), ...op.f32x4Mul, ...op.f32x4Add] : []), ...set(VD),
    // nb = b * m + d, stored
    ...at(B_AT), ...op.v128Load, ...get(MV), ...op.f32x4Mul, ...get(VD), ...op.f32x4Add, ...set(VB),
    ...at(B_AT), ...get(VB), ...op.v128Store,
    // p = p - (nesterov ? d + nb * m : nb) * lr
    ...at(P_AT),
    ...get(VP), ...(nesterov ? [...get(VD), ...get(VB), ...get(MV), ...op.f32x4Mul, ...op.f32x4Add] : get(VB)), ...get(LRV), ...op.f32x4Mul, ...op.f32x4Sub,
    ...op.v128Store,
  ];
  const body: Code = [
    ...i32(LR), ...op.v128Load32Splat, ...set(LRV),
    ...i32(MOMENTUM), ...op.v128Load32Splat, ...set(MV),
    ...i32(DECAY), ...op.v128Load32Splat, ...set(WDV),
    ...forLoop(I, i32(0), get(BYTES), i32(16), step),
  ];
  return { name, params: 1, result: false, i32Locals: 1, v128Locals: 6, body };
}

export const SGD_STEP_WASM = wasmModule(
  [sgdFunction('plain', false, false), sgdFunction('decay', false, true), sgdFunction('nesterov', true, false), sgdFunction('nesterovDecay', true, true)],
  Math.ceil((B_AT + 4 * CHUNK) / 65536),
);

interface Kernel {
  memory: { buffer: ArrayBuffer };
  plain(bytes: number): void;
  decay(bytes: number): void;
  nesterov(bytes: number): void;
  nesterovDecay(bytes: number): void;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
}

let kernel: Kernel | null | undefined;

function compiled(): Kernel | null {
  if (kernel === undefined) {
    try {
      const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
      kernel = new wasm.Instance(new wasm.Module(SGD_STEP_WASM)).exports as unknown as Kernel;
    } catch {
      kernel = null;
    }
  }
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
  heap[LR / 4] = a.lr;
  heap[MOMENTUM / 4] = a.momentum;
  heap[DECAY / 4] = a.weightDecay;
  const run = a.nesterov ? (a.weightDecay ? k.nesterovDecay : k.nesterov) : a.weightDecay ? k.decay : k.plain;
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
