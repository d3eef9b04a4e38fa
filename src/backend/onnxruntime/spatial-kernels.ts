import * as tf from '@tensorflow/tfjs-core';
import { ints, int, type GraphBuilder } from '../../../exporters/graph.js';
import { backpropInputBlock, conv2DBackpropFilterGraph, conv2DBackpropInputGraph, conv2DGraph, convBlock, fillShiftedFilterGrad, nchwcBlock, nchwcMaxPool, shiftedFilterGradDims, shiftedFilterGradGraph, usesShiftedFilterGrad, type Conv2DInfo } from './conv.js';
import { floats, output, run, size, type Delegate } from './delegate.js';
import { maxPoolGradSimd } from '../simd/max-pool-grad.js';

/** Convolutions, matrix products and pooling as onnxruntime kernels (graphs in conv.ts for convolutions). */

interface ConvAttrs {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function convInfo(xShape: readonly number[], filterShape: readonly number[], a: ConvAttrs): Conv2DInfo | null {
  if (a.dataFormat !== 'NHWC') return null;
  const c = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    a.strides,
    a.dilations ?? 1,
    a.pad,
    a.dimRoundingMode,
  );
  const p = c.padInfo;
  if (p.top < 0 || p.left < 0 || p.bottom < 0 || p.right < 0) return null;
  // ONNX's output size must be tfjs's: floor((in + pads - effective kernel) / stride) + 1.
  const oh = Math.floor((c.inHeight + p.top + p.bottom - c.effectiveFilterHeight) / c.strideHeight) + 1;
  const ow = Math.floor((c.inWidth + p.left + p.right - c.effectiveFilterWidth) / c.strideWidth) + 1;
  return oh === c.outHeight && ow === c.outWidth ? c : null;
}

function convKey(op: string, c: Conv2DInfo, extra = ''): string {
  const p = c.padInfo;
  return `${op}:${c.batchSize}x${c.inHeight}x${c.inWidth}x${c.inChannels}:k${c.filterHeight}x${c.filterWidth}x${c.outChannels}:s${c.strideHeight},${c.strideWidth}:d${c.dilationHeight},${c.dilationWidth}:p${p.top},${p.left},${p.bottom},${p.right}${extra}`;
}

const conv2D: Delegate = ({ x, filter }, attrs, store) => {
  const c = convInfo(x!.shape, filter!.shape, attrs as unknown as ConvAttrs);
  const ins = c && floats(store, x!, filter!);
  if (!c || !ins) return null;
  const block = convBlock(c, nchwcBlock(store.engine));
  return run(store, convKey('Conv2D', c, `:b${block}`), (g) => conv2DGraph(g, c, {}, block), ins);
};

const fusedConv2D: Delegate = ({ x, filter, bias, preluActivationWeights }, attrs, store) => {
  const activation = (attrs as { activation?: string }).activation ?? 'linear';
  if (preluActivationWeights || (activation !== 'linear' && activation !== 'relu')) return null;
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== filter!.shape[3])) return null;
  const c = convInfo(x!.shape, filter!.shape, attrs as unknown as ConvAttrs);
  const ins = c && floats(store, ...(bias ? [x!, filter!, bias] : [x!, filter!]));
  if (!c || !ins) return null;
  const opts = { bias: !!bias, relu: activation === 'relu' };
  const block = convBlock(c, nchwcBlock(store.engine));
  return run(store, convKey('FusedConv2D', c, `:${opts.bias ? 'b' : ''}${activation}:b${block}`), (g) => conv2DGraph(g, c, opts, block), ins);
};

const conv2DBackpropInput: Delegate = ({ dy, filter }, attrs, store) => {
  const a = attrs as unknown as ConvAttrs & { inputShape: number[] };
  const c = convInfo(a.inputShape, filter!.shape, { ...a, dilations: 1 });
  const ins = c && floats(store, dy!, filter!);
  if (!c || !ins) return null;
  const block = backpropInputBlock(c, nchwcBlock(store.engine));
  return run(store, convKey('Conv2DBackpropInput', c, `:b${block}`), (g) => conv2DBackpropInputGraph(g, c, block), ins);
};

const conv2DBackpropFilter: Delegate = ({ x, dy }, attrs, store) => {
  const a = attrs as unknown as ConvAttrs & { filterShape: number[] };
  const c = convInfo(x!.shape, a.filterShape, { ...a, dilations: 1 });
  const ins = c && floats(store, x!, dy!);
  if (!c || !ins) return null;
  if (usesShiftedFilterGrad(c)) {
    const { rows, wp, xLength } = shiftedFilterGradDims(c);
    const xp = store.engine.allocate(xLength);
    const dyp = store.engine.allocate(rows * c.outChannels);
    try {
      fillShiftedFilterGrad(c, ins[0]!.data as Float32Array, ins[1]!.data as Float32Array, xp, dyp);
      const views = [{ data: dyp, shape: [rows, c.outChannels] }];
      for (let i = 0; i < c.filterHeight; i++) {
        for (let j = 0; j < c.filterWidth; j++) {
          const at = (i * wp + j) * c.inChannels;
          views.push({ data: xp.subarray(at, at + rows * c.inChannels), shape: [rows, c.inChannels] });
        }
      }
      return run(store, convKey('Conv2DBackpropFilter', c, ':shifted'), (g) => shiftedFilterGradGraph(g, c), views);
    } finally {
      store.engine.recycle(xp);
      store.engine.recycle(dyp);
    }
  }
  return run(store, convKey('Conv2DBackpropFilter', c), (g) => conv2DBackpropFilterGraph(g, c), ins);
};

/** [..., m, k] x [..., k, n] with numpy broadcasting of the batch dims, as tfjs's BatchMatMul. */
function matMulGraph(g: GraphBuilder, aShape: readonly number[], bShape: readonly number[], ta: boolean, tb: boolean, outShape: number[], bias: readonly number[] | null, relu: boolean): void {
  let a = g.input('a', 'float32', [...aShape]);
  let b = g.input('b', 'float32', [...bShape]);
  const biasIn = bias ? g.input('bias', 'float32', [...bias]) : null;
  let y: string;
  if (aShape.length === 2 && bShape.length === 2) {
    y = g.op('Gemm', biasIn ? [a, b, biasIn] : [a, b], { transA: int(ta ? 1 : 0), transB: int(tb ? 1 : 0) });
  } else {
    const swap = (rank: number): number[] => [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];
    if (ta) a = g.op('Transpose', [a], { perm: ints(swap(aShape.length)) });
    if (tb) b = g.op('Transpose', [b], { perm: ints(swap(bShape.length)) });
    y = g.op('MatMul', [a, b]);
    if (biasIn) y = g.op('Add', [y, biasIn]);
  }
  if (relu) y = g.op('Relu', [y]);
  output(g, y, outShape);
}

function matMulOut(aShape: readonly number[], bShape: readonly number[], ta: boolean, tb: boolean): number[] {
  const m = aShape[aShape.length - (ta ? 1 : 2)]!;
  const n = bShape[bShape.length - (tb ? 2 : 1)]!;
  const batch = tf.backend_util.assertAndGetBroadcastShape(aShape.slice(0, -2), bShape.slice(0, -2));
  return [...batch, m, n];
}

const MIN_MATMUL_FLOPS = 1 << 18;

const batchMatMul: Delegate = ({ a, b }, attrs, store) => {
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  const out = matMulOut(a!.shape, b!.shape, transposeA, transposeB);
  const k = a!.shape[a!.shape.length - (transposeA ? 2 : 1)]!;
  if (size(out) * k < MIN_MATMUL_FLOPS) return null;
  const ins = floats(store, a!, b!);
  if (!ins) return null;
  const key = `BatchMatMul:${a!.shape}:${b!.shape}:${transposeA ? 1 : 0}${transposeB ? 1 : 0}`;
  return run(store, key, (g) => matMulGraph(g, a!.shape, b!.shape, transposeA, transposeB, out, null, false), ins);
};

const fusedMatMul: Delegate = ({ a, b, bias, preluActivationWeights }, attrs, store) => {
  const { transposeA, transposeB, activation } = attrs as { transposeA: boolean; transposeB: boolean; activation?: string };
  const act = activation ?? 'linear';
  if (preluActivationWeights || (act !== 'linear' && act !== 'relu')) return null;
  const out = matMulOut(a!.shape, b!.shape, transposeA, transposeB);
  const ins = floats(store, ...(bias ? [a!, b!, bias] : [a!, b!]));
  if (!ins) return null;
  const key = `_FusedMatMul:${a!.shape}:${b!.shape}:${transposeA ? 1 : 0}${transposeB ? 1 : 0}:${bias ? bias.shape : '-'}:${act}`;
  return run(store, key, (g) => matMulGraph(g, a!.shape, b!.shape, transposeA, transposeB, out, bias ? bias.shape : null, act === 'relu'), ins);
};

export interface PoolAttrs {
  filterSize: number | [number, number];
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

export function poolInfo(xShape: readonly number[], a: PoolAttrs): tf.backend_util.Conv2DInfo | null {
  const c = tf.backend_util.computePool2DInfo(xShape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
  const p = c.padInfo;
  const oh = Math.floor((c.inHeight + p.top + p.bottom - c.filterHeight) / c.strideHeight) + 1;
  const ow = Math.floor((c.inWidth + p.left + p.right - c.filterWidth) / c.strideWidth) + 1;
  return oh === c.outHeight && ow === c.outWidth && p.top >= 0 && p.left >= 0 && p.bottom >= 0 && p.right >= 0 ? c : null;
}

function poolAttrs(c: tf.backend_util.Conv2DInfo): Record<string, ReturnType<typeof ints>> {
  const p = c.padInfo;
  return { kernel_shape: ints([c.filterHeight, c.filterWidth]), strides: ints([c.strideHeight, c.strideWidth]), pads: ints([p.top, p.left, p.bottom, p.right]) };
}

const maxPool: Delegate = ({ x }, attrs, store) => {
  const c = poolInfo(x!.shape, attrs as unknown as PoolAttrs);
  const ins = c && floats(store, x!);
  if (!c || !ins) return null;
  const block = nchwcBlock(store.engine);
  const blocked = block > 0 && c.inChannels % block === 0;
  return run(store, convKey('MaxPool', c, `:b${blocked ? block : 0}`), (g) => {
    const xIn = g.input('x', 'float32', [...x!.shape]);
    const y = blocked
      ? nchwcMaxPool(g, xIn, c.inChannels, poolAttrs(c))
      : g.op('Transpose', [g.op('MaxPool', [g.op('Transpose', [xIn], { perm: ints([0, 3, 1, 2]) })], poolAttrs(c))], { perm: ints([0, 2, 3, 1]) });
    output(g, y, [c.batchSize, c.outHeight, c.outWidth, c.outChannels]);
  }, ins);
};

/**
 * dx of a max pool, in JavaScript over the NHWC arrays (the reference and fallback of the SIMD
 * kernel in src/backend/simd/max-pool-grad.ts, which the delegate tries first): each dy goes to
 * the first maximum of its window in row-major order (tfjs's and PyTorch's choice among ties, which ReLU outputs have
 * plenty of), and the contributions to one input are added in float32 in output order, as
 * PyTorch's CPU kernel adds them (tfjs sums them in float64). The forward's output `y` is each
 * window's maximum, so the search stops at the first tap equal to it (half the window on
 * average, and no running maximum to keep). A window whose `y` is NaN or -Infinity or is not
 * found, or where the search meets a NaN first, is searched as tfjs does (NaN and -Infinity are
 * no maximum): onnxruntime's MaxPool can return the maximum of the values after a NaN. It timed level with
 * onnxruntime's MaxPool-with-indices and ScatterElements on the ResNet stem before that, without
 * their int64 index tensor and two transposes.
 */
export function maxPoolGradNhwc(d: Float32Array, x: Float32Array, y: Float32Array, c: tf.backend_util.Conv2DInfo, out?: Float32Array): Float32Array {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ch, outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = c;
  const { top, left } = c.padInfo;
  const dx = out ? out.fill(0) : new Float32Array(n * h * w * ch);
  if (dx.length !== n * h * w * ch) throw new Error(`maxPoolGradNhwc: output of ${dx.length} elements for ${n * h * w * ch}`);
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < oh; oy++) {
      const y0 = oy * sh - top;
      const [yMin, yMax] = [Math.max(0, y0), Math.min(h, y0 + kh)];
      for (let ox = 0; ox < ow; ox++) {
        const x0 = ox * sw - left;
        const [xMin, xMax] = [Math.max(0, x0), Math.min(w, x0 + kw)];
        if (yMin >= yMax || xMin >= xMax) continue;
        const o = ((b * oh + oy) * ow + ox) * ch;
        const rowStep = w * ch;
        const first = ((b * h + yMin) * w + xMin) * ch;
        for (let k = 0; k < ch; k++) {
          const target = y[o + k]!;
          let at = -1;
          if (target > -Infinity) {
            search: for (let row = first + k, iy = yMin; iy < yMax; iy++, row += rowStep) {
              for (let i = row, ix = xMin; ix < xMax; ix++, i += ch) {
                const v = x[i]!;
                if (v === target) {
                  at = i;
                  break search;
                }
                if (v !== v) break search; // NaN: onnxruntime's y may not be tfjs's maximum
              }
            }
          }
          if (at < 0) at = firstMaximum(x, first + k, yMax - yMin, xMax - xMin, rowStep, ch);
          if (at >= 0) dx[at] += d[o + k]!;
        }
      }
    }
  }
  return dx;
}

/** The index of the first maximum of one channel's window, NaN and -Infinity excluded; -1 if none. */
function firstMaximum(x: Float32Array, start: number, rows: number, cols: number, rowStep: number, ch: number): number {
  let best = -Infinity;
  let at = -1;
  for (let r = 0, row = start; r < rows; r++, row += rowStep) {
    for (let j = 0, i = row; j < cols; j++, i += ch) {
      if (x[i]! > best) {
        best = x[i]!;
        at = i;
      }
    }
  }
  return at;
}

const maxPoolGrad: Delegate = ({ dy, input, output }, attrs, store) => {
  const c = poolInfo(input!.shape, attrs as unknown as PoolAttrs);
  const ins = c && floats(store, dy!, input!, output!);
  if (!c || !ins) return null;
  const [d, x, y] = ins.map((t) => t.data as Float32Array) as [Float32Array, Float32Array, Float32Array];
  const out = store.engine.allocate(c.batchSize * c.inHeight * c.inWidth * c.inChannels);
  if (!maxPoolGradSimd(d, x, y, c, out)) maxPoolGradNhwc(d, x, y, c, out);
  return store.store([c.batchSize, c.inHeight, c.inWidth, c.inChannels], 'float32', out);
};

export const SPATIAL_DELEGATES: Record<string, Delegate> = {
  Conv2D: conv2D,
  FusedConv2D: fusedConv2D,
  Conv2DBackpropInput: conv2DBackpropInput,
  Conv2DBackpropFilter: conv2DBackpropFilter,
  BatchMatMul: batchMatMul,
  _FusedMatMul: fusedMatMul,
  MaxPool: maxPool,
  MaxPoolGrad: maxPoolGrad,
};
