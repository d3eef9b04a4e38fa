import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { int, ints, type GraphBuilder } from '../../../exporters/graph.js';
import { floats, MIN_DELEGATED_ELEMENTS, output, requireFloats, run, size, type ArrayStore, type Delegate } from './delegate.js';

/** Elementwise kernels, reductions, transposes, batch norm and softmax as onnxruntime kernels. */


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
      output(g, y, [...x!.shape]);
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
      output(g, y, out, outType);
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
      output(g, y, out);
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
    output(g, y, perm.map((p) => x!.shape[p]!));
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
    output(g, g.op('Sum', names), first.shape);
  }, ins);
};

/**
 * (x - mean) * scale / sqrt(variance + eps) + offset, with per-channel (last axis) vectors, as
 * PyTorch's CPU kernel computes it: alpha = scale / sqrt(variance + eps) and
 * beta = offset - mean * alpha per channel, then x * alpha + beta, two passes over the activations.
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
    const alpha = sc ? g.op('Mul', [sc, rstd]) : rstd;
    const minusMeanAlpha = g.op('Neg', [g.op('Mul', [m, alpha])]);
    const beta = off ? g.op('Add', [off, minusMeanAlpha]) : minusMeanAlpha;
    output(g, g.op('Add', [g.op('Mul', [xin, alpha]), beta]), [...x!.shape]);
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
    output(g, g.op('Softmax', [g.input('x', 'float32', [...logits!.shape])], { axis: int(-1) }), logits!.shape);
  }, ins);
};

export const ELEMENTWISE_DELEGATES: Record<string, Delegate> = {
  Transpose: transpose,
  AddN: addN,
  FusedBatchNorm: fusedBatchNorm,
  Softmax: softmax,
  ...Object.fromEntries(Object.entries(UNARY).map(([k, f]) => [k, unaryDelegate(k, f)])),
  ...Object.fromEntries(Object.entries(BINARY).map(([k, f]) => [k, binaryDelegate(k, f)])),
  ...Object.fromEntries(Object.entries(COMPARE).map(([k, f]) => [k, binaryDelegate(k, f, 'bool')])),
  ...Object.fromEntries(Object.entries(REDUCE).map(([k, s]) => [k, reduceDelegate(k, s)])),
};

/** dy * (y > 0): Relu's gradient from either side of it (a Where timed slower than Cast and Mul). */
export function reluMask(g: GraphBuilder, dy: string, y: string): string {
  return g.op('Mul', [dy, g.op('Cast', [g.op('Greater', [y, g.floatConst('zero', [0], [])])], { to: int(1) })]);
}

/** fgh's RELU_GRAD: dy * (x > 0), one kernel. */
export const reluGradKernel: KernelFunc = ({ inputs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { dy, x } = inputs as Record<string, TensorInfo>;
  const shape = [...x!.shape];
  const ins = requireFloats(store, 'FghReluGrad', dy!, x!);
  const [dx] = store.engine.run(`FghReluGrad:${shape}`, (g) => {
    output(g, reluMask(g, g.input('dy', 'float32', shape), g.input('x', 'float32', shape)), shape);
  }, ins);
  return store.store(dx!.shape, 'float32', dx!.data as Float32Array);
};
