import sharp from 'sharp';
import { errorMessage } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import type { Sample } from './types.js';

/**
 * The header check a long run makes before its first step: every image opens and says what it is
 * (sharp's metadata reads the header only, no pixels), so that a corrupt file is found in seconds
 * instead of when a batch or an evaluation reaches it, hours in. A file whose header is fine but
 * whose data is cut short still passes; the loaders' own --skip-bad-images handles that.
 */

export interface UnreadableImage {
  path: string;
  source?: string;
  /** What the decoder said, e.g. "Input file contains unsupported image format". */
  detail: string;
}

/** The unreadable images among `samples`, in their order; `concurrency` headers are read at a time. */
export async function findUnreadableImages(samples: readonly Sample[], opts: { concurrency?: number; progress?: Progress } = {}): Promise<UnreadableImage[]> {
  const concurrency = opts.concurrency ?? 8;
  const bad: Array<UnreadableImage & { at: number }> = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < samples.length; i = next++) {
      const s = samples[i]!;
      try {
        const m = await sharp(s.path, { failOn: 'error' }).metadata();
        if (!m.width || !m.height) throw new Error('no image size in the header');
      } catch (e) {
        bad.push({ at: i, path: s.path, ...(s.source ? { source: s.source } : {}), detail: errorMessage(e).split('\n')[0]! });
      }
      opts.progress?.tick();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, samples.length)) }, worker));
  opts.progress?.finish(bad.length ? `${bad.length} unreadable` : 'all readable');
  return bad.sort((a, b) => a.at - b.at).map(({ at: _at, ...b }) => b);
}
