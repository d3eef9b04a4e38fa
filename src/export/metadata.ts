import type { EvalTransform } from '../data/normalisation.js';
import { PRODUCER_NAME, packageVersion } from '../util/version.js';

export { IMAGENET_MEAN, IMAGENET_STD, type EvalTransform } from '../data/normalisation.js';
export { PRODUCER_NAME } from '../util/version.js';

/** What every exported graph records in metadata_props (cli.md), so encoding needs no flags. */
export interface GraphMetadata {
  method: 'srlh' | 'semicon' | 'backbone';
  arch: string;
  bits: number;
  inputSize: number;
  mean: readonly number[];
  std: readonly number[];
  transform: EvalTransform;
}

export function metadataProps(m: GraphMetadata): Record<string, string> {
  return {
    method: m.method,
    arch: m.arch,
    bits: String(m.bits),
    input_size: String(m.inputSize),
    mean: m.mean.join(','),
    std: m.std.join(','),
    transform: m.transform,
    producer: `${PRODUCER_NAME} ${packageVersion()}`,
  };
}
