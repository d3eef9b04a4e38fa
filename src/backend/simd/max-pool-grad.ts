import type * as tf from '@tensorflow/tfjs-core';
import { forLoop, op, wasmModule, type Code } from './wasm-writer.js';

/**
 * MaxPool's gradient on NHWC arrays with WebAssembly SIMD, four channels at a time: the same
 * answer as `maxPoolGradNhwc` (src/backend/onnxruntime/spatial-kernels.ts), which stays the
 * reference and the fallback. Each window's taps are visited in row-major order; a lane takes the
 * first tap equal to its window's maximum `y` (tfjs's and PyTorch's choice among ties) and adds
 * its dy there in float32, in output order. Lanes whose search that function answers differently
 * (a NaN met before the match, y NaN or -Infinity, no tap equal to y) are counted, and any such
 * lane sends the whole call back to it. The scalar search took 65-75 ms on the ResNet stem's
 * 16x112x112x64 (a third of what a training step spends outside onnxruntime); this kernel,
 * with the copies into and out of its memory (a few images at a time), about a third of that.
 */

// Parameters: byte addresses of x, y, dy, dx, then the pool's geometry.
const [X, Y, DY, DX, N, H, W, CH, OH, OW, SH, SW, KH, KW, TOP, LEFT] = Array.from({ length: 16 }, (_, i) => i) as number[] as [number, number, number, number, number, number, number, number, number, number, number, number, number, number, number, number];
// i32 locals.
const [B, OY, OX, Y0, YMIN, YMAX, X0, XMIN, XMAX, FIRST, KB, ROW, IY, IX, P, O, BAD, ROW_STEP, PIX_STEP] = Array.from({ length: 19 }, (_, i) => 16 + i) as number[] as [number, number, number, number, number, number, number, number, number, number, number, number, number, number, number, number, number, number, number];
// v128 locals.
const [T, D, FOUND, EQ, NAN_BEFORE, V] = Array.from({ length: 6 }, (_, i) => 35 + i) as number[] as [number, number, number, number, number, number];

const { get, set, i32 } = op;
const load = (base: number, offset: number): Code => [...get(base), ...get(offset), ...op.add, ...op.v128Load];
/** lo = max(start, 0), hi = min(start + size, limit). */
const clamp = (start: number, size: number, limit: number, lo: number, hi: number): Code => [
  ...get(start), ...i32(0), ...get(start), ...i32(0), ...op.gtS, ...op.select, ...set(lo),
  ...get(start), ...get(size), ...op.add, ...get(limit), ...get(start), ...get(size), ...op.add, ...get(limit), ...op.ltS, ...op.select, ...set(hi),
];

const tap: Code = [
  ...load(X, P), ...set(V),
  ...get(V), ...get(T), ...op.f32x4Eq, ...set(EQ),
  // A NaN before this lane's match: the scalar search gives up there.
  ...get(NAN_BEFORE), ...get(V), ...get(V), ...op.f32x4Ne, ...get(FOUND), ...op.v128AndNot, ...op.v128Or, ...set(NAN_BEFORE),
  // dx[p] += dy where this is the lane's first match (adding +0 elsewhere leaves dx as it is).
  ...get(DX), ...get(P), ...op.add,
  ...load(DX, P), ...get(D), ...get(EQ), ...get(FOUND), ...op.v128AndNot, ...op.v128And, ...op.f32x4Add,
  ...op.v128Store,
  ...get(FOUND), ...get(EQ), ...op.v128Or, ...set(FOUND),
];

const channels: Code = [
  ...get(Y), ...get(O), ...op.add, ...get(KB), ...op.add, ...op.v128Load, ...set(T),
  ...get(DY), ...get(O), ...op.add, ...get(KB), ...op.add, ...op.v128Load, ...set(D),
  ...op.v128Zero, ...set(FOUND),
  ...op.v128Zero, ...set(NAN_BEFORE),
  ...get(FIRST), ...get(KB), ...op.add, ...set(ROW),
  ...forLoop(IY, get(YMIN), get(YMAX), i32(1), [
    ...get(ROW), ...set(P),
    ...forLoop(IX, get(XMIN), get(XMAX), i32(1), [...tap, ...get(P), ...get(PIX_STEP), ...op.add, ...set(P)]),
    ...get(ROW), ...get(ROW_STEP), ...op.add, ...set(ROW),
  ]),
  // Lanes the scalar search answers otherwise: no match, a NaN first, or y = -Infinity.
  ...get(FOUND), ...op.i32x4AllTrue, ...op.eqz,
  ...get(NAN_BEFORE), ...op.v128AnyTrue, ...op.or,
  ...get(T), ...op.f32x4Splat(-Infinity), ...op.f32x4Eq, ...op.v128AnyTrue, ...op.or,
  ...op.if([...get(BAD), ...i32(1), ...op.add, ...set(BAD)]),
];

const body: Code = [
  ...get(CH), ...i32(4), ...op.mul, ...set(PIX_STEP),
  ...get(W), ...get(PIX_STEP), ...op.mul, ...set(ROW_STEP),
  ...forLoop(B, i32(0), get(N), i32(1),
    forLoop(OY, i32(0), get(OH), i32(1), [
      ...get(OY), ...get(SH), ...op.mul, ...get(TOP), ...op.sub, ...set(Y0),
      ...clamp(Y0, KH, H, YMIN, YMAX),
      ...forLoop(OX, i32(0), get(OW), i32(1), [
        ...get(OX), ...get(SW), ...op.mul, ...get(LEFT), ...op.sub, ...set(X0),
        ...clamp(X0, KW, W, XMIN, XMAX),
        ...get(YMIN), ...get(YMAX), ...op.ltS, ...get(XMIN), ...get(XMAX), ...op.ltS, ...op.and,
        ...op.if([
          ...get(B), ...get(H), ...op.mul, ...get(YMIN), ...op.add, ...get(W), ...op.mul, ...get(XMIN), ...op.add, ...get(PIX_STEP), ...op.mul, ...set(FIRST),
          ...forLoop(KB, i32(0), get(PIX_STEP), i32(16), channels),
        ]),
        ...get(O), ...get(PIX_STEP), ...op.add, ...set(O),
      ]),
    ])),
  ...get(BAD),
];

export const MAX_POOL_GRAD_WASM = wasmModule([{ name: 'maxPoolGrad', params: 16, result: true, i32Locals: 19, v128Locals: 6, body }]);

interface Kernel {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  maxPoolGrad(...args: number[]): number;
}

/** The part of the WebAssembly API used here (tsconfig's libs do not declare it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
}

let kernel: Kernel | null | undefined;

/** The compiled kernel, or null where this engine has no WebAssembly SIMD. */
function compiled(): Kernel | null {
  if (kernel === undefined) {
    try {
      const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
      const instance = new wasm.Instance(new wasm.Module(MAX_POOL_GRAD_WASM));
      kernel = instance.exports as unknown as Kernel;
    } catch {
      kernel = null;
    }
  }
  return kernel;
}

/** Whether this JavaScript engine runs the SIMD kernel (WebAssembly SIMD: Node 16.4 and later). */
export function maxPoolGradSimdAvailable(): boolean {
  return compiled() !== null;
}

/** Bytes of kernel memory kept after the last call (grown to the largest batch of images seen, never shrunk). */
export function maxPoolGradSimdBytes(): number {
  return kernel ? kernel.memory.buffer.byteLength : 0;
}

const PAGE = 65536;
/** Addresses are i32 in the kernel: stay inside them. */
const MAX_BYTES = 2 ** 31 - PAGE;

/** Images per kernel call: windows never cross images, so a few at a time keep its memory small. */
const BATCH_BYTES = 16 * 2 ** 20;

/**
 * dx of a max pool into `out`, or false where the call belongs to the scalar function (`out`
 * then holds no answer): channels not a multiple of 4, no SIMD, an image past 2 GiB, or a lane
 * it answers otherwise (see above). `batchBytes` bounds the kernel's memory (whole images).
 */
export function maxPoolGradSimd(d: Float32Array, x: Float32Array, y: Float32Array, c: tf.backend_util.Conv2DInfo, out: Float32Array, batchBytes = BATCH_BYTES): boolean {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ch, outHeight: oh, outWidth: ow } = c;
  if (ch % 4 !== 0 || x.length !== n * h * w * ch || y.length !== n * oh * ow * ch || d.length !== y.length || out.length !== x.length) return false;
  const k = compiled();
  const [xImage, yImage] = [h * w * ch, oh * ow * ch];
  const perImage = 8 * (xImage + yImage);
  if (!k || perImage > MAX_BYTES) return false;
  const images = Math.max(1, Math.min(n, Math.floor(batchBytes / perImage)));
  const need = images * perImage;
  const have = k.memory.buffer.byteLength;
  if (need > have) {
    try {
      k.memory.grow(Math.ceil((need - have) / PAGE));
    } catch {
      return false;
    }
  }
  const buf = k.memory.buffer;
  const p = c.padInfo;
  for (let from = 0; from < n; from += images) {
    const m = Math.min(images, n - from);
    const [xLen, yLen] = [m * xImage, m * yImage];
    const [yAt, dyAt, dxAt] = [4 * xLen, 4 * (xLen + yLen), 4 * (xLen + 2 * yLen)];
    new Float32Array(buf, 0, xLen).set(x.subarray(from * xImage, from * xImage + xLen));
    new Float32Array(buf, yAt, yLen).set(y.subarray(from * yImage, from * yImage + yLen));
    new Float32Array(buf, dyAt, yLen).set(d.subarray(from * yImage, from * yImage + yLen));
    const dx = new Float32Array(buf, dxAt, xLen).fill(0);
    const bad = k.maxPoolGrad(0, yAt, dyAt, dxAt, m, h, w, ch, oh, ow, c.strideHeight, c.strideWidth, c.filterHeight, c.filterWidth, p.top, p.left);
    if (bad !== 0) return false;
    out.set(dx, from * xImage);
  }
  return true;
}
