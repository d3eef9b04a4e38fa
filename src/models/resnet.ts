import type { Tensor } from '../backend/tf.js';
import type { GraphBuilder } from '../../exporters/graph.js';
import type { Rng } from '../util/rng.js';
import { Layer, Module, Sequential, type ForwardContext } from './module.js';
import { BatchNorm2d, Conv2d, GlobalAvgPool, Linear, MaxPool2d, ReLU } from './layers.js';
import type { ResNetArch } from './resnet-archs.js';

/** torchvision's ResNet-18 and ResNet-50 (v1.5: the stride sits on the 3x3 conv of a Bottleneck). */
export { RESNET_ARCHS, type ResNetArch } from './resnet-archs.js';

interface BlockSpec {
  kind: 'basic' | 'bottleneck';
  expansion: number;
  layers: [number, number, number, number];
}

export const RESNET_SPECS: Record<ResNetArch, BlockSpec> = {
  resnet18: { kind: 'basic', expansion: 1, layers: [2, 2, 2, 2] },
  resnet50: { kind: 'bottleneck', expansion: 4, layers: [3, 4, 6, 3] },
};

/** The `downsample` branch: 1x1 conv with stride, then BN. */
function downsample(rng: Rng, inplanes: number, outplanes: number, stride: number): Sequential {
  return new Sequential([new Conv2d(rng, inplanes, outplanes, 1, { stride }), new BatchNorm2d(outplanes)]);
}

export class BasicBlock extends Layer {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;
  constructor(rng: Rng, inplanes: number, planes: number, stride = 1) {
    super();
    this.conv1 = this.child('conv1', new Conv2d(rng, inplanes, planes, 3, { stride, padding: 1 }));
    this.bn1 = this.child('bn1', new BatchNorm2d(planes));
    this.conv2 = this.child('conv2', new Conv2d(rng, planes, planes, 3, { padding: 1 }));
    this.bn2 = this.child('bn2', new BatchNorm2d(planes));
    const needs = stride !== 1 || inplanes !== planes;
    this.downsample = needs ? this.child('downsample', downsample(rng, inplanes, planes, stride)) : null;
  }
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const h = this.bn1.forwardRelu(this.conv1.forward(x), ctx);
    const identity = this.downsample ? this.downsample.forward(x, ctx) : x;
    return this.bn2.forwardRelu(this.conv2.forward(h), ctx, identity);
  }
  emit(g: GraphBuilder, x: string): string {
    const h = g.op('Relu', [g.scoped('bn1', () => this.bn1.emit(g, g.scoped('conv1', () => this.conv1.emit(g, x))))]);
    const y = g.scoped('bn2', () => this.bn2.emit(g, g.scoped('conv2', () => this.conv2.emit(g, h))));
    const identity = this.downsample ? g.scoped('downsample', () => this.downsample!.emit(g, x)) : x;
    return g.op('Relu', [g.op('Add', [y, identity])]);
  }
}

export class Bottleneck extends Layer {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly downsample: Sequential | null;
  constructor(rng: Rng, inplanes: number, planes: number, stride = 1, withDownsample?: boolean) {
    super();
    const out = planes * 4;
    this.conv1 = this.child('conv1', new Conv2d(rng, inplanes, planes, 1));
    this.bn1 = this.child('bn1', new BatchNorm2d(planes));
    this.conv2 = this.child('conv2', new Conv2d(rng, planes, planes, 3, { stride, padding: 1 }));
    this.bn2 = this.child('bn2', new BatchNorm2d(planes));
    this.conv3 = this.child('conv3', new Conv2d(rng, planes, out, 1));
    this.bn3 = this.child('bn3', new BatchNorm2d(out));
    const needs = withDownsample ?? (stride !== 1 || inplanes !== out);
    this.downsample = needs ? this.child('downsample', downsample(rng, inplanes, out, stride)) : null;
  }
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    let h = this.bn1.forwardRelu(this.conv1.forward(x), ctx);
    h = this.bn2.forwardRelu(this.conv2.forward(h), ctx);
    const identity = this.downsample ? this.downsample.forward(x, ctx) : x;
    return this.bn3.forwardRelu(this.conv3.forward(h), ctx, identity);
  }
  emit(g: GraphBuilder, x: string): string {
    let h = g.op('Relu', [g.scoped('bn1', () => this.bn1.emit(g, g.scoped('conv1', () => this.conv1.emit(g, x))))]);
    h = g.op('Relu', [g.scoped('bn2', () => this.bn2.emit(g, g.scoped('conv2', () => this.conv2.emit(g, h))))]);
    const y = g.scoped('bn3', () => this.bn3.emit(g, g.scoped('conv3', () => this.conv3.emit(g, h))));
    const identity = this.downsample ? g.scoped('downsample', () => this.downsample!.emit(g, x)) : x;
    return g.op('Relu', [g.op('Add', [y, identity])]);
  }
}

/** One ResNet stage (torchvision's `_make_layer`): blocks named 0..n-1. */
export function makeStage(rng: Rng, arch: ResNetArch, inplanes: number, planes: number, blocks: number, stride: number): Sequential {
  const spec = RESNET_SPECS[arch];
  const out = planes * spec.expansion;
  const list: Layer[] = [];
  for (let i = 0; i < blocks; i++) {
    const inp = i === 0 ? inplanes : out;
    const s = i === 0 ? stride : 1;
    list.push(spec.kind === 'basic' ? new BasicBlock(rng, inp, planes, s) : new Bottleneck(rng, inp, planes, s));
  }
  return new Sequential(list);
}

export interface ResNetOptions {
  /** How many of layer1..layer4 to build (SEMICON's backbone stops after layer3). */
  stages?: 3 | 4;
  /** Build `fc` with this many outputs (a classifier); omit for a feature extractor. */
  numClasses?: number;
}

export interface ResNetFeatures {
  /** Output of the last stage, NHWC. */
  map: Tensor;
  /** Its global average pool, [N, C]. */
  pooled: Tensor;
}

/**
 * Side of the last stage's map for a square input: the 7x7/2 stem conv, the 3x3/2 max pool, then
 * three stride-2 stages (3x3 or 1x1 convs with matching padding), each floor((s - 1) / 2) + 1.
 */
export function lastMapSide(input: number): number {
  let s = input;
  for (let i = 0; i < 5; i++) s = Math.floor((s - 1) / 2) + 1;
  return s;
}

export class ResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu = new ReLU();
  readonly maxpool = new MaxPool2d(3, 2, 1);
  readonly stages: Sequential[] = [];
  readonly avgpool = new GlobalAvgPool();
  readonly fc: Linear | null;
  /** Channels of the last stage's output. */
  readonly outChannels: number;

  constructor(
    rng: Rng,
    readonly arch: ResNetArch,
    opts: ResNetOptions = {},
  ) {
    super();
    const spec = RESNET_SPECS[arch];
    this.conv1 = this.child('conv1', new Conv2d(rng, 3, 64, 7, { stride: 2, padding: 3 }));
    this.bn1 = this.child('bn1', new BatchNorm2d(64));
    const nStages = opts.stages ?? 4;
    let inplanes = 64;
    const planes = [64, 128, 256, 512];
    for (let i = 0; i < nStages; i++) {
      const stage = makeStage(rng, arch, inplanes, planes[i]!, spec.layers[i]!, i === 0 ? 1 : 2);
      this.stages.push(this.child(`layer${i + 1}`, stage));
      inplanes = planes[i]! * spec.expansion;
    }
    this.outChannels = inplanes;
    this.fc = opts.numClasses ? this.child('fc', new Linear(rng, inplanes, opts.numClasses)) : null;
  }

  /** The stem and every stage: [N,H,W,3] -> last stage map and its pooled vector. */
  features(x: Tensor, ctx: ForwardContext): ResNetFeatures {
    let h = this.maxpool.forward(this.bn1.forwardRelu(this.conv1.forward(x), ctx));
    for (const s of this.stages) h = s.forward(h, ctx);
    return { map: h, pooled: this.avgpool.forward(h) };
  }

  /** Classifier logits (needs `numClasses`). */
  logits(pooled: Tensor): Tensor {
    if (!this.fc) throw new Error('this ResNet has no fc layer');
    return this.fc.forward(pooled);
  }

  emitFeatures(g: GraphBuilder, x: string): { map: string; pooled: string } {
    let h = g.scoped('conv1', () => this.conv1.emit(g, x));
    h = g.scoped('bn1', () => this.bn1.emit(g, h));
    h = this.maxpool.emit(g, this.relu.emit(g, h));
    this.stages.forEach((s, i) => {
      h = g.scoped(`layer${i + 1}`, () => s.emit(g, h));
    });
    return { map: h, pooled: this.avgpool.emit(g, h) };
  }
}
