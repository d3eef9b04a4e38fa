import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { free, run, type ConvGradAttrs, type WasmBackend } from './engine.js';

/**
 * Kernels that training needs and tfjs-backend-wasm lacks, built from kernels wasm has.
 * They call the wasm kernel functions directly (not tf ops), as wasm's own composite
 * kernels do, and free every intermediate they make.
 */

interface BackpropFilterAttrs extends ConvGradAttrs {
  filterShape: [number, number, number, number];
}

/**
 * dW[kh,kw,ci,co] = sum over n,oh,ow of x[n, oh*s + kh - pt, ow*s + kw - pl, ci] * dy[n,oh,ow,co].
 * That is a convolution of x (channels as batch, batch as channels) with dy as the filter,
 * with dilation equal to the forward stride. 1x1 kernels are a plain matrix product.
 */
export const conv2DBackpropFilterKernel: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as BackpropFilterAttrs;
  const be = backend as unknown as WasmBackend;
  if (dataFormat !== 'NHWC') throw new Error(`wasm Conv2DBackpropFilter supports NHWC only, got ${dataFormat}`);
  const conv = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const [n, h, w, ci] = x.shape as [number, number, number, number];
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw } = conv;
  const { filterHeight: kh, filterWidth: kw, outChannels: co } = conv;
  const pt = conv.padInfo.top;
  const pl = conv.padInfo.left;

  // Bottom/right padding that makes the output exactly kh x kw; negative means rows of x that
  // the forward convolution never read, which we crop instead.
  const pb = kh + (oh - 1) * sh - h - pt;
  const pr = kw + (ow - 1) * sw - w - pl;
  if (kh === 1 && kw === 1 && pt === 0 && pl === 0 && pb <= 0 && pr <= 0) {
    return conv1x1BackpropFilter(be, x, dy, { n, h, w, ci, oh, ow, sh, sw, co });
  }
  let xs = x;
  const temps: TensorInfo[] = [];
  if (pb < 0 || pr < 0) {
    xs = run('Slice', be, { x }, { begin: [0, 0, 0, 0], size: [n, pb < 0 ? h + pb : h, pr < 0 ? w + pr : w, ci] });
    temps.push(xs);
  }
  const xT = run('Transpose', be, { x: xs }, { perm: [3, 1, 2, 0] }); // [ci, H, W, n]
  const dyT = run('Transpose', be, { x: dy }, { perm: [1, 2, 0, 3] }); // [oh, ow, n, co]
  temps.push(xT, dyT);
  const explicit: tf.backend_util.ExplicitPadding = [
    [0, 0],
    [pt, Math.max(pb, 0)],
    [pl, Math.max(pr, 0)],
    [0, 0],
  ];
  const r = run('Conv2D', be, { x: xT, filter: dyT }, {
    strides: [1, 1],
    pad: explicit,
    dataFormat: 'NHWC',
    dilations: [sh, sw],
    dimRoundingMode: 'floor',
  } as unknown as NamedAttrMap); // [ci, kh, kw, co]
  temps.push(r);
  const out = run('Transpose', be, { x: r }, { perm: [1, 2, 0, 3] });
  free(be, ...temps);
  return out;
};

/**
 * x[:, ::sh, ::sw, :] cropped to [n, oh, ow, ci], as channel-row block copies (wasm's
 * StridedSlice indexes element by element: 77 ms per call at 224 px).
 */
function sampleGrid(be: WasmBackend, x: TensorInfo, d: { n: number; h: number; w: number; ci: number; oh: number; ow: number; sh: number; sw: number }): TensorInfo {
  const out = be.makeOutput([d.n, d.oh, d.ow, d.ci], 'float32');
  // Views after the allocation: growing the wasm heap detaches earlier views.
  const src = be.typedArrayFromHeap(x);
  const dst = be.typedArrayFromHeap(out);
  let o = 0;
  for (let b = 0; b < d.n; b++) {
    for (let i = 0; i < d.oh; i++) {
      const row = (b * d.h + i * d.sh) * d.w;
      for (let j = 0; j < d.ow; j++, o += d.ci) {
        const at = (row + j * d.sw) * d.ci;
        dst.set(src.subarray(at, at + d.ci), o);
      }
    }
  }
  return out;
}

function conv1x1BackpropFilter(
  be: WasmBackend,
  x: TensorInfo,
  dy: TensorInfo,
  d: { n: number; h: number; w: number; ci: number; oh: number; ow: number; sh: number; sw: number; co: number },
): TensorInfo {
  const temps: TensorInfo[] = [];
  let xs = x;
  if (d.sh !== 1 || d.sw !== 1 || d.oh !== d.h || d.ow !== d.w) {
    xs = sampleGrid(be, x, d);
    temps.push(xs);
  }
  const rows = d.n * d.oh * d.ow;
  const a = run('Reshape', be, { x: xs }, { shape: [1, rows, d.ci] });
  const b = run('Reshape', be, { x: dy }, { shape: [1, rows, d.co] });
  const m = run('BatchMatMul', be, { a, b }, { transposeA: true, transposeB: false });
  temps.push(a, b, m);
  const out = run('Reshape', be, { x: m }, { shape: [1, 1, d.ci, d.co] });
  free(be, ...temps);
  return out;
}

const WASM_TRAINING_KERNELS: KernelConfig[] = [
  { kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilterKernel },
];

/** Registers fgh's wasm training kernels (idempotent; never replaces a kernel wasm has). */
export function registerWasmTrainingKernels(): string[] {
  const added: string[] = [];
  for (const k of WASM_TRAINING_KERNELS) {
    if (!tf.getKernel(k.kernelName, 'wasm')) {
      tf.registerKernel(k);
      added.push(k.kernelName);
    }
  }
  return added;
}

/** The kernel names fgh adds to wasm, for `fgh doctor`. */
export function wasmTrainingKernelNames(): string[] {
  return WASM_TRAINING_KERNELS.map((k) => k.kernelName);
}
