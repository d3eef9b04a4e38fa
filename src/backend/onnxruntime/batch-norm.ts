import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { GraphBuilder } from '../../../exporters/graph.js';
import { output, requireFloats, type ArrayStore } from './delegate.js';
import { reluMask, sumLeadingRows } from './elementwise-kernels.js';

/**
 * Batch norm in training mode as onnxruntime graphs: fgh's BATCH_MOMENTS, BATCH_NORM_GRAD,
 * BATCH_NORM_RELU and BATCH_NORM_RELU_GRAD (src/backend/fused-kernels.ts). Each is one call where
 * the composite of tfjs kernels makes several activation-sized results, each allocated and copied
 * back into JavaScript; the fused forms share their graph pieces with the single ones, so both
 * compute the same float32 operations in the same order.
 */

interface Dims {
  shape: number[];
  /** Channels (the last axis) and the rows above them. */
  c: number;
  count: number;
}

function dims(x: TensorInfo): Dims {
  const shape = [...x.shape];
  const c = shape[shape.length - 1]!;
  return { shape, c, count: shape.reduce((a, b) => a * b, 1) / c };
}

/** mean(x) and the biased variance over the leading rows, each [1, C]; sums as GEMMs with ones. */
function moments(g: GraphBuilder, x: string, { c, count }: Dims): [string, string] {
  const n = g.floatConst('count', [count], []);
  const mean = g.op('Div', [sumLeadingRows(g, x, count, c), n]);
  const dev = g.op('Sub', [g.op('Reshape', [x, g.int64Const('rows', [count, c])]), mean]);
  return [mean, g.op('Div', [sumLeadingRows(g, g.op('Mul', [dev, dev]), count, c), n])];
}

function rstdOf(g: GraphBuilder, variance: string, eps: number): string {
  return g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [variance, g.floatConst('eps', [eps], [])])])]);
}

/**
 * x * alpha + beta with alpha = scale / sqrt(variance + eps), beta = offset - mean * alpha per
 * channel: PyTorch's CPU arithmetic, and the onnxruntime backend's FusedBatchNorm.
 */
function normalise(g: GraphBuilder, x: string, mean: string, variance: string, scale: string, offset: string, eps: number): string {
  const alpha = g.op('Mul', [scale, rstdOf(g, variance, eps)]);
  const beta = g.op('Add', [offset, g.op('Neg', [g.op('Mul', [mean, alpha])])]);
  return g.op('Add', [g.op('Mul', [x, alpha]), beta]);
}

/**
 * dx, dscale and doffset of batch norm with batch statistics, given its output gradient dy:
 * with d = x - mean, dscale = rstd * sum(dy * d), doffset = sum(dy), and
 * dx = dy * s + d * (k * dscale * rstd) + k * doffset for s = scale * rstd, k = -s / N
 * (xhat = d * rstd is never formed: one pass fewer).
 */
function normGrad(g: GraphBuilder, dy: string, x: string, mean: string, variance: string, scale: string, eps: number, { c, count }: Dims): [string, string, string] {
  const rstd = rstdOf(g, variance, eps);
  const d = g.op('Sub', [x, mean]);
  const vector = g.int64Const('vector', [c]);
  const dbeta = g.op('Reshape', [sumLeadingRows(g, dy, count, c), vector]);
  const dgamma = g.op('Mul', [g.op('Reshape', [sumLeadingRows(g, g.op('Mul', [dy, d]), count, c), vector]), rstd]);
  const s = g.op('Mul', [scale, rstd]);
  const k = g.op('Div', [s, g.floatConst('minusCount', [-count], [])]);
  const dx = g.op('Add', [g.op('Mul', [dy, s]), g.op('Add', [g.op('Mul', [d, g.op('Mul', [g.op('Mul', [k, dgamma]), rstd])]), g.op('Mul', [k, dbeta])])]);
  return [dx, dgamma, dbeta];
}

function epsOf(attrs: unknown): number {
  return Number((attrs as { varianceEpsilon?: number } | undefined)?.varianceEpsilon ?? 0.001);
}

function stored(store: ArrayStore, outs: Array<{ shape: readonly number[]; data: unknown }>): TensorInfo[] {
  return outs.map((o) => store.store(o.shape, 'float32', o.data as Float32Array));
}

/** BATCH_NORM_GRAD: only dx leaves onnxruntime, where the composite made five activations. */
export const batchNormGradKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { dy, x, mean, variance, scale } = inputs as Record<string, TensorInfo>;
  const eps = epsOf(attrs);
  const d = dims(x!);
  const ins = requireFloats(store, 'FghBatchNormGrad', dy!, x!, mean!, variance!, scale!);
  const outs = store.engine.run(`FghBatchNormGrad:${d.shape}:${eps}`, (g) => {
    const [dyIn, xIn] = [g.input('dy', 'float32', d.shape), g.input('x', 'float32', d.shape)];
    const [m, v, gamma] = [g.input('mean', 'float32', [d.c]), g.input('variance', 'float32', [d.c]), g.input('scale', 'float32', [d.c])];
    const [dx, dgamma, dbeta] = normGrad(g, dyIn, xIn, m, v, gamma, eps, d);
    output(g, dx, d.shape, 'float32', 'dx');
    output(g, dgamma, [d.c], 'float32', 'dscale');
    output(g, dbeta, [d.c], 'float32', 'doffset');
  }, ins);
  return stored(store, outs);
};

/** BATCH_MOMENTS: only the two [C] vectors come back, where the composite returned two activations. */
export const batchMomentsKernel: KernelFunc = ({ inputs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { x } = inputs as Record<string, TensorInfo>;
  const d = dims(x!);
  const ins = requireFloats(store, 'FghBatchMoments', x!);
  const outs = store.engine.run(`FghBatchMoments:${d.shape}`, (g) => {
    const [mean, variance] = moments(g, g.input('x', 'float32', d.shape), d);
    const vector = g.int64Const('vector', [d.c]);
    output(g, g.op('Reshape', [mean, vector]), [d.c], 'float32', 'mean');
    output(g, g.op('Reshape', [variance, vector]), [d.c], 'float32', 'variance');
  }, ins);
  return stored(store, outs);
};

/** BATCH_NORM_RELU: the moments, the normalisation, the residual and Relu in one call. */
export const batchNormReluKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { x, scale, offset, residual } = inputs as Record<string, TensorInfo | undefined>;
  const eps = epsOf(attrs);
  const d = dims(x!);
  const ins = requireFloats(store, 'FghBatchNormRelu', x!, scale!, offset!, ...(residual ? [residual] : []));
  const outs = store.engine.run(`FghBatchNormRelu:${d.shape}:${eps}:${residual ? 'r' : ''}`, (g) => {
    const xIn = g.input('x', 'float32', d.shape);
    const [gamma, beta] = [g.input('scale', 'float32', [d.c]), g.input('offset', 'float32', [d.c])];
    const r = residual ? g.input('residual', 'float32', d.shape) : null;
    const [mean, variance] = moments(g, xIn, d);
    const vector = g.int64Const('vector', [d.c]);
    const [m, v] = [g.op('Reshape', [mean, vector]), g.op('Reshape', [variance, vector])];
    const z = normalise(g, xIn, m, v, gamma, beta, eps);
    output(g, g.op('Relu', [r ? g.op('Add', [z, r]) : z]), d.shape, 'float32', 'y');
    output(g, m, [d.c], 'float32', 'mean');
    output(g, v, [d.c], 'float32', 'variance');
  }, ins);
  return stored(store, outs);
};

/** BATCH_NORM_RELU_GRAD: Relu's mask and the batch-norm gradient in one call. */
export const batchNormReluGradKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { dy, x, y, mean, variance, scale } = inputs as Record<string, TensorInfo>;
  const eps = epsOf(attrs);
  const residual = !!(attrs as { residual?: boolean } | undefined)?.residual;
  const d = dims(x!);
  const ins = requireFloats(store, 'FghBatchNormReluGrad', dy!, x!, y!, mean!, variance!, scale!);
  const outs = store.engine.run(`FghBatchNormReluGrad:${d.shape}:${eps}:${residual ? 'r' : ''}`, (g) => {
    const [dyIn, xIn, yIn] = [g.input('dy', 'float32', d.shape), g.input('x', 'float32', d.shape), g.input('y', 'float32', d.shape)];
    const [m, v, gamma] = [g.input('mean', 'float32', [d.c]), g.input('variance', 'float32', [d.c]), g.input('scale', 'float32', [d.c])];
    const dz = reluMask(g, dyIn, yIn);
    const [dx, dgamma, dbeta] = normGrad(g, dz, xIn, m, v, gamma, eps, d);
    output(g, dx, d.shape, 'float32', 'dx');
    output(g, dgamma, [d.c], 'float32', 'dscale');
    output(g, dbeta, [d.c], 'float32', 'doffset');
    if (residual) output(g, dz, d.shape, 'float32', 'dresidual');
  }, ins);
  return stored(store, outs);
};
