import { BatchLoader } from '../../data/loader.js';
import { resizeBilinear } from '../../data/image.js';
import type { Sample } from '../../data/types.js';
import type { Features } from './features.js';

/**
 * The pixel features of the unsupervised baselines: each image shrunk (PIL-exact bilinear) to
 * 32 x 32 RGB, normalised with the ImageNet mean and std, flattened HWC: 3,072 values.
 */
export const PIXEL_SIDE = 32;
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

export async function pixelFeatures(samples: readonly Sample[], side = PIXEL_SIDE): Promise<Features> {
  const d = side * side * 3;
  const data = new Float32Array(samples.length * d);
  const loader = new BatchLoader(samples, { batchSize: 64, size: side, layout: 'nhwc', mean: MEAN, std: STD, transform: (img) => resizeBilinear(img, side, side) });
  for await (const b of loader) b.indices.forEach((i, j) => data.set(b.images.subarray(j * d, (j + 1) * d), i * d));
  return { rows: samples.length, cols: d, data };
}
