import { loadSharp } from './sharp.js';
import { errorMessage } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import { maxImagePixels } from './image.js';
import type { Sample } from './types.js';

/**
 * The header check a long run makes before its first step: every image opens, says what it is
 * (sharp's metadata reads the header only, no pixels) and declares no more pixels than decoding
 * allows (FGH_MAX_IMAGE_PIXELS), so that a bad file is found in seconds instead of when a batch or
 * an evaluation reaches it, hours in. A file whose header is fine but whose data is cut short
 * still passes; the loaders' own --skip-bad-images handles that.
 */

export interface BadImage {
  path: string;
  source?: string;
  /** Why, as the loaders say it: "unreadable image (...)", or the size over the limit. */
  reason: string;
}

/** The bad images among `samples`, in their order; `concurrency` headers are read at a time. */
export async function findBadImages(samples: readonly Sample[], opts: { concurrency?: number; progress?: Progress } = {}): Promise<BadImage[]> {
  const limit = maxImagePixels();
  const concurrency = opts.concurrency ?? 8;
  const bad: Array<BadImage & { at: number }> = [];
  const sharp = await loadSharp();
  const why = async (file: string): Promise<string | null> => {
    try {
      const m = await sharp(file, { failOn: 'error' }).metadata();
      if (!m.width || !m.height) return 'unreadable image (no image size in the header)';
      const pixels = m.width * m.height;
      return pixels > limit ? `${m.width} x ${m.height} = ${pixels} pixels, over the limit of ${limit} (FGH_MAX_IMAGE_PIXELS)` : null;
    } catch (e) {
      return `unreadable image (${errorMessage(e).split('\n')[0]})`;
    }
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < samples.length; i = next++) {
      const s = samples[i]!;
      const reason = await why(s.path);
      if (reason) bad.push({ at: i, path: s.path, ...(s.source ? { source: s.source } : {}), reason });
      opts.progress?.tick();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, samples.length)) }, worker));
  opts.progress?.finish(bad.length ? `${bad.length} bad` : 'all readable');
  return bad.sort((a, b) => a.at - b.at).map(({ at: _at, ...b }) => b);
}
