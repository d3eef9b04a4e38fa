import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { run, type ConvGradAttrs, type WasmBackend } from './engine.js';

/**
 * Conv2DBackpropInput for wasm as one forward Conv2D (XNNPACK): tfjs-backend-wasm's own kernel is
 * a scalar loop that took 10 of the 27 s of an sRLH training step. The input gradient is the
 * correlation of dy, dilated by the stride, with the spatially flipped filter whose in/out
 * channels are swapped:
 *   dx[n, y, x, ci] = sum dyd[n, y + pt - (kh-1) + i, x + pl - (kw-1) + j, co] * W[kh-1-i, kw-1-j, ci, co].
 */

interface Attrs extends ConvGradAttrs {
  inputShape: [number, number, number, number];
}

/** Inserts s-1 zeros after every row (axis 1) of [n, h, rest]: [n, h*s, rest]. */
function dilateRows(be: WasmBackend, x: TensorInfo, n: number, h: number, rest: number, s: number, temps: TensorInfo[]): TensorInfo {
  const a = run('Reshape', be, { x }, { shape: [n * h, 1, rest] });
  const p = run('PadV2', be, { x: a }, { paddings: [[0, 0], [0, s - 1], [0, 0]], constantValue: 0 });
  const r = run('Reshape', be, { x: p }, { shape: [n, h * s, rest] });
  temps.push(a, p);
  return r;
}

/**
 * Reverses the kh x kw taps of a [kh, kw, a, b] filter: flipping both spatial axes reverses the
 * tap index, so it is kh*kw block copies. (wasm's Reverse kernel indexes element by element:
 * 17 ms for a 3x3x512x512 filter, a third of a training step at 48 px.)
 */
function flipTaps(be: WasmBackend, x: TensorInfo, taps: number): TensorInfo {
  const out = be.makeOutput([...x.shape], 'float32');
  // Views after the allocation: growing the wasm heap detaches earlier views.
  const src = be.typedArrayFromHeap(x);
  const dst = be.typedArrayFromHeap(out);
  const block = src.length / taps;
  for (let k = 0; k < taps; k++) dst.set(src.subarray((taps - 1 - k) * block, (taps - k) * block), k * block);
  return out;
}

export function makeConv2DBackpropInputKernel(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as Attrs;
    if (dataFormat !== 'NHWC') return fallback(args);
    const be = backend as unknown as WasmBackend;
    const conv = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as [number, number, number, number], strides, 1, pad, dimRoundingMode);
    const [n, h, w, ci] = inputShape;
    const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw, outChannels: co } = conv;
    const pt = conv.padInfo.top;
    const pl = conv.padInfo.left;
    if (pt > kh - 1 || pl > kw - 1) return fallback(args);
    const temps: TensorInfo[] = [];
    // Dilate dy: rows, then columns (as rows of the transposed view), with reshapes and pads only.
    let d = dy;
    let dh = oh;
    let dw = ow;
    if (sh > 1) {
      d = dilateRows(be, d, n, oh, ow * co, sh, temps);
      temps.push(d);
      dh = oh * sh;
    }
    if (sw > 1) {
      d = dilateRows(be, d, n * dh, ow, co, sw, temps);
      temps.push(d);
      dw = ow * sw;
    }
    const d4 = run('Reshape', be, { x: d }, { shape: [n, dh, dw, co] });
    temps.push(d4);
    // Padding so that the valid correlation has exactly h x w outputs; negative = crop at the end.
    const top = kh - 1 - pt;
    const left = kw - 1 - pl;
    const bottom = h + kh - 1 - dh - top;
    const right = w + kw - 1 - dw - left;
    let src = d4;
    if (bottom < 0 || right < 0) {
      src = run('Slice', be, { x: d4 }, { begin: [0, 0, 0, 0], size: [n, dh + Math.min(bottom, 0), dw + Math.min(right, 0), co] });
      temps.push(src);
    }
    // Filter [kh, kw, ci, co] -> [kh, kw, co, ci], flipped in space.
    const swapped = run('Transpose', be, { x: filter }, { perm: [0, 1, 3, 2] });
    const wT = flipTaps(be, swapped, kh * kw);
    temps.push(swapped, wT);
    const out = run('Conv2D', be, { x: src, filter: wT }, {
      strides: [1, 1],
      pad: [[0, 0], [top, Math.max(bottom, 0)], [left, Math.max(right, 0)], [0, 0]],
      dataFormat: 'NHWC',
      dilations: [1, 1],
      dimRoundingMode: 'floor',
    } as unknown as NamedAttrMap);
    for (const t of temps) if (t !== dy) be.disposeData(t.dataId);
    if (out.shape[1] !== h || out.shape[2] !== w || out.shape[3] !== ci) throw new Error(`Conv2DBackpropInput: got [${out.shape}], expected [${n},${h},${w},${ci}]`);
    return out;
  };
}

/** Replaces wasm's Conv2DBackpropInput with the Conv2D form (idempotent). */
export function registerFastConv2DBackpropInput(): boolean {
  const existing = tf.getKernel('Conv2DBackpropInput', 'wasm');
  if (!existing || (existing.kernelFunc as { fgh?: boolean }).fgh) return false;
  const fallback = existing.kernelFunc;
  tf.unregisterKernel('Conv2DBackpropInput', 'wasm');
  const k = makeConv2DBackpropInputKernel(fallback);
  (k as { fgh?: boolean }).fgh = true;
  tf.registerKernel({ kernelName: 'Conv2DBackpropInput', backendName: 'wasm', kernelFunc: k });
  return true;
}
