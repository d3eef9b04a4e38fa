import type { Sample } from '../data/types.js';
import { FghError } from '../util/errors.js';
import { evalLoader } from './eval-loader.js';
import { readModelInfo } from './model-info.js';
import { openSession, type EpRequest } from './session.js';

/**
 * The `features` output of an exported graph for a list of images, in memory: what the
 * unsupervised baselines hash (a plain backbone's pooled features, which `fgh encode` does not
 * take because it has no codes, or a hashing graph's tanh features). Same eval transform and
 * normalisation as `fgh encode`, from the graph's metadata. Unreadable images are an error.
 */
export async function extractFeatures(
  modelFile: string,
  samples: readonly Sample[],
  opts: { ep?: EpRequest; batch?: number; threads?: number } = {},
): Promise<{ rows: number; cols: number; data: Float32Array }> {
  const { info, bytes } = readModelInfo(modelFile);
  const loader = evalLoader(samples, info, opts.batch ?? 32);
  const { session, images } = await openSession(bytes, opts.ep ?? 'cpu', opts.threads ? { threads: opts.threads } : {});
  let data = new Float32Array(0);
  let cols = 0;
  try {
    for await (const batch of loader) {
      const out = await session.run({ images: images(batch.images, batch.shape) });
      const f = out.features;
      if (!f || f.dims.length !== 2) throw new FghError(`${modelFile}: the graph has no [N, C] 'features' output`);
      if (cols === 0) {
        cols = Number(f.dims[1]);
        data = new Float32Array(samples.length * cols);
      }
      const values = f.data as Float32Array;
      batch.indices.forEach((i, j) => data.set(values.subarray(j * cols, (j + 1) * cols), i * cols));
    }
  } finally {
    await session.release();
  }
  return { rows: samples.length, cols, data };
}
