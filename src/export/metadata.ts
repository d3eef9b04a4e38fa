import { packageVersion } from '../util/version.js';

/** The eval transforms a graph can declare; `encode` reproduces them from this name alone. */
export type EvalTransform = 'resize-224' | 'resize-256-centercrop-224';

export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

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

export const PRODUCER_NAME = 'fgh';

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
