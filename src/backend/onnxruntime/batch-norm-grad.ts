import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { output, requireFloats, type ArrayStore } from './delegate.js';
import { sumLeadingRows } from './elementwise-kernels.js';

/**
 * fgh's BATCH_NORM_GRAD (src/backend/fused-kernels.ts) as one onnxruntime graph: the composite
 * form makes five activation-sized tensors, each allocated and copied back into JavaScript; here
 * only dx leaves onnxruntime.
 */
export const batchNormGradKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { dy, x, mean, variance, scale } = inputs as Record<string, TensorInfo>;
  const eps = Number((attrs as { varianceEpsilon?: number }).varianceEpsilon ?? 0.001);
  const shape = x!.shape;
  const c = shape[shape.length - 1]!;
  const count = shape.reduce((a, b) => a * b, 1) / c;
  const ins = requireFloats(store, 'FghBatchNormGrad', dy!, x!, mean!, variance!, scale!);
  const key = `FghBatchNormGrad:${shape}:${eps}`;
  const outs = store.engine.run(key, (g) => {
    const [dyIn, xIn] = [g.input('dy', 'float32', [...shape]), g.input('x', 'float32', [...shape])];
    const [m, v, gamma] = [g.input('mean', 'float32', [c]), g.input('variance', 'float32', [c]), g.input('scale', 'float32', [c])];
    const rstd = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [v, g.floatConst('eps', [eps], [])])])]);
    const xhat = g.op('Mul', [g.op('Sub', [xIn, m]), rstd]);
    const vector = g.int64Const('vector', [c]);
    const dbeta = g.op('Reshape', [sumLeadingRows(g, dyIn, count, c), vector]);
    const dgamma = g.op('Reshape', [sumLeadingRows(g, g.op('Mul', [dyIn, xhat]), count, c), vector]);
    const s = g.op('Mul', [gamma, rstd]);
    const k = g.op('Div', [s, g.floatConst('minusCount', [-count], [])]);
    // dx = dy * s + (xhat * (k dgamma) + k dbeta)
    const dx = g.op('Add', [g.op('Mul', [dyIn, s]), g.op('Add', [g.op('Mul', [xhat, g.op('Mul', [k, dgamma])]), g.op('Mul', [k, dbeta])])]);
    output(g, dx, shape, 'float32', 'dx');
    output(g, dgamma, [c], 'float32', 'dscale');
    output(g, dbeta, [c], 'float32', 'doffset');
  }, ins);
  return outs.map((o) => store.store(o.shape, 'float32', o.data as Float32Array));
};

/**
 * fgh's BATCH_MOMENTS as one graph, with the operations of the composite as the onnxruntime
 * backend runs it (sums over the leading rows as a GEMM with ones): only the two [C] vectors come
 * back, where the composite returned x - mean and its square, both activation-sized.
 */
export const batchMomentsKernel: KernelFunc = ({ inputs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { x } = inputs as Record<string, TensorInfo>;
  const shape = x!.shape;
  const c = shape[shape.length - 1]!;
  const count = shape.reduce((a, b) => a * b, 1) / c;
  const ins = requireFloats(store, 'FghBatchMoments', x!);
  const outs = store.engine.run(`FghBatchMoments:${shape}`, (g) => {
    const xIn = g.input('x', 'float32', [...shape]);
    const n = g.floatConst('count', [count], []);
    const mean = g.op('Div', [sumLeadingRows(g, xIn, count, c), n]); // [1, C]
    const dev = g.op('Sub', [g.op('Reshape', [xIn, g.int64Const('rows', [count, c])]), mean]);
    const variance = g.op('Div', [sumLeadingRows(g, g.op('Mul', [dev, dev]), count, c), n]);
    const vector = g.int64Const('vector', [c]);
    output(g, g.op('Reshape', [mean, vector]), [c], 'float32', 'mean');
    output(g, g.op('Reshape', [variance, vector]), [c], 'float32', 'variance');
  }, ins);
  return outs.map((o) => store.store(o.shape, 'float32', o.data as Float32Array));
};
