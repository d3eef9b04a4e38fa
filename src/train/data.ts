import { BatchLoader, type Batch } from '../data/loader.js';
import type { RgbImage } from '../data/image.js';
import type { Sample } from '../data/types.js';
import { mixSeed, Rng } from '../util/rng.js';

/**
 * Training batches in a given order, from a given batch on (a resumed epoch skips what it did),
 * with augmentation randomness drawn per (seed, epoch, position): the same image at the same
 * place of the same epoch is augmented the same way, whether or not the run was resumed.
 */
export interface EpochBatchesOptions {
  samples: readonly Sample[];
  order: readonly number[];
  batchSize: number;
  fromBatch: number;
  size: number;
  mean: readonly number[];
  std: readonly number[];
  seed: number;
  epochKey: number;
  augment: (img: RgbImage, rng: Rng) => RgbImage;
  skipBadImages?: boolean;
}

export interface EpochBatch extends Batch {
  /** Batch index within the epoch. */
  k: number;
  /** Positions (into `order`) of the batch's items. */
  positions: number[];
}

export async function* epochBatches(o: EpochBatchesOptions): AsyncGenerator<EpochBatch> {
  const start = o.fromBatch * o.batchSize;
  const positions = o.order.slice(start).map((_, j) => start + j);
  const list = positions.map((p) => ({ ...o.samples[o.order[p]!]!, position: p }));
  const loader = new BatchLoader(list, {
    batchSize: o.batchSize,
    size: o.size,
    layout: 'nhwc',
    mean: o.mean,
    std: o.std,
    transform: (img, s) => o.augment(img, new Rng(mixSeed(o.seed, o.epochKey, (s as Sample & { position: number }).position))),
    prefetch: 2,
    ...(o.skipBadImages ? { skipBadImages: true } : {}),
  });
  for await (const b of loader) {
    const pos = b.indices.map((i) => positions[i]!);
    // From the positions, not a counter: a batch whose images were all unreadable is not yielded.
    yield { ...b, k: Math.floor(pos[0]! / o.batchSize), positions: pos };
  }
}
