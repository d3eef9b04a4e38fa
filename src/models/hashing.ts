import type { Tensor, Tensor2D } from '../backend/tf.js';
import type { GraphBuilder } from '../../exporters/graph.js';
import type { Module } from './module.js';
import type { ResNetArch } from './resnet.js';

export type HashMethod = 'srlh' | 'semicon';

export const HASH_METHODS: readonly HashMethod[] = ['srlh', 'semicon'];

/** What export and encoding need of a hashing model, whichever the method. */
export interface HashingModel extends Module {
  readonly method: HashMethod;
  readonly arch: ResNetArch;
  readonly bits: number;
  /** Eval forward: NHWC images -> tanh features [N, bits]. */
  encode(x: Tensor): Tensor2D;
  /** Emits the eval forward into an ONNX graph: NCHW images -> tanh features. */
  emitFeatures(g: GraphBuilder, x: string): string;
}
