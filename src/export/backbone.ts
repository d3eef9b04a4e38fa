import { GraphBuilder } from '../../exporters/graph.js';
import { foldBatchNorm } from '../../exporters/optimize.js';
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
}

/** The plain feature extractor: `images` [N,3,S,S] -> `features` [N,C], the pooled last stage. */
export function backboneGraph(model: ResNet, opts: BackboneExportOptions = {}): GraphBuilder {
  const size = opts.inputSize ?? 224;
  const g = new GraphBuilder();
  const x = g.input('images', 'float32', ['N', 3, size, size]);
  const { pooled } = model.emitFeatures(g, x);
  g.rename(pooled, 'features');
  g.output('features', 'float32', ['N', model.outChannels]);
  if (!opts.keepBatchNorm) foldBatchNorm(g);
  return g;
}

export function exportBackbone(model: ResNet, opts: BackboneExportOptions = {}): Uint8Array {
  const size = opts.inputSize ?? 224;
  return encodeModel(backboneGraph(model, opts), {
    opset: opts.opset ?? DEFAULT_OPSET,
    graphName: `${model.arch}-features`,
    producerName: PRODUCER_NAME,
    producerVersion: packageVersion(),
    docString: `${model.arch} feature extractor: global-average-pooled last stage`,
    metadata: metadataProps({
      method: 'backbone',
      arch: model.arch,
      bits: 0,
      inputSize: size,
      mean: IMAGENET_MEAN,
      std: IMAGENET_STD,
      transform: opts.transform ?? 'resize-256-centercrop-224',
    }),
  });
}
