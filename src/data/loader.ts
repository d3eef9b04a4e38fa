import { FghError } from '../util/errors.js';
import type { Rng } from '../util/rng.js';
import { decodeRgb, maxImagePixels, normalizeInto, type Layout, type RgbImage } from './image.js';
import type { Sample } from './types.js';

/**
 * Batches of preprocessed images, prefetched: while the caller computes on batch k, batches
 * k+1..k+prefetch are being decoded (sharp decodes on its own threads), and never more, so memory
 * stays bounded whatever the dataset size.
 */

export interface Batch {
  /** Float32 images in `layout`, `size` x `size`. */
  images: Float32Array;
  shape: [number, number, number, number];
  labels: number[][];
  /** Positions of the samples in the loader's input list. */
  indices: number[];
  ids: string[];
}

export interface LoaderOptions {
  batchSize: number;
  size: number;
  layout: Layout;
  mean: readonly number[];
  std: readonly number[];
  /** Decoded RGB -> size x size RGB (an eval transform, or a random train transform). */
  transform: (img: RgbImage, sample: Sample) => RgbImage;
  /** Shuffles the order once per loader (one loader per epoch). */
  rng?: Rng;
  dropLast?: boolean;
  /** Batches decoded ahead of the consumer (default 2). */
  prefetch?: number;
  /** Skip unreadable images (counted in `skipped`) instead of failing. */
  skipBadImages?: boolean;
  /** Observes decode concurrency: called with the count in flight as each decode starts and ends. */
  onDecode?: (inFlight: number) => void;
}

export class BatchLoader {
  readonly skipped: Array<{ path: string; source?: string; reason: string }> = [];
  private readonly order: number[];
  private inFlight = 0;

  constructor(
    private readonly samples: readonly Sample[],
    private readonly opts: LoaderOptions,
  ) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new FghError(`batch size must be a positive integer, got ${opts.batchSize}`);
    // A bad FGH_MAX_IMAGE_PIXELS fails here: from decodeRgb it would skip every image.
    maxImagePixels();
    this.order = samples.map((_, i) => i);
    if (opts.rng) opts.rng.shuffle(this.order);
  }

  get batches(): number {
    const n = this.order.length / this.opts.batchSize;
    return this.opts.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  private async decodeOne(i: number): Promise<RgbImage | null> {
    const s = this.samples[i]!;
    this.inFlight++;
    this.opts.onDecode?.(this.inFlight);
    try {
      const img = this.opts.transform(await decodeRgb(s.path), s);
      if (img.width !== this.opts.size || img.height !== this.opts.size) {
        throw new Error(`internal: transform gave ${img.width}x${img.height}, expected ${this.opts.size}`);
      }
      return img;
    } catch (e) {
      if (!(e instanceof FghError)) throw e;
      if (!this.opts.skipBadImages) throw new FghError(s.source ? `${e.message} (declared at ${s.source})` : e.message);
      // The reason without the path it starts with ("unreadable image (...)", "over the pixel limit ...").
      const reason = e.message.startsWith(`${s.path}: `) ? e.message.slice(s.path.length + 2) : e.message;
      this.skipped.push({ path: s.path, ...(s.source ? { source: s.source } : {}), reason });
      return null;
    } finally {
      this.inFlight--;
      this.opts.onDecode?.(this.inFlight);
    }
  }

  private async build(k: number): Promise<Batch> {
    const { batchSize, size, layout } = this.opts;
    const idx = this.order.slice(k * batchSize, (k + 1) * batchSize);
    const imgs = await Promise.all(idx.map((i) => this.decodeOne(i)));
    const kept = idx.filter((_, j) => imgs[j] !== null);
    const images = new Float32Array(kept.length * 3 * size * size);
    let slot = 0;
    for (const img of imgs) if (img) normalizeInto(img, images, slot++, layout, this.opts.mean, this.opts.std);
    const shape: Batch['shape'] = layout === 'nhwc' ? [kept.length, size, size, 3] : [kept.length, 3, size, size];
    return { images, shape, labels: kept.map((i) => this.samples[i]!.labels), indices: kept, ids: kept.map((i) => this.samples[i]!.id) };
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Batch> {
    const total = this.batches;
    const depth = Math.max(1, this.opts.prefetch ?? 2);
    const queue: Array<Promise<Batch>> = [];
    let next = 0;
    const fill = (): void => {
      while (queue.length < depth && next < total) {
        const p = this.build(next++);
        p.catch(() => undefined); // surfaced when awaited, in order
        queue.push(p);
      }
    };
    fill();
    while (queue.length > 0) {
      const batch = await queue.shift()!;
      fill();
      if (batch.indices.length > 0) yield batch;
    }
  }
}
