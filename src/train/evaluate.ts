import { tf } from '../backend/tf.js';
import { BatchLoader } from '../data/loader.js';
import { evalTransform, type EvalTransformName } from '../data/image.js';
import type { Sample } from '../data/types.js';
import type { HashingModel } from '../models/hashing.js';
import { packSigns, type Codes } from '../retrieval/codes.js';
import { singleLabels, multiHotLabels, type Labels } from '../retrieval/labels.js';
import { evaluate } from '../retrieval/metrics.js';

/** Eval-time encoding inside a training run (tfjs, the weights in memory), and mAP@all. */

export interface EncodeSplitOptions {
  size: number;
  transform: EvalTransformName;
  mean: readonly number[];
  std: readonly number[];
  batch: number;
}

export async function encodeSamples(model: HashingModel, samples: readonly Sample[], opts: EncodeSplitOptions): Promise<Codes> {
  const loader = new BatchLoader(samples, {
    batchSize: opts.batch,
    size: opts.size,
    layout: 'nhwc',
    mean: opts.mean,
    std: opts.std,
    transform: (img) => evalTransform(img, opts.transform, opts.size),
  });
  const features = new Float32Array(samples.length * model.bits);
  for await (const b of loader) {
    const f = tf.tidy(() => model.encode(tf.tensor4d(b.images, b.shape)));
    const data = (await f.data()) as Float32Array;
    f.dispose();
    b.indices.forEach((i, j) => features.set(data.subarray(j * model.bits, (j + 1) * model.bits), i * model.bits));
  }
  // bit = feature > 0, the exported graph's rule (sign(0) never occurs in practice with tanh).
  return packSigns(features, samples.length, model.bits);
}

export function labelsOf(samples: readonly Sample[], classes: number): Labels {
  if (samples.every((s) => s.labels.length === 1)) return singleLabels(samples.map((s) => s.labels[0]!), classes);
  const hot = new Uint8Array(samples.length * classes);
  samples.forEach((s, i) => s.labels.forEach((c) => (hot[i * classes + c] = 1)));
  return multiHotLabels(hot, samples.length, classes);
}

/** mAP@all of query = test split against database = train split (both papers' protocol). */
export async function mapAtAll(model: HashingModel, query: readonly Sample[], db: readonly Sample[], classes: number, opts: EncodeSplitOptions): Promise<number> {
  const q = await encodeSamples(model, query, opts);
  const d = await encodeSamples(model, db, opts);
  const r = await evaluate(q, labelsOf(query, classes), d, labelsOf(db, classes));
  return r.map;
}
