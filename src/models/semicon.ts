import { tf } from '../backend/tf.js';
import type { Tensor, Tensor2D } from '../backend/tf.js';
import { float, int, type GraphBuilder } from '../../exporters/graph.js';
import type { Rng } from '../util/rng.js';
import { Module, Sequential, type ForwardContext, type Param } from './module.js';
import { BatchNorm2d, Conv2d, GlobalAvgPool, ReLU, emitParam } from './layers.js';
import { Bottleneck, ResNet } from './resnet.js';
import { ChannelTransformer } from './channel-transformer.js';
import { defaultUniform } from './init.js';
import { detached } from './ops.js';
import { SEMICON_ALPHA, semiconSplit } from './semicon-split.js';

export { SEMICON_ALPHA, semiconSplit } from './semicon-split.js';
import type { HashingModel } from './hashing.js';

/**
 * SEMICON (aassxun/SEMICON models/SEMICON.py): ResNet-50 stages 1-3; a global refine stage
 * (layer4-like, with channel transformers) on the whole map; a suppression-enhancing attention
 * branch giving three maps; the local refine stage (shared weights) on the map weighted by each;
 * bias-free projections of the four pooled vectors concatenated, then tanh. Names follow the
 * reference state dict.
 */


/** layer4-like stage from 1024 channels: Bottleneck, Bottleneck, CT, Bottleneck, CT; plus its pool. */
class Refine extends Module {
  readonly layer4: Sequential;
  readonly avgpool = new GlobalAvgPool();
  constructor(rng: Rng) {
    super();
    const heads = Math.max(2048 / 64, 16);
    this.layer4 = this.child(
      'layer4',
      new Sequential([
        new Bottleneck(rng, 1024, 512, 2),
        new Bottleneck(rng, 2048, 512),
        new ChannelTransformer(rng, 2048, heads),
        new Bottleneck(rng, 2048, 512),
        new ChannelTransformer(rng, 2048, heads),
      ]),
    );
  }
  forward(x: Tensor, ctx: ForwardContext): { map: Tensor; pooled: Tensor } {
    const map = this.layer4.forward(x, ctx);
    return { map, pooled: this.avgpool.forward(map) };
  }
  emit(g: GraphBuilder, x: string): string {
    return this.avgpool.emit(g, g.scoped('layer4', () => this.layer4.emit(g, x)));
  }
}

/** 1x1 conv (no bias) + BN: the channel reductions between the attention branch's blocks. */
function reduce(rng: Rng, inC: number, outC: number): Sequential {
  return new Sequential([new Conv2d(rng, inC, outC, 1), new BatchNorm2d(outC)]);
}

/** The suppression-enhancing attention branch (the reference's SEM): [N,14,14,1024] -> 3 maps. */
class SuppressionAttention extends Module {
  readonly layer4: Sequential;
  readonly heads: Sequential[];
  constructor(
    rng: Rng,
    readonly alpha: number,
  ) {
    super();
    this.layer4 = this.child(
      'layer4',
      new Sequential([new Bottleneck(rng, 1024, 256), reduce(rng, 1024, 256), new Bottleneck(rng, 256, 64), reduce(rng, 256, 64), new Bottleneck(rng, 64, 16)]),
    );
    this.heads = [1, 2, 3].map((i) => this.child(`feature${i}`, new Sequential([new Conv2d(rng, 64, 1, 1), new BatchNorm2d(1), new ReLU()])));
  }

  /** Returns the three maps, NHWC [N,H,W,3]. */
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    let h = this.layer4.forward(x, ctx);
    const maps: Tensor[] = [];
    for (let i = 0; i < 3; i++) {
      const f = this.heads[i]!.forward(h, ctx);
      maps.push(f);
      if (i < 2) h = tf.mul(h, detached((t: Tensor) => suppressionMask(t, this.alpha), f));
    }
    return tf.concat(maps, 3);
  }

  emit(g: GraphBuilder, x: string): string {
    let h = g.scoped('layer4', () => this.layer4.emit(g, x));
    const maps: string[] = [];
    for (let i = 0; i < 3; i++) {
      const f = g.scoped(`feature${i + 1}`, () => this.heads[i]!.emit(g, h));
      maps.push(f);
      if (i < 2) h = g.op('Mul', [h, emitSuppressionMask(g, f, this.alpha)]);
    }
    return g.op('Concat', maps, { axis: int(1) });
  }
}

/**
 * 2 - clamp((a - mean) / std^alpha + 1, 0, 2), a = per-sample softmax over positions of the
 * (single-channel) map; mean and unbiased std over the whole batch, as the reference computes
 * them (so a sample's mask depends on the other samples of its batch). alpha: 0.15 in the
 * authors' code, 0.3 in the paper (their README: the code's value is the one to use).
 */
function suppressionMask(f: Tensor, alpha: number): Tensor {
  const [n, h, w] = f.shape as [number, number, number, number];
  const a = tf.softmax(tf.reshape(f, [n, h * w]));
  const mean = tf.mean(a);
  const centred = tf.sub(a, mean);
  const variance = tf.div(tf.sum(tf.square(centred)), Math.max(a.size - 1, 1));
  const scaled = tf.add(tf.div(centred, tf.pow(variance, alpha / 2)), 1);
  return tf.reshape(tf.sub(2, tf.clipByValue(scaled, 0, 2)), [n, h, w, 1]);
}

function emitSuppressionMask(g: GraphBuilder, f: string, alpha: number): string {
  const a = g.op('Softmax', [g.op('Flatten', [f], { axis: int(1) })], { axis: int(1) });
  const mean = g.op('ReduceMean', [a], { keepdims: int(1) });
  const centred = g.op('Sub', [a, mean]);
  const count = g.op('Cast', [g.op('Size', [a])], { to: int(1) });
  const variance = g.op('Div', [g.op('ReduceSumSquare', [centred], { keepdims: int(1) }), g.op('Sub', [count, g.floatConst('one', [1], [])])]);
  const scaled = g.op('Add', [g.op('Div', [centred, g.op('Pow', [variance, g.floatConst('power', [alpha / 2], [])])]), g.floatConst('one', [1], [])]);
  const clipped = g.op('Clip', [scaled, g.floatConst('lo', [0], []), g.floatConst('hi', [2], [])]);
  const mask = g.op('Sub', [g.floatConst('two', [2], []), clipped]);
  return g.op('Reshape', [mask, g.shapeWith([-1, 1], f, 2, 4)]);
}

export interface SemiconOptions {
  bits: number;
  /** Recorded in the checkpoint; SEMICON's network has no classifier. */
  numClasses?: number;
  /** The attention mask's exponent (default SEMICON_ALPHA). */
  alpha?: number;
}


export class Semicon extends Module implements HashingModel {
  readonly method = 'semicon' as const;
  readonly arch = 'resnet50' as const;
  readonly bits: number;
  readonly backbone: ResNet;
  readonly refineGlobal: Refine;
  readonly refineLocal: Refine;
  readonly attention: SuppressionAttention;
  readonly projections: Param[];

  constructor(rng: Rng, opts: SemiconOptions) {
    super();
    this.bits = opts.bits;
    const split = semiconSplit(opts.bits);
    this.backbone = this.child('backbone', new ResNet(rng, 'resnet50', { stages: 3 }));
    this.refineGlobal = this.child('refine_global', new Refine(rng));
    this.refineLocal = this.child('refine_local', new Refine(rng));
    this.attention = this.child('attention', new SuppressionAttention(rng, opts.alpha ?? SEMICON_ALPHA));
    const proj = (name: string, rows: number) => this.param(name, [rows, 2048], 'same', defaultUniform(rng, [rows, 2048], 2048));
    this.projections = [proj('W_G', split.global), proj('W_L1', split.local), proj('W_L2', split.local), proj('W_L3', split.local)];
    this.assignNames();
  }

  /** tanh features [N, bits] (training or eval per ctx). */
  forward(x: Tensor, ctx: ForwardContext): Tensor2D {
    const { map: out } = this.backbone.features(x, ctx);
    const pooled = [this.refineGlobal.forward(out, ctx).pooled];
    const att = this.attention.forward(out, ctx);
    for (let i = 0; i < 3; i++) pooled.push(this.refineLocal.forward(tf.mul(out, tf.slice(att, [0, 0, 0, i], [-1, -1, -1, 1])), ctx).pooled);
    const deep = pooled.map((p, i) => tf.matMul(p, this.projections[i]!.variable, false, true));
    return tf.tanh(tf.concat(deep, 1)) as Tensor2D;
  }

  encode(x: Tensor): Tensor2D {
    return tf.tidy(() => this.forward(x, { training: false }));
  }

  emitFeatures(g: GraphBuilder, x: string): string {
    const { map: out } = g.scoped('backbone', () => this.backbone.emitFeatures(g, x));
    const pooled = [g.scoped('refine_global', () => this.refineGlobal.emit(g, out))];
    const att = g.scoped('attention', () => this.attention.emit(g, out));
    for (let i = 0; i < 3; i++) {
      const map = g.op('Slice', [att, g.int64Const('start', [i]), g.int64Const('end', [i + 1]), g.int64Const('axis', [1])]);
      pooled.push(g.scoped('refine_local', () => this.refineLocal.emit(g, g.op('Mul', [out, map]))));
    }
    const deep = pooled.map((p, i) => g.op('Gemm', [p, emitParam(g, this.projections[i]!)], { transB: int(1), alpha: float(1) }));
    return g.op('Tanh', [g.op('Concat', deep, { axis: int(1) })]);
  }
}
