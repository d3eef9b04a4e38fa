import { GraphBuilder } from '../../exporters/graph.js';
import { foldBatchNorm, foldConstants, pruneDeadNodes } from '../../exporters/optimize.js';
import type { ExportedGraph } from './hashing.js';
import { encodeModel, DEFAULT_OPSET } from '../../exporters/onnx-writer.js';
import type { ResNet } from '../models/resnet.js';
import { packageVersion } from '../util/version.js';
import { IMAGENET_MEAN, IMAGENET_STD, metadataProps, PRODUCER_NAME, type EvalTransform } from './metadata.js';

export interface BackboneExportOptions {
  inputSize?: number;
  opset?: number;
  /** Keep BatchNormalization nodes instead of folding them into the convolutions. */
  keepBatchNorm?: boolean;
  transform?: EvalTransform;
  mean?: readonly number[];
  std?: readonly number[];
}

/** The plain feature extractor: `images` [N,3,S,S] -> `features` [N,C], the pooled last stage. */
export function backboneGraph(model: ResNet, opts: BackboneExportOptions = {}): GraphBuilder {
  const size = opts.inputSize ?? 224;
  const g = new GraphBuilder();
  const x = g.input('images', 'float32', ['N', 3, size, size]);
  const { pooled } = model.emitFeatures(g, x);
  g.rename(pooled, 'features');
  g.output('features', 'float32', ['N', model.outChannels]);
  pruneDeadNodes(g);
  foldConstants(g);
  if (!opts.keepBatchNorm) foldBatchNorm(g);
  return g;
}

export function exportBackbone(model: ResNet, opts: BackboneExportOptions = {}): Uint8Array {
  return exportBackboneGraph(model, opts).bytes;
}

export function exportBackboneGraph(model: ResNet, opts: BackboneExportOptions = {}): ExportedGraph {
  const size = opts.inputSize ?? 224;
  const opset = opts.opset ?? DEFAULT_OPSET;
  const g = backboneGraph(model, opts);
  const bytes = encodeModel(g, {
    opset,
    graphName: `${model.arch}-features`,
    producerName: PRODUCER_NAME,
    producerVersion: packageVersion(),
    docString: `${model.arch} feature extractor: global-average-pooled last stage`,
    metadata: metadataProps({
      method: 'backbone',
      arch: model.arch,
      bits: 0,
      inputSize: size,
      mean: opts.mean ?? IMAGENET_MEAN,
      std: opts.std ?? IMAGENET_STD,
      transform: opts.transform ?? 'resize-256-centercrop-224',
    }),
  });
  return { bytes, nodes: g.nodes.length, initializers: g.initializers.size, opset };
}
