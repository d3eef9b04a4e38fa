import { BatchLoader, type LoaderOptions } from '../data/loader.js';
import { evalTransform } from '../data/image.js';
import type { Sample } from '../data/types.js';
import type { ModelInfo } from './model-info.js';

/** Batches of images as an exported graph wants them: NCHW, its eval transform, size and normalisation. */
export function evalLoader(samples: readonly Sample[], info: ModelInfo, batchSize: number, extra: Partial<LoaderOptions> = {}): BatchLoader {
  return new BatchLoader(samples, {
    batchSize,
    size: info.inputSize,
    layout: 'nchw',
    mean: info.mean,
    std: info.std,
    transform: (img) => evalTransform(img, info.transform, info.inputSize),
    ...extra,
  });
}
