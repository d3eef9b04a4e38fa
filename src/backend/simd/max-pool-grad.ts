import type * as tf from '@tensorflow/tfjs-core';
import { Func, type ValType } from '../../util/wasm-asm.js';
import type { LocalMemory } from '../../util/wasm-api.js';
import { forLoop, instantiateKernels, kernelModule, locals, op, params, type Code } from './instructions.js';

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

const PAGE = 65536;
/** Addresses are i32 in the kernel: stay inside them. */
const MAX_BYTES = 2 ** 31 - PAGE;

function maxPoolGradFunc(): Func {
  // Parameters: byte addresses of x, y, dy, dx, then the pool's geometry.
  const a = params(['x', 'y', 'dy', 'dx', 'n', 'h', 'w', 'ch', 'oh', 'ow', 'sh', 'sw', 'kh', 'kw', 'top', 'left']);
  const f = new Func('maxPoolGrad', new Array<ValType>(a.count).fill('i32'), ['i32']);
  const l = locals(f, 'i32', ['b', 'oy', 'ox', 'y0', 'yMin', 'yMax', 'x0', 'xMin', 'xMax', 'first', 'kb', 'row', 'iy', 'ix', 'p', 'o', 'bad', 'rowStep', 'pixStep']);
  const v = locals(f, 'v128', ['t', 'd', 'found', 'eq', 'nanBefore', 'value']);
  const { get, set, i32 } = op;
  const load = (base: number, offset: number): Code => [...get(base), ...get(offset), ...op.add, ...op.v128Load];
  /** lo = max(start, 0), hi = min(start + size, limit). */
  const clamp = (start: number, size: number, limit: number, lo: number, hi: number): Code => [
    ...get(start), ...i32(0), ...get(start), ...i32(0), ...op.gtS, ...op.select, ...set(lo),
    ...get(start), ...get(size), ...op.add, ...get(limit), ...get(start), ...get(size), ...op.add, ...get(limit), ...op.ltS, ...op.select, ...set(hi),
  ];
  const tap: Code = [
    ...load(a.x, l.p), ...set(v.value),
    ...get(v.value), ...get(v.t), ...op.f32x4Eq, ...set(v.eq),
    // A NaN before this lane's match: the scalar search gives up there.
    ...get(v.nanBefore), ...get(v.value), ...get(v.value), ...op.f32x4Ne, ...get(v.found), ...op.v128AndNot, ...op.v128Or, ...set(v.nanBefore),
    // dx[p] += dy where this is the lane's first match (adding +0 elsewhere leaves dx as it is).
    ...get(a.dx), ...get(l.p), ...op.add,
    ...load(a.dx, l.p), ...get(v.d), ...get(v.eq), ...get(v.found), ...op.v128AndNot, ...op.v128And, ...op.f32x4Add,
    ...op.v128Store,
    ...get(v.found), ...get(v.eq), ...op.v128Or, ...set(v.found),
  ];
  const channels: Code = [
    ...get(a.y), ...get(l.o), ...op.add, ...get(l.kb), ...op.add, ...op.v128Load, ...set(v.t),
    ...get(a.dy), ...get(l.o), ...op.add, ...get(l.kb), ...op.add, ...op.v128Load, ...set(v.d),
    ...op.v128Zero, ...set(v.found),
    ...op.v128Zero, ...set(v.nanBefore),
    ...get(l.first), ...get(l.kb), ...op.add, ...set(l.row),
    ...forLoop(l.iy, get(l.yMin), get(l.yMax), i32(1), [
      ...get(l.row), ...set(l.p),
      ...forLoop(l.ix, get(l.xMin), get(l.xMax), i32(1), [...tap, ...get(l.p), ...get(l.pixStep), ...op.add, ...set(l.p)]),
      ...get(l.row), ...get(l.rowStep), ...op.add, ...set(l.row),
    ]),
    // Lanes the scalar search answers otherwise: no match, a NaN first, or y = -Infinity.
    ...get(v.found), ...op.i32x4AllTrue, ...op.eqz,
    ...get(v.nanBefore), ...op.v128AnyTrue, ...op.or,
    ...get(v.t), ...op.f32x4Splat(-Infinity), ...op.f32x4Eq, ...op.v128AnyTrue, ...op.or,
    ...op.if([...get(l.bad), ...i32(1), ...op.add, ...set(l.bad)]),
  ];
  f.emit(
    ...get(a.ch), ...i32(4), ...op.mul, ...set(l.pixStep),
    ...get(a.w), ...get(l.pixStep), ...op.mul, ...set(l.rowStep),
    ...forLoop(l.b, i32(0), get(a.n), i32(1),
      forLoop(l.oy, i32(0), get(a.oh), i32(1), [
        ...get(l.oy), ...get(a.sh), ...op.mul, ...get(a.top), ...op.sub, ...set(l.y0),
        ...clamp(l.y0, a.kh, a.h, l.yMin, l.yMax),
        ...forLoop(l.ox, i32(0), get(a.ow), i32(1), [
          ...get(l.ox), ...get(a.sw), ...op.mul, ...get(a.left), ...op.sub, ...set(l.x0),
          ...clamp(l.x0, a.kw, a.w, l.xMin, l.xMax),
          ...get(l.yMin), ...get(l.yMax), ...op.ltS, ...get(l.xMin), ...get(l.xMax), ...op.ltS, ...op.and,
          ...op.if([
            ...get(l.b), ...get(a.h), ...op.mul, ...get(l.yMin), ...op.add, ...get(a.w), ...op.mul, ...get(l.xMin), ...op.add, ...get(l.pixStep), ...op.mul, ...set(l.first),
            ...forLoop(l.kb, i32(0), get(l.pixStep), i32(16), channels),
          ]),
          ...get(l.o), ...get(l.pixStep), ...op.add, ...set(l.o),
        ]),
      ])),
    ...get(l.bad),
  );
  return f;
}

export const MAX_POOL_GRAD_WASM = kernelModule([maxPoolGradFunc()], MAX_BYTES / PAGE + 1);

interface Kernel {
  maxPoolGrad(...args: number[]): number;
}

let kernel: { exports: Kernel; memory: LocalMemory } | null | undefined;

/** The instantiated kernel, or null where this engine has no WebAssembly SIMD. */
function compiled(): { exports: Kernel; memory: LocalMemory } | null {
  if (kernel === undefined) kernel = instantiateKernels<Kernel>(MAX_POOL_GRAD_WASM, 1, MAX_BYTES / PAGE + 1);
  return kernel;
}

/** Whether this JavaScript engine runs the SIMD kernel (WebAssembly SIMD: Node 16.4 and later). */
export function maxPoolGradSimdAvailable(): boolean {
  return compiled() !== null;
}

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
    const bad = k.exports.maxPoolGrad(0, yAt, dyAt, dxAt, m, h, w, ch, oh, ow, c.strideHeight, c.strideWidth, c.filterHeight, c.filterWidth, p.top, p.left);
    if (bad !== 0) return false;
    out.set(dx, from * xImage);
  }
  return true;
}
