import { BatchLoader } from '../data/loader.js';
import { resizeBilinear } from '../data/image.js';
import type { Sample } from '../data/types.js';
import { packSigns, type Codes } from '../retrieval/codes.js';
import { Rng } from '../util/rng.js';

/**
 * The random-projection baseline (LSH): sign(W x) with a Gaussian W, x = the image shrunk to
 * 32 x 32, normalised and mean-centred over the database. What hashing without learning gets.
 */
const SIDE = 32;
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

async function pixels(samples: readonly Sample[]): Promise<Float32Array> {
  const d = SIDE * SIDE * 3;
  const out = new Float32Array(samples.length * d);
  const loader = new BatchLoader(samples, { batchSize: 64, size: SIDE, layout: 'nhwc', mean: MEAN, std: STD, transform: (img) => resizeBilinear(img, SIDE, SIDE) });
  for await (const b of loader) b.indices.forEach((i, j) => out.set(b.images.subarray(j * d, (j + 1) * d), i * d));
  return out;
}

export async function randomProjectionCodes(query: readonly Sample[], db: readonly Sample[], bits: number, seed: number): Promise<{ query: Codes; db: Codes }> {
  const d = SIDE * SIDE * 3;
  const q = await pixels(query);
  const x = await pixels(db);
  const mean = new Float64Array(d);
  for (let i = 0; i < db.length; i++) for (let k = 0; k < d; k++) mean[k]! += x[i * d + k]! / db.length;
  const rng = new Rng(seed);
  const w = new Float32Array(bits * d);
  for (let i = 0; i < w.length; i++) w[i] = rng.normal();
  const project = (v: Float32Array, n: number): Codes => {
    const y = new Float32Array(n * bits);
    for (let i = 0; i < n; i++) {
      for (let b = 0; b < bits; b++) {
        let s = 0;
        for (let k = 0; k < d; k++) s += w[b * d + k]! * (v[i * d + k]! - mean[k]!);
        y[i * bits + b] = s;
      }
    }
    return packSigns(y, n, bits);
  };
  return { query: project(q, query.length), db: project(x, db.length) };
}
