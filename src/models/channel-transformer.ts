import { tf } from '../backend/tf.js';
import type { Tensor } from '../backend/tf.js';
import { int, ints, type GraphBuilder } from '../../exporters/graph.js';
import type { Rng } from '../util/rng.js';
import { Layer, type ForwardContext, type Param } from './module.js';
import { BatchNorm2d, emitParam } from './layers.js';
import { defaultUniform, kaimingNormalFanOut } from './init.js';
import { fusedChannelAttention, hasFusedChannelAttention, signedSqrtSoftmax } from './ops.js';

/**
 * nn.Conv2d(in, out, 1, groups=G, bias=True). tfjs has no grouped convolution, so it runs as one
 * batched matmul over the groups; the weight keeps PyTorch's [out, in/G, 1, 1] layout.
 */
export class GroupedConv1x1 extends Layer {
  readonly weight: Param;
  readonly bias: Param;
  constructor(
    rng: Rng,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly groups: number,
  ) {
    super();
    if (inChannels % groups || outChannels % groups) throw new Error(`channels ${inChannels}->${outChannels} do not split into ${groups} groups`);
    const shape = [outChannels, inChannels / groups, 1, 1];
    this.weight = this.param('weight', shape, 'same', kaimingNormalFanOut(rng, shape));
    this.bias = this.param('bias', [outChannels], 'same', defaultUniform(rng, [outChannels], inChannels / groups));
  }
  forward(x: Tensor): Tensor {
    const [n, h, w] = x.shape as [number, number, number, number];
    const g = this.groups;
    const cin = this.inChannels / g;
    const cout = this.outChannels / g;
    const xs = tf.transpose(tf.reshape(x, [n * h * w, g, cin]), [1, 0, 2]); // [G, NHW, cin]
    const ws = tf.reshape(this.weight.variable, [g, cout, cin]);
    const y = tf.transpose(tf.matMul(xs, ws, false, true), [1, 0, 2]); // [NHW, G, cout]
    return tf.add(tf.reshape(y, [n, h, w, this.outChannels]), this.bias.variable);
  }
  emit(g: GraphBuilder, x: string): string {
    return g.op('Conv', [x, emitParam(g, this.weight), emitParam(g, this.bias)], {
      kernel_shape: ints([1, 1]),
      strides: ints([1, 1]),
      pads: ints([0, 0, 0, 0]),
      dilations: ints([1, 1]),
      group: int(this.groups),
    });
  }
}

/**
 * SEMICON's ChannelTransformer (models/SEMICON.py): attention between the channels of each of
 * `heads` groups, channels regrouped (head-major to head-minor), BN + ReLU, then attention between
 * the channels of each of `dim/heads` groups, with residual connections; the second residual is
 * the ReLU output, because the reference's `nn.ReLU(inplace=True)` overwrites the BN output.
 * NHWC here; the channel index arithmetic is PyTorch's NCHW one, so weights and outputs match.
 */
export class ChannelTransformer extends Layer {
  readonly norm: BatchNorm2d;
  readonly qkv: GroupedConv1x1;
  readonly qkv2: GroupedConv1x1;
  readonly headDim: number;
  constructor(
    rng: Rng,
    readonly dim: number,
    readonly heads: number,
  ) {
    super();
    this.headDim = dim / heads;
    this.norm = this.child('norm', new BatchNorm2d(dim));
    this.qkv = this.child('qkv', new GroupedConv1x1(rng, dim, dim * 3, heads));
    this.qkv2 = this.child('qkv2', new GroupedConv1x1(rng, dim, dim * 3, this.headDim));
  }

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const [n, h, w, c] = x.shape as [number, number, number, number];
    const p = h * w;
    const heads = this.heads;
    const d = this.headDim;
    // Step 1: within each head, attention over its d channels. qkv channel = (s*heads + head)*d + j.
    const x1 = attend(x, this.qkv, heads, d, false); // channel head*d+j
    // Regroup channels head*d+j -> j*heads+head.
    const regrouped = tf.reshape(tf.transpose(tf.reshape(x1, [n, p, heads, d]), [0, 1, 3, 2]), [n, h, w, c]);
    // The reference's ReLU works in place on the BN output, so the second residual adds relu(y).
    const y = this.norm.forwardRelu(regrouped, ctx);
    // Step 2: within each of the d groups, attention over its `heads` channels: channel (s*d + j)*heads + head.
    return attend(y, this.qkv2, d, heads, true); // channel head*d+j
  }

  emit(g: GraphBuilder, x: string): string {
    const { dim: c, heads } = this;
    const d = this.headDim;
    // Spatial dims come from the runtime shape, so the graph does not fix the input size.
    const chw = g.shapeWith([-1, c], x, 2, 4);
    const [q, k, v] = emitSplitQkv(g, g.scoped('qkv', () => this.qkv.emit(g, x)), [3, heads, d]);
    const o = g.op('MatMul', [emitAttention(g, q, k, d), v]); // [N,heads,d,P]
    const x1 = g.op('Add', [g.op('Reshape', [o, chw]), x]);
    const regrouped = g.op('Reshape', [
      g.op('Transpose', [g.op('Reshape', [x1, g.shapeWith([-1, heads, d], x, 2, 4)])], { perm: ints([0, 2, 1, 3, 4]) }),
      chw,
    ]);
    const y = g.op('Relu', [g.scoped('norm', () => this.norm.emit(g, regrouped))]);
    const [q2, k2, v2] = emitSplitQkv(g, g.scoped('qkv2', () => this.qkv2.emit(g, y)), [3, d, heads]);
    const o2 = g.op('MatMul', [emitAttention(g, q2, k2, heads), v2]); // [N,d,heads,P]
    const back = g.op('Reshape', [
      g.op('Transpose', [g.op('Reshape', [o2, g.shapeWith([-1, d, heads], x, 2, 4)])], { perm: ints([0, 2, 1, 3, 4]) }),
      chw,
    ]);
    return g.op('Add', [back, y]);
  }
}

/**
 * x + attention over the channels of each of `a` groups of `b`, from conv(x): the output channel
 * is i*b + j (swapOut: j*a + i, i < a, j < b). One fused kernel each way where the backend has
 * them, else the composite of tfjs kernels (the same float32 operations).
 */
function attend(x: Tensor, conv: GroupedConv1x1, a: number, b: number, swapOut: boolean): Tensor {
  if (hasFusedChannelAttention()) return fusedChannelAttention(x, conv.weight.variable, conv.bias.variable, { groups: conv.groups, a, b, swapOut });
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const [q, k, v] = splitQkv(conv.forward(x), [n, h * w, 3, a, b]); // each [N,a,b,P]
  const o = tf.matMul(attention(q!, k!, b), v!); // [N,a,b,P]
  return tf.add(tf.reshape(tf.transpose(o, swapOut ? [0, 3, 2, 1] : [0, 3, 1, 2]), [n, h, w, c]), x);
}

/** NHWC [N,H,W,3*A*B] whose channel is (s*A + a)*B + b -> q, k, v as [N,A,B,P]. */
function splitQkv(t: Tensor, [n, p, three, a, b]: [number, number, number, number, number]): Tensor[] {
  const r = tf.transpose(tf.reshape(t, [n, p, three, a, b]), [2, 0, 3, 4, 1]); // [3,N,A,B,P]
  return tf.unstack(r, 0);
}

/** softmax(signedSqrt(q k^T * len^-0.5)) over the last axis. */
function attention(q: Tensor, k: Tensor, len: number): Tensor {
  return signedSqrtSoftmax(tf.matMul(q, k, false, true), len ** -0.5);
}

/** NCHW [N,3*A*B,H,W] -> q, k, v as [N,A,B,P]. */
function emitSplitQkv(g: GraphBuilder, t: string, [three, a, b]: [number, number, number]): string[] {
  // Reshape's 0 copies N from the input, -1 infers P = H*W.
  const r = g.op('Transpose', [g.op('Reshape', [t, g.int64Const('shape', [0, three, a, b, -1])])], { perm: ints([1, 0, 2, 3, 4]) });
  return [0, 1, 2].map((i) => g.op('Gather', [r, g.int64Scalar('index', i)], { axis: int(0) }));
}

function emitAttention(g: GraphBuilder, q: string, k: string, len: number): string {
  const logits = g.op('Mul', [g.op('MatMul', [q, g.op('Transpose', [k], { perm: ints([0, 1, 3, 2]) })]), g.floatConst('scale', [len ** -0.5], [])]);
  const damped = g.op('Mul', [g.op('Sign', [logits]), g.op('Sqrt', [g.op('Add', [g.op('Abs', [logits]), g.floatConst('eps', [1e-5], [])])])]);
  return g.op('Softmax', [damped], { axis: int(-1) });
}
