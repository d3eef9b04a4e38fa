import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { int, type GraphBuilder } from '../../../exporters/graph.js';
import { SIGNED_SQRT_EPS } from '../fused-kernels.js';
import { output, requireFloats, run, type ArrayStore } from './delegate.js';

/**
 * fgh's SIGNED_SQRT_SOFTMAX and its gradient (src/backend/fused-kernels.ts) as one onnxruntime
 * graph each. SEMICON's attention maps are [N, groups, d, d] whatever the image size, so at small
 * inputs the dozen elementwise kernels of the composite (each allocating its result, and each
 * result copied back into JavaScript) were most of a step. The graphs use the composite's
 * float32 operations in the composite's order.
 */

interface Parts {
  a: string;
  sign: string;
  root: string;
}

/** a = s * scale, sign(a) from comparisons (as the composite), sqrt(|a| + eps). */
function signedSqrtParts(g: GraphBuilder, s: string, scale: number): Parts {
  const a = g.op('Mul', [s, g.floatConst('scale', [scale], [])]);
  const zero = g.floatConst('zero', [0], []);
  const cast = (b: string): string => g.op('Cast', [b], { to: int(1) });
  const sign = g.op('Sub', [cast(g.op('Greater', [a, zero])), cast(g.op('Less', [a, zero]))]);
  const root = g.op('Sqrt', [g.op('Add', [g.op('Abs', [a]), g.floatConst('eps', [SIGNED_SQRT_EPS], [])])]);
  return { a, sign, root };
}

export const signedSqrtSoftmaxKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { s } = inputs as Record<string, TensorInfo>;
  const scale = Number((attrs as { scale: number }).scale);
  const shape = [...s!.shape];
  const ins = requireFloats(store, 'FghSignedSqrtSoftmax', s!);
  return run(store, `FghSignedSqrtSoftmax:${shape}:${scale}`, (g) => {
    const p = signedSqrtParts(g, g.input('s', 'float32', shape), scale);
    output(g, g.op('Softmax', [g.op('Mul', [p.sign, p.root])], { axis: int(-1) }), shape);
  }, ins);
};

export const signedSqrtSoftmaxGradKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { dy, y, s } = inputs as Record<string, TensorInfo>;
  const scale = Number((attrs as { scale: number }).scale);
  const shape = [...s!.shape];
  const ins = requireFloats(store, 'FghSignedSqrtSoftmaxGrad', dy!, y!, s!);
  return run(store, `FghSignedSqrtSoftmaxGrad:${shape}:${scale}`, (g) => {
    const [dyIn, yIn, sIn] = [g.input('dy', 'float32', shape), g.input('probs', 'float32', shape), g.input('s', 'float32', shape)];
    // Softmax: p = dy * y; dz = p - sum(p) * y.
    const p = g.op('Mul', [dyIn, yIn]);
    const sum = g.op('ReduceSum', [p, g.int64Const('axes', [shape.length - 1])], { keepdims: int(1) });
    const dz = g.op('Sub', [p, g.op('Mul', [sum, yIn])]);
    // sign * sqrt(u): d/du = dz * sign / (sqrt(u) * 2); d|a|/da = (a > 0 ? 1 : -1); da/ds = scale.
    const parts = signedSqrtParts(g, sIn, scale);
    const du = g.op('Div', [g.op('Mul', [dz, parts.sign]), g.op('Mul', [parts.root, g.floatConst('two', [2], [])])]);
    const positive = g.op('Cast', [g.op('Greater', [parts.a, g.floatConst('zero2', [0], [])])], { to: int(1) });
    const step = g.op('Sub', [g.op('Mul', [positive, g.floatConst('two2', [2], [])]), g.floatConst('one', [1], [])]);
    const ds = g.op('Mul', [g.op('Mul', [du, step]), g.floatConst('scale2', [scale], [])]);
    output(g, ds, shape);
  }, ins);
};
