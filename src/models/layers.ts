import { tf } from '../backend/tf.js';
import type { Tensor, Tensor4D } from '../backend/tf.js';
import { float, int, ints, type GraphBuilder } from '../../exporters/graph.js';
import type { Rng } from '../util/rng.js';
import { Layer, torchValue, type ForwardContext, type Param } from './module.js';
import { defaultUniform, filled, kaimingNormalFanOut } from './init.js';
import { batchNormReluTrain, batchNormTrain } from './ops.js';

/** Registers a parameter's PyTorch-layout value as an ONNX initializer named as in PyTorch. */
export function emitParam(g: GraphBuilder, p: Param): string {
  // A module applied several times (SEMICON's shared local refine stage) emits its weights once.
  if (g.initializers.has(p.name)) return p.name;
  return g.initializer({ name: p.name, dtype: 'float32', dims: p.torchShape, data: torchValue(p) });
}

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  bias?: boolean;
  /** 'kaiming-fan-out' (torchvision ResNet) or 'default' (nn.Conv2d's own). */
  init?: 'kaiming-fan-out' | 'default';
}

/** nn.Conv2d with groups = 1, square kernel, symmetric zero padding. */
export class Conv2d extends Layer {
  readonly weight: Param;
  readonly bias: Param | null;
  readonly stride: number;
  readonly padding: number;
  constructor(
    rng: Rng,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    opts: Conv2dOptions = {},
  ) {
    super();
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    const shape = [outChannels, inChannels, kernel, kernel];
    const fanIn = inChannels * kernel * kernel;
    const w = (opts.init ?? 'kaiming-fan-out') === 'kaiming-fan-out' ? kaimingNormalFanOut(rng, shape) : defaultUniform(rng, shape, fanIn);
    this.weight = this.param('weight', shape, 'conv', w);
    this.bias = opts.bias ? this.param('bias', [outChannels], 'same', defaultUniform(rng, [outChannels], fanIn)) : null;
  }
  forward(x: Tensor): Tensor {
    const p = this.padding;
    const pad = p === 0 ? 'valid' : ([[0, 0], [p, p], [p, p], [0, 0]] as [[number, number], [number, number], [number, number], [number, number]]);
    const y = tf.conv2d(x as Tensor4D, this.weight.variable as unknown as Tensor4D, this.stride, pad);
    return this.bias ? tf.add(y, this.bias.variable) : y;
  }
  emit(g: GraphBuilder, x: string): string {
    const inputs = [x, emitParam(g, this.weight)];
    if (this.bias) inputs.push(emitParam(g, this.bias));
    const p = this.padding;
    return g.op('Conv', inputs, {
      kernel_shape: ints([this.kernel, this.kernel]),
      strides: ints([this.stride, this.stride]),
      pads: ints([p, p, p, p]),
      dilations: ints([1, 1]),
      group: int(1),
    });
  }
}

/** nn.BatchNorm2d (eps 1e-5, momentum 0.1) with running statistics. */
export class BatchNorm2d extends Layer {
  readonly weight: Param;
  readonly bias: Param;
  readonly runningMean: Param;
  readonly runningVar: Param;
  readonly numBatchesTracked: Param;
  constructor(
    readonly channels: number,
    readonly eps = 1e-5,
    readonly momentum = 0.1,
  ) {
    super();
    this.weight = this.param('weight', [channels], 'same', filled(channels, 1));
    this.bias = this.param('bias', [channels], 'same', filled(channels, 0));
    this.runningMean = this.param('running_mean', [channels], 'same', filled(channels, 0), false);
    this.runningVar = this.param('running_var', [channels], 'same', filled(channels, 1), false);
    this.numBatchesTracked = this.param('num_batches_tracked', [], 'same', filled(1, 0), false, 'int64');
  }
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    if (!ctx.training) {
      return tf.batchNorm(x, this.runningMean.variable, this.runningVar.variable, this.bias.variable, this.weight.variable, this.eps);
    }
    return batchNormTrain(x, this.weight.variable, this.bias.variable, this.eps, (mean, variance) => this.updateRunningStats(mean, variance, x.size / this.channels));
  }
  /** relu(this(x) + residual): with batch statistics, one fused kernel each way where the backend has them. */
  forwardRelu(x: Tensor, ctx: ForwardContext, residual?: Tensor): Tensor {
    if (!ctx.training) {
      const z = this.forward(x, ctx);
      return tf.relu(residual ? tf.add(z, residual) : z);
    }
    return batchNormReluTrain(x, this.weight.variable, this.bias.variable, this.eps, (mean, variance) => this.updateRunningStats(mean, variance, x.size / this.channels), residual);
  }
  /** PyTorch updates running_var with the unbiased batch variance. The ops here do not feed the
   *  loss, so recording them on a gradient tape changes no gradient. */
  private updateRunningStats(mean: Tensor, variance: Tensor, n: number): void {
    tf.tidy(() => {
      const m = this.momentum;
      const mu = mean;
      const unbiased = tf.mul(variance, n / Math.max(n - 1, 1));
      this.runningMean.variable.assign(tf.add(tf.mul(this.runningMean.variable, 1 - m), tf.mul(mu, m)));
      this.runningVar.variable.assign(tf.add(tf.mul(this.runningVar.variable, 1 - m), tf.mul(unbiased, m)));
      this.numBatchesTracked.variable.assign(tf.add(this.numBatchesTracked.variable, 1));
    });
  }
  emit(g: GraphBuilder, x: string): string {
    return g.op('BatchNormalization', [x, emitParam(g, this.weight), emitParam(g, this.bias), emitParam(g, this.runningMean), emitParam(g, this.runningVar)], {
      epsilon: float(this.eps),
    });
  }
}

export class ReLU extends Layer {
  forward(x: Tensor): Tensor {
    return tf.relu(x);
  }
  emit(g: GraphBuilder, x: string): string {
    return g.op('Relu', [x]);
  }
}

/** nn.MaxPool2d(kernel, stride, padding) with floor rounding; padded cells never win. */
export class MaxPool2d extends Layer {
  constructor(
    readonly kernel: number,
    readonly stride: number,
    readonly padding: number,
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return tf.maxPool(x as Tensor4D, this.kernel, this.stride, this.padding, 'floor');
  }
  emit(g: GraphBuilder, x: string): string {
    const p = this.padding;
    return g.op('MaxPool', [x], { kernel_shape: ints([this.kernel, this.kernel]), strides: ints([this.stride, this.stride]), pads: ints([p, p, p, p]) });
  }
}

/** AdaptiveAvgPool2d(1) followed by flatten: [N,H,W,C] -> [N,C]. */
export class GlobalAvgPool extends Layer {
  forward(x: Tensor): Tensor {
    return tf.mean(x, [1, 2]);
  }
  emit(g: GraphBuilder, x: string): string {
    return g.op('Flatten', [g.op('GlobalAveragePool', [x])], { axis: int(1) });
  }
}

/** nn.Linear, weight kept as PyTorch's [out, in]. */
export class Linear extends Layer {
  readonly weight: Param;
  readonly bias: Param | null;
  constructor(
    rng: Rng,
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias = true,
  ) {
    super();
    this.weight = this.param('weight', [outFeatures, inFeatures], 'same', defaultUniform(rng, [outFeatures, inFeatures], inFeatures));
    this.bias = bias ? this.param('bias', [outFeatures], 'same', defaultUniform(rng, [outFeatures], inFeatures)) : null;
  }
  forward(x: Tensor): Tensor {
    const y = tf.matMul(x, this.weight.variable, false, true);
    return this.bias ? tf.add(y, this.bias.variable) : y;
  }
  emit(g: GraphBuilder, x: string): string {
    const inputs = [x, emitParam(g, this.weight)];
    if (this.bias) inputs.push(emitParam(g, this.bias));
    return g.op('Gemm', inputs, { transB: int(1) });
  }
}

/** nn.Dropout: active only in training; masks come from the run's generator. Not exported. */
export class Dropout extends Layer {
  constructor(readonly p: number) {
    super();
  }
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    if (!ctx.training || ctx.noDropout || this.p === 0) return x;
    if (!ctx.rng) throw new Error('Dropout in training needs ctx.rng');
    const keep = 1 - this.p;
    const mask = new Float32Array(x.size);
    for (let i = 0; i < mask.length; i++) mask[i] = ctx.rng.next() < keep ? 1 / keep : 0;
    return tf.mul(x, tf.tensor(mask, x.shape));
  }
  emit(_g: GraphBuilder, x: string): string {
    return x;
  }
}
