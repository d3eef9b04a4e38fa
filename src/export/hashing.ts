import { GraphBuilder } from '../../exporters/graph.js';
import { foldBatchNorm, foldConstants, pruneDeadNodes } from '../../exporters/optimize.js';
import { encodeModel, DEFAULT_OPSET } from '../../exporters/onnx-writer.js';
import type { HashingModel } from '../models/hashing.js';
import { packageVersion } from '../util/version.js';
import { emitPackedCodes, packedBytes } from './codes.js';
import { IMAGENET_MEAN, IMAGENET_STD, metadataProps, PRODUCER_NAME, type EvalTransform } from './metadata.js';

export interface HashingExportOptions {
  inputSize?: number;
  opset?: number;
  /** Keep BatchNormalization nodes instead of folding them into the convolutions. */
  keepBatchNorm?: boolean;
  transform?: EvalTransform;
  mean?: readonly number[];
  std?: readonly number[];
}

const DEFAULT_TRANSFORM: Record<HashingModel['method'], EvalTransform> = {
  srlh: 'resize-224',
  semicon: 'resize-256-centercrop-224',
};

/**
 * The hashing model's eval forward: `images` [N,3,S,S] -> `features` (tanh) [N,bits] and
 * `codes` uint8 [N,ceil(bits/8)]. Only the eval path is emitted: no dropout, no sRLM.
 */
export function hashingGraph(model: HashingModel, opts: HashingExportOptions = {}): GraphBuilder {
  const size = opts.inputSize ?? 224;
  const g = new GraphBuilder();
  const x = g.input('images', 'float32', ['N', 3, size, size]);
  const features = model.emitFeatures(g, x);
  g.rename(features, 'features');
  const codes = emitPackedCodes(g, 'features', model.bits);
  g.rename(codes, 'codes');
  g.output('features', 'float32', ['N', model.bits]);
  g.output('codes', 'uint8', ['N', packedBytes(model.bits)]);
  pruneDeadNodes(g);
  foldConstants(g);
  if (!opts.keepBatchNorm) foldBatchNorm(g);
  return g;
}

export interface ExportedGraph {
  bytes: Uint8Array;
  nodes: number;
  initializers: number;
  opset: number;
}

export function exportHashing(model: HashingModel, opts: HashingExportOptions = {}): Uint8Array {
  return exportHashingGraph(model, opts).bytes;
}

export function exportHashingGraph(model: HashingModel, opts: HashingExportOptions = {}): ExportedGraph {
  const size = opts.inputSize ?? 224;
  const opset = opts.opset ?? DEFAULT_OPSET;
  const g = hashingGraph(model, opts);
  const bytes = encodeModel(g, {
    opset,
    graphName: `${model.method}-${model.bits}`,
    producerName: PRODUCER_NAME,
    producerVersion: packageVersion(),
    docString: `${model.method} (${model.arch}) ${model.bits}-bit hashing: tanh features and packed codes (MSB first)`,
    metadata: metadataProps({
      method: model.method,
      arch: model.arch,
      bits: model.bits,
      inputSize: size,
      mean: opts.mean ?? IMAGENET_MEAN,
      std: opts.std ?? IMAGENET_STD,
      transform: opts.transform ?? DEFAULT_TRANSFORM[model.method],
    }),
  });
  return { bytes, nodes: g.nodes.length, initializers: g.initializers.size, opset };
}
