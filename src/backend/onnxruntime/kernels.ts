import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { int, ints, type GraphBuilder } from '../../../exporters/graph.js';
import { conv2DBackpropFilterGraph, conv2DBackpropInputGraph, conv2DGraph, type Conv2DInfo } from './conv.js';
import type { EngineTensor, OrtEngine } from './engine.js';

/**
 * tfjs kernels computed by onnxruntime: each reads its inputs' arrays from the backend's store,
 * runs the graph cached for its signature and stores the result arrays as they come back (no
 * copy). A kernel returns null where its case is not delegated (other dtypes, NCHW, tensors
 * too small to repay a call), and the backend then runs tfjs's own cpu kernel.
 */

/** What a delegated kernel needs of the backend: array access and a place for results. */
export interface ArrayStore {
  readonly engine: OrtEngine;
  values(t: TensorInfo): Float32Array | Int32Array | Uint8Array | null;
  store(shape: readonly number[], dtype: 'float32' | 'bool', data: Float32Array | Uint8Array): TensorInfo;
}

type Delegate = (inputs: Record<string, TensorInfo | undefined>, attrs: NamedAttrMap, store: ArrayStore) => TensorInfo | null;

/** Elementwise work below this many elements stays in JavaScript: a call costs tens of microseconds. */
export const MIN_DELEGATED_ELEMENTS = 1 << 14;

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function floats(store: ArrayStore, ...ts: TensorInfo[]): EngineTensor[] | null {
  const out: EngineTensor[] = [];
  for (const t of ts) {
    if (t.dtype !== 'float32') return null;
    const v = store.values(t);
    if (!(v instanceof Float32Array)) return null;
    out.push({ data: v, shape: t.shape });
  }
  return out;
}

function run(store: ArrayStore, key: string, recipe: (g: GraphBuilder) => void, ins: EngineTensor[]): TensorInfo {
  const [y] = store.engine.run(key, recipe, ins);
  if (y?.data instanceof Float32Array) return store.store(y.shape, 'float32', y.data);
  if (y?.data instanceof Uint8Array) return store.store(y.shape, 'bool', y.data);
  throw new Error(`onnxruntime kernel ${key} returned no float32 or bool output`);
}

// ---------------------------------------------------------------------------------------------
// Convolutions and matrix products

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
  return run(store, convKey('Conv2D', c), (g) => conv2DGraph(g, c), ins);
};

const fusedConv2D: Delegate = ({ x, filter, bias, preluActivationWeights }, attrs, store) => {
  const activation = (attrs as { activation?: string }).activation ?? 'linear';
  if (preluActivationWeights || (activation !== 'linear' && activation !== 'relu')) return null;
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== filter!.shape[3])) return null;
  const c = convInfo(x!.shape, filter!.shape, attrs as unknown as ConvAttrs);
  const ins = c && floats(store, ...(bias ? [x!, filter!, bias] : [x!, filter!]));
  if (!c || !ins) return null;
  const opts = { bias: !!bias, relu: activation === 'relu' };
  return run(store, convKey('FusedConv2D', c, `:${opts.bias ? 'b' : ''}${activation}`), (g) => conv2DGraph(g, c, opts), ins);
};

const conv2DBackpropInput: Delegate = ({ dy, filter }, attrs, store) => {
  const a = attrs as unknown as ConvAttrs & { inputShape: number[] };
  const c = convInfo(a.inputShape, filter!.shape, { ...a, dilations: 1 });
  const ins = c && floats(store, dy!, filter!);
  if (!c || !ins) return null;
  return run(store, convKey('Conv2DBackpropInput', c), (g) => conv2DBackpropInputGraph(g, c), ins);
};

const conv2DBackpropFilter: Delegate = ({ x, dy }, attrs, store) => {
  const a = attrs as unknown as ConvAttrs & { filterShape: number[] };
  const c = convInfo(x!.shape, a.filterShape, { ...a, dilations: 1 });
  const ins = c && floats(store, x!, dy!);
  if (!c || !ins) return null;
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
  g.rename(y, 'y');
  g.output('y', 'float32', outShape);
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

// ---------------------------------------------------------------------------------------------
// Elementwise, reductions, layout

type Unary = (g: GraphBuilder, x: string, attrs: NamedAttrMap) => string;

const UNARY: Record<string, Unary> = {
  Relu: (g, x) => g.op('Relu', [x]),
  Exp: (g, x) => g.op('Exp', [x]),
  Log: (g, x) => g.op('Log', [x]),
  Sqrt: (g, x) => g.op('Sqrt', [x]),
  Rsqrt: (g, x) => g.op('Reciprocal', [g.op('Sqrt', [x])]),
  Reciprocal: (g, x) => g.op('Reciprocal', [x]),
  Tanh: (g, x) => g.op('Tanh', [x]),
  Sigmoid: (g, x) => g.op('Sigmoid', [x]),
  Neg: (g, x) => g.op('Neg', [x]),
  Abs: (g, x) => g.op('Abs', [x]),
  Square: (g, x) => g.op('Mul', [x, x]),
  // (x > 0) - (x < 0): the sign of NaN is 0, as in tfjs (onnxruntime's Sign gives NaN).
  Sign: (g, x) => {
    const zero = g.floatConst('zero', [0], []);
    const cast = (b: string): string => g.op('Cast', [b], { to: int(1) });
    return g.op('Sub', [cast(g.op('Greater', [x, zero])), cast(g.op('Less', [x, zero]))]);
  },
  // x > 0 is 1, anything else alpha. onnxruntime's Where is single-threaded (6x slower than a
  // cast), so this is a cast and an affine map; unlike tfjs, NaN gives alpha, not NaN (either
  // way the run has diverged).
  Step: (g, x, attrs) => {
    const alpha = Number((attrs as { alpha?: number }).alpha ?? 0);
    const positive = g.op('Cast', [g.op('Greater', [x, g.floatConst('zero', [0], [])])], { to: int(1) });
    return alpha === 0 ? positive : g.op('Add', [g.op('Mul', [positive, g.floatConst('span', [1 - alpha], [])]), g.floatConst('alpha', [alpha], [])]);
  },
};

type Binary = (g: GraphBuilder, a: string, b: string) => string;

const BINARY: Record<string, Binary> = {
  Add: (g, a, b) => g.op('Add', [a, b]),
  Sub: (g, a, b) => g.op('Sub', [a, b]),
  Multiply: (g, a, b) => g.op('Mul', [a, b]),
  RealDiv: (g, a, b) => g.op('Div', [a, b]),
  Maximum: (g, a, b) => g.op('Max', [a, b]),
  Minimum: (g, a, b) => g.op('Min', [a, b]),
  SquaredDifference: (g, a, b) => {
    const d = g.op('Sub', [a, b]);
    return g.op('Mul', [d, d]);
  },
};

/** Comparisons of float32 tensors, with tfjs's broadcasting; bool results. */
const COMPARE: Record<string, Binary> = {
  Greater: (g, a, b) => g.op('Greater', [a, b]),
  GreaterEqual: (g, a, b) => g.op('GreaterOrEqual', [a, b]),
  Less: (g, a, b) => g.op('Less', [a, b]),
  LessEqual: (g, a, b) => g.op('LessOrEqual', [a, b]),
  Equal: (g, a, b) => g.op('Equal', [a, b]),
};

function unaryDelegate(name: string, f: Unary): Delegate {
  return ({ x }, attrs, store) => {
    if (size(x!.shape) < MIN_DELEGATED_ELEMENTS) return null;
    const ins = floats(store, x!);
    if (!ins) return null;
    const key = `${name}:${x!.shape}:${JSON.stringify(attrs)}`;
    return run(store, key, (g) => {
      const y = f(g, g.input('x', 'float32', [...x!.shape]), attrs);
      g.rename(y, 'y');
      g.output('y', 'float32', [...x!.shape]);
    }, ins);
  };
}

function binaryDelegate(name: string, f: Binary, outType: 'float32' | 'bool' = 'float32'): Delegate {
  return ({ a, b }, _attrs, store) => {
    const out = tf.backend_util.assertAndGetBroadcastShape(a!.shape, b!.shape);
    if (size(out) < MIN_DELEGATED_ELEMENTS) return null;
    const ins = floats(store, a!, b!);
    if (!ins) return null;
    return run(store, `${name}:${a!.shape}:${b!.shape}`, (g) => {
      const y = f(g, g.input('a', 'float32', [...a!.shape]), g.input('b', 'float32', [...b!.shape]));
      g.rename(y, 'y');
      g.output('y', outType, out);
    }, ins);
  };
}

/** The sum of the `rows` rows of x viewed as [rows, cols], as [1, cols]: ones(1, rows) @ x. */
export function sumLeadingRows(g: GraphBuilder, x: string, rows: number, cols: number): string {
  const ones = g.floatConst('ones', new Float32Array(rows).fill(1), [1, rows]);
  return g.op('MatMul', [ones, g.op('Reshape', [x, g.int64Const('rows', [rows, cols])])]);
}

const REDUCE: Record<string, { op: string; axisAttr: string }> = {
  Sum: { op: 'ReduceSum', axisAttr: 'axis' },
  Mean: { op: 'ReduceMean', axisAttr: 'axis' },
  Max: { op: 'ReduceMax', axisAttr: 'reductionIndices' },
  Min: { op: 'ReduceMin', axisAttr: 'axis' },
};

function reduceDelegate(name: string, spec: { op: string; axisAttr: string }): Delegate {
  return ({ x }, attrs, store) => {
    if (size(x!.shape) < MIN_DELEGATED_ELEMENTS) return null;
    const raw = (attrs as Record<string, number | number[]>)[spec.axisAttr]!;
    const axes = tf.util.parseAxisParam(raw, x!.shape);
    if (axes.length === 0) return null;
    const keepDims = !!(attrs as { keepDims?: boolean }).keepDims;
    const ins = floats(store, x!);
    if (!ins) return null;
    const [reduced] = tf.backend_util.computeOutAndReduceShapes(x!.shape, axes);
    const out = keepDims ? x!.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : reduced;
    return run(store, `${name}:${x!.shape}:${axes}:${keepDims ? 1 : 0}`, (g) => {
      const xin = g.input('x', 'float32', [...x!.shape]);
      const keep = int(keepDims ? 1 : 0);
      const leading = axes.every((a, i) => a === i) && axes.length < x!.shape.length;
      let y: string;
      if (leading && (spec.op === 'ReduceSum' || spec.op === 'ReduceMean')) {
        // Over the leading axes (batch norm's statistics, bias gradients) a sum is a GEMM with a
        // row of ones: 4-8x faster than onnxruntime's ReduceSum there.
        const rows = x!.shape.slice(0, axes.length).reduce((a, b) => a * b, 1);
        const sum = sumLeadingRows(g, xin, rows, size(x!.shape) / rows);
        y = g.op('Reshape', [spec.op === 'ReduceMean' ? g.op('Div', [sum, g.floatConst('count', [rows], [])]) : sum, g.int64Const('shape', out)]);
      } else {
        // opset 17: ReduceSum takes axes as an input, the others as an attribute.
        y = spec.op === 'ReduceSum' ? g.op('ReduceSum', [xin, g.int64Const('axes', axes)], { keepdims: keep }) : g.op(spec.op, [xin], { axes: ints(axes), keepdims: keep });
      }
      g.rename(y, 'y');
      g.output('y', 'float32', out);
    }, ins);
  };
}

const transpose: Delegate = ({ x }, attrs, store) => {
  if (size(x!.shape) < MIN_DELEGATED_ELEMENTS) return null;
  const { perm } = attrs as { perm: number[] };
  const ins = floats(store, x!);
  if (!ins) return null;
  return run(store, `Transpose:${x!.shape}:${perm}`, (g) => {
    const y = g.op('Transpose', [g.input('x', 'float32', [...x!.shape])], { perm: ints(perm) });
    g.rename(y, 'y');
    g.output('y', 'float32', perm.map((p) => x!.shape[p]!));
  }, ins);
};

/** Gradient accumulation: tfjs sums the gradients reaching a tensor from several uses. */
const addN: Delegate = (inputs, _attrs, store) => {
  const ts = Object.keys(inputs)
    .sort((p, q) => Number(p) - Number(q))
    .map((k) => inputs[k]!);
  const first = ts[0]!;
  if (size(first.shape) < MIN_DELEGATED_ELEMENTS || ts.some((t) => t.shape.join() !== first.shape.join())) return null;
  const ins = floats(store, ...ts);
  if (!ins) return null;
  return run(store, `AddN:${ts.length}:${first.shape}`, (g) => {
    const names = ts.map((_, i) => g.input(`x${i}`, 'float32', [...first.shape]));
    g.rename(g.op('Sum', names), 'y');
    g.output('y', 'float32', [...first.shape]);
  }, ins);
};

interface PoolAttrs {
  filterSize: number | [number, number];
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function poolInfo(xShape: readonly number[], a: PoolAttrs): tf.backend_util.Conv2DInfo | null {
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
  return run(store, convKey('MaxPool', c), (g) => {
    const xT = g.op('Transpose', [g.input('x', 'float32', [...x!.shape])], { perm: ints([0, 3, 1, 2]) });
    const y = g.op('Transpose', [g.op('MaxPool', [xT], poolAttrs(c))], { perm: ints([0, 2, 3, 1]) });
    g.rename(y, 'y');
    g.output('y', 'float32', [c.batchSize, c.outHeight, c.outWidth, c.outChannels]);
  }, ins);
};

/**
 * dx of a max pool: each dy goes to the position of its window's maximum, found again by
 * MaxPool's index output (first maximum in scan order, as tfjs picks it), summed by a
 * scatter-add where windows overlap.
 */
const maxPoolGrad: Delegate = ({ dy, input }, attrs, store) => {
  const c = poolInfo(input!.shape, attrs as unknown as PoolAttrs);
  const ins = c && floats(store, dy!, input!);
  if (!c || !ins) return null;
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ch, outHeight: oh, outWidth: ow } = c;
  return run(store, convKey('MaxPoolGrad', c), (g) => {
    const dyIn = g.input('dy', 'float32', [n, oh, ow, ch]);
    const xT = g.op('Transpose', [g.input('x', 'float32', [n, h, w, ch])], { perm: ints([0, 3, 1, 2]) });
    const [, indices] = g.node('MaxPool', [xT], poolAttrs(c), 2);
    const flatIdx = g.op('Reshape', [indices!, g.int64Const('shape', [-1])]);
    const flatDy = g.op('Reshape', [g.op('Transpose', [dyIn], { perm: ints([0, 3, 1, 2]) }), g.int64Const('shape', [-1])]);
    const base = g.op('Expand', [g.floatConst('zero', [0], [1]), g.int64Const('shape', [n * ch * h * w])]);
    const dx = g.op('ScatterElements', [base, flatIdx, flatDy], { axis: int(0), reduction: { kind: 'string', value: 'add' } });
    const y = g.op('Transpose', [g.op('Reshape', [dx, g.int64Const('shape', [n, ch, h, w])])], { perm: ints([0, 2, 3, 1]) });
    g.rename(y, 'y');
    g.output('y', 'float32', [n, h, w, ch]);
  }, ins);
};

/**
 * (x - mean) * scale / sqrt(variance + eps) + offset, with per-channel (last axis) vectors: the
 * per-channel factors are formed first, so the activations take three passes.
 */
const fusedBatchNorm: Delegate = ({ x, mean, variance, offset, scale }, attrs, store) => {
  const c = x!.shape[x!.shape.length - 1]!;
  const vectors = [mean!, variance!, ...(offset ? [offset] : []), ...(scale ? [scale] : [])];
  if (size(x!.shape) < MIN_DELEGATED_ELEMENTS || vectors.some((v) => v.shape.length !== 1 || v.shape[0] !== c)) return null;
  const ins = floats(store, x!, ...vectors);
  if (!ins) return null;
  const eps = Number((attrs as { varianceEpsilon?: number }).varianceEpsilon ?? 0.001);
  const key = `FusedBatchNorm:${x!.shape}:${offset ? 'o' : ''}${scale ? 's' : ''}:${eps}`;
  return run(store, key, (g) => {
    const xin = g.input('x', 'float32', [...x!.shape]);
    const [m, v] = [g.input('mean', 'float32', [c]), g.input('variance', 'float32', [c])];
    const off = offset ? g.input('offset', 'float32', [c]) : null;
    const sc = scale ? g.input('scale', 'float32', [c]) : null;
    const rstd = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [v, g.floatConst('eps', [eps], [])])])]);
    let y = g.op('Mul', [g.op('Sub', [xin, m]), sc ? g.op('Mul', [sc, rstd]) : rstd]);
    if (off) y = g.op('Add', [y, off]);
    g.rename(y, 'y');
    g.output('y', 'float32', [...x!.shape]);
  }, ins);
};

/** Softmax over the last axis (tfjs's only case). */
const softmax: Delegate = ({ logits }, attrs, store) => {
  const dim = (attrs as { dim: number }).dim;
  const rank = logits!.shape.length;
  if (size(logits!.shape) < MIN_DELEGATED_ELEMENTS || (dim !== -1 && dim !== rank - 1)) return null;
  const ins = floats(store, logits!);
  if (!ins) return null;
  return run(store, `Softmax:${logits!.shape}`, (g) => {
    g.rename(g.op('Softmax', [g.input('x', 'float32', [...logits!.shape])], { axis: int(-1) }), 'y');
    g.output('y', 'float32', [...logits!.shape]);
  }, ins);
};

/** Every kernel onnxruntime computes, by tfjs kernel name. */
export const DELEGATES: Record<string, Delegate> = {
  Conv2D: conv2D,
  FusedConv2D: fusedConv2D,
  Conv2DBackpropInput: conv2DBackpropInput,
  Conv2DBackpropFilter: conv2DBackpropFilter,
  BatchMatMul: batchMatMul,
  _FusedMatMul: fusedMatMul,
  MaxPool: maxPool,
  MaxPoolGrad: maxPoolGrad,
  Transpose: transpose,
  AddN: addN,
  FusedBatchNorm: fusedBatchNorm,
  Softmax: softmax,
  ...Object.fromEntries(Object.entries(UNARY).map(([k, f]) => [k, unaryDelegate(k, f)])),
  ...Object.fromEntries(Object.entries(BINARY).map(([k, f]) => [k, binaryDelegate(k, f)])),
  ...Object.fromEntries(Object.entries(COMPARE).map(([k, f]) => [k, binaryDelegate(k, f, 'bool')])),
  ...Object.fromEntries(Object.entries(REDUCE).map(([k, s]) => [k, reduceDelegate(k, s)])),
};

/** A tfjs kernel that tries the delegate first and falls back to tfjs's cpu kernel. */
export function withFallback(name: string, delegate: Delegate, fallback: KernelFunc): KernelFunc {
  const f: KernelFunc = (args) => {
    const store = args.backend as unknown as ArrayStore;
    return delegate(args.inputs as Record<string, TensorInfo>, args.attrs ?? {}, store) ?? fallback(args);
  };
  Object.defineProperty(f, 'name', { value: `ort${name}` });
  return f;
}
