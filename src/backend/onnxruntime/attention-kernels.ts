import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { int, ints, type GraphBuilder } from '../../../exporters/graph.js';
import { SIGNED_SQRT_EPS, type ChannelAttentionAttrs } from '../fused-kernels.js';
import { output, requireFloats, type ArrayStore } from './delegate.js';
import { sumLeadingRows } from './elementwise-kernels.js';

/**
 * fgh's CHANNEL_ATTENTION and its gradient (src/backend/fused-kernels.ts): SEMICON's channel
 * attention as one onnxruntime graph each way. Its attention weights, softmax(signedSqrt(a)), use
 * the composite's float32 operations in the composite's order (src/models/ops.ts).
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

/**
 * ds from dy, y and s in the order of float32 operations of tfjs's autodiff of the composite
 * (softmax, then sign * sqrt with the sign held constant, then |a|, then the scale):
 *   p = dy * y; dz = p - sum(p) * y; ds = dz * sign(a) / (sqrt(|a| + 1e-5) * 2) * (a > 0 ? 1 : -1) * scale.
 */
function signedSqrtSoftmaxGrad(g: GraphBuilder, dyIn: string, yIn: string, sIn: string, scale: number, rank: number): string {
  // Softmax: p = dy * y; dz = p - sum(p) * y.
  const p = g.op('Mul', [dyIn, yIn]);
  const sum = g.op('ReduceSum', [p, g.int64Const('axes', [rank - 1])], { keepdims: int(1) });
  const dz = g.op('Sub', [p, g.op('Mul', [sum, yIn])]);
  // sign * sqrt(u): d/du = dz * sign / (sqrt(u) * 2); d|a|/da = (a > 0 ? 1 : -1); da/ds = scale.
  const parts = signedSqrtParts(g, sIn, scale);
  const du = g.op('Div', [g.op('Mul', [dz, parts.sign]), g.op('Mul', [parts.root, g.floatConst('two', [2], [])])]);
  const positive = g.op('Cast', [g.op('Greater', [parts.a, g.floatConst('zero2', [0], [])])], { to: int(1) });
  const step = g.op('Sub', [g.op('Mul', [positive, g.floatConst('two2', [2], [])]), g.floatConst('one', [1], [])]);
  return g.op('Mul', [g.op('Mul', [du, step]), g.floatConst('scale2', [scale], [])]);
}

// ---------------------------------------------------------------------------------------------
// SEMICON's channel attention (CHANNEL_ATTENTION): the grouped projection, the split into q, k, v,
// both products and the layout changes in one graph each way. As separate kernels these were a
// third of SEMICON's step at 224 px: 18 five-dimensional transposes and 18 batched products per
// transformer application, each result allocated and copied back into JavaScript.

interface AttentionDims {
  n: number;
  h: number;
  w: number;
  c: number;
  p: number;
  m: number;
  cin: number;
  cout: number;
  attrs: ChannelAttentionAttrs;
}

function attentionDims(x: TensorInfo, attrs: ChannelAttentionAttrs): AttentionDims {
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const { groups, a, b } = attrs;
  if (c % groups || a * b !== c) throw new Error(`FghChannelAttention: ${c} channels do not split into ${groups} groups and ${a} x ${b}`);
  return { n, h, w, c, p: h * w, m: n * h * w, cin: c / groups, cout: (3 * c) / groups, attrs };
}

function readAttrs(raw: unknown): ChannelAttentionAttrs {
  const r = raw as Partial<ChannelAttentionAttrs>;
  return { groups: Number(r.groups), a: Number(r.a), b: Number(r.b), swapOut: Boolean(r.swapOut) };
}

const attentionKey = (name: string, d: AttentionDims): string => `${name}:${d.n},${d.h},${d.w},${d.c}:${d.attrs.groups},${d.attrs.a},${d.attrs.b},${d.attrs.swapOut ? 1 : 0}`;

/** [M, groups, k] rows -> [groups, M, k]. */
function byGroup(g: GraphBuilder, t: string, d: AttentionDims, k: number): string {
  return g.op('Transpose', [g.op('Reshape', [t, g.int64Const('grouped', [d.m, d.attrs.groups, k])])], { perm: ints([1, 0, 2]) });
}

/**
 * q, k, v as [N, a, P, b] from qkv NHWC: the positions stay ahead of b, so the transpose moves
 * whole runs of b floats (with P last, onnxruntime's five-dimensional transposes gathered single
 * floats and took most of the kernel's time); the products take their transposes as attributes.
 */
function splitQkv(g: GraphBuilder, qkv: string, d: AttentionDims): string[] {
  const t = g.op('Transpose', [g.op('Reshape', [qkv, g.int64Const('qkv5', [d.n, d.p, 3, d.attrs.a, d.attrs.b])])], { perm: ints([2, 0, 3, 1, 4]) });
  return [0, 1, 2].map((i) => g.op('Gather', [t, g.int64Scalar('part', i)], { axis: int(0) }));
}

const swapLast = ints([0, 1, 3, 2]);

export const channelAttentionKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { x, weight, bias } = inputs as Record<string, TensorInfo>;
  const d = attentionDims(x!, readAttrs(attrs));
  const { a, b, groups, swapOut } = d.attrs;
  const scale = b ** -0.5;
  const ins = requireFloats(store, 'FghChannelAttention', x!, weight!, bias!);
  const outs = store.engine.run(attentionKey('FghChannelAttention', d), (g) => {
    const xIn = g.input('x', 'float32', [d.n, d.h, d.w, d.c]);
    const wIn = g.input('weight', 'float32', [3 * d.c, d.cin, 1, 1]);
    const bIn = g.input('bias', 'float32', [3 * d.c]);
    // The grouped projection as the composite computes it: per group [M, cin] x [cin, cout], then + bias.
    const wg = g.op('Transpose', [g.op('Reshape', [wIn, g.int64Const('wg', [groups, d.cout, d.cin])])], { perm: ints([0, 2, 1]) });
    const yg = g.op('MatMul', [byGroup(g, xIn, d, d.cin), wg]); // [groups, M, cout]
    const proj = g.op('Reshape', [g.op('Transpose', [yg], { perm: ints([1, 0, 2]) }), g.int64Const('nhwc3', [d.n, d.h, d.w, 3 * d.c])]);
    const qkv = g.op('Add', [proj, bIn]);
    const [q, k, v] = splitQkv(g, qkv, d);
    const s = g.op('MatMul', [g.op('Transpose', [q!], { perm: swapLast }), k!]); // [N, a, b, b]
    const p = signedSqrtParts(g, s, scale);
    const y = g.op('Softmax', [g.op('Mul', [p.sign, p.root])], { axis: int(-1) });
    const oT = g.op('MatMul', [v!, g.op('Transpose', [y], { perm: swapLast })]); // (y v)^T: [N, a, P, b]
    const laid = g.op('Reshape', [g.op('Transpose', [oT], { perm: ints(swapOut ? [0, 2, 3, 1] : [0, 2, 1, 3]) }), g.int64Const('nhwc', [d.n, d.h, d.w, d.c])]);
    output(g, g.op('Add', [laid, xIn]), [d.n, d.h, d.w, d.c], 'float32', 'out');
    // Kept for the backward pass (outputs may also feed other nodes).
    output(g, qkv, [d.n, d.h, d.w, 3 * d.c], 'float32', 'qkv');
    output(g, s, [d.n, a, b, b], 'float32', 's');
    output(g, y, [d.n, a, b, b], 'float32', 'probs');
  }, ins);
  return outs.map((o) => store.store(o.shape, 'float32', o.data as Float32Array));
};

export const channelAttentionGradKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { dy, x, weight, qkv, s, y } = inputs as Record<string, TensorInfo>;
  const d = attentionDims(x!, readAttrs(attrs));
  const { a, b, groups, swapOut } = d.attrs;
  const scale = b ** -0.5;
  const ins = requireFloats(store, 'FghChannelAttentionGrad', dy!, x!, weight!, qkv!, s!, y!);
  const outs = store.engine.run(attentionKey('FghChannelAttentionGrad', d), (g) => {
    const dyIn = g.input('dy', 'float32', [d.n, d.h, d.w, d.c]);
    const xIn = g.input('x', 'float32', [d.n, d.h, d.w, d.c]);
    const wIn = g.input('weight', 'float32', [3 * d.c, d.cin, 1, 1]);
    const qkvIn = g.input('qkv', 'float32', [d.n, d.h, d.w, 3 * d.c]);
    const sIn = g.input('s', 'float32', [d.n, a, b, b]);
    const yIn = g.input('probs', 'float32', [d.n, a, b, b]);
    // Everything per (n, a) transposed, [P, b] (see splitQkv). dO^T from the output layout:
    const dOT = swapOut
      ? g.op('Transpose', [g.op('Reshape', [dyIn, g.int64Const('outL', [d.n, d.p, b, a])])], { perm: ints([0, 3, 1, 2]) })
      : g.op('Transpose', [g.op('Reshape', [dyIn, g.int64Const('outL', [d.n, d.p, a, b])])], { perm: ints([0, 2, 1, 3]) });
    const [q, k, v] = splitQkv(g, qkvIn, d);
    const dY = g.op('MatMul', [g.op('Transpose', [dOT], { perm: swapLast }), v!]); // dO v^T: [N, a, b, b]
    const dVT = g.op('MatMul', [dOT, yIn]); // (y^T dO)^T
    const dS = signedSqrtSoftmaxGrad(g, dY, yIn, sIn, scale, 4);
    const dQT = g.op('MatMul', [k!, g.op('Transpose', [dS], { perm: swapLast })]); // (dS k)^T
    const dKT = g.op('MatMul', [q!, dS]); // (dS^T q)^T
    const one = g.int64Const('one5', [1, d.n, a, d.p, b]);
    const dT = g.op('Concat', [dQT, dKT, dVT].map((t) => g.op('Reshape', [t, one])), { axis: int(0) }); // [3, N, a, P, b]
    const dqkv = g.op('Reshape', [g.op('Transpose', [dT], { perm: ints([1, 3, 0, 2, 4]) }), g.int64Const('rows3', [d.m, 3 * d.c])]);
    const dbias = g.op('Reshape', [sumLeadingRows(g, dqkv, d.m, 3 * d.c), g.int64Const('vector', [3 * d.c])]);
    // The grouped projection's gradients: dW_g = dqkv_g^T x_g, dx_g = dqkv_g W_g.
    const dqg = byGroup(g, dqkv, d, d.cout); // [groups, M, cout]
    const dw = g.op('MatMul', [g.op('Transpose', [dqg], { perm: ints([0, 2, 1]) }), byGroup(g, xIn, d, d.cin)]); // [groups, cout, cin]
    const wg = g.op('Reshape', [wIn, g.int64Const('wg', [groups, d.cout, d.cin])]);
    const dxg = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [dqg, wg])], { perm: ints([1, 0, 2]) }), g.int64Const('nhwc', [d.n, d.h, d.w, d.c])]);
    output(g, g.op('Add', [dxg, dyIn]), [d.n, d.h, d.w, d.c], 'float32', 'dx');
    output(g, g.op('Reshape', [dw, g.int64Const('wshape', [3 * d.c, d.cin, 1, 1])]), [3 * d.c, d.cin, 1, 1], 'float32', 'dweight');
    output(g, dbias, [3 * d.c], 'float32', 'dbias');
  }, ins);
  return outs.map((o) => store.store(o.shape, 'float32', o.data as Float32Array));
};
