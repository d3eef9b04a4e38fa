import { loadSharp } from './sharp.js';
import { errorMessage, FghError } from '../util/errors.js';
import type { RgbImage } from './pixels.js';

/**
 * Decoding with sharp; the transforms themselves live in pixels.ts (shared with the browser page).
 * EXIF orientation is ignored, as PIL does.
 */
export * from './pixels.js';

/**
 * The most pixels (width x height) an image may declare. Decoding costs about 6 bytes a pixel
 * (a 100 MP PNG of 292 KB took 589 MB) and several images decode at once, so sharp's default of
 * 268 MP lets a small file take gigabytes. 64 MP (8000 x 8000) still admits full-size photos of
 * the largest common camera sensors (61 MP); the datasets' images are around 0.2-1 MP.
 */
export const DEFAULT_MAX_IMAGE_PIXELS = 64_000_000;

/** FGH_MAX_IMAGE_PIXELS, else the default; read per call so a process can change it. */
export function maxImagePixels(): number {
  const v = process.env.FGH_MAX_IMAGE_PIXELS;
  if (v === undefined) return DEFAULT_MAX_IMAGE_PIXELS;
  const n = /^\d+$/.test(v.trim()) ? Number(v.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new FghError(`FGH_MAX_IMAGE_PIXELS must be a positive integer (pixels, width x height), got "${v}"`);
  return n;
}

/** Decodes any format sharp reads to 8-bit RGB (grey expanded, alpha dropped like PIL's convert('RGB')). */
export async function decodeRgb(file: string | Buffer, opts: { honourExif?: boolean } = {}): Promise<RgbImage> {
  const limit = maxImagePixels();
  const where = typeof file === 'string' ? file : 'image buffer';
  const sharp = await loadSharp();
  try {
    // sharp checks the limit against the header, before it allocates anything for the pixels.
    let img = sharp(file, { failOn: 'error', limitInputPixels: limit });
    if (opts.honourExif) img = img.rotate();
    const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (e) {
    const message = errorMessage(e);
    if (/exceeds pixel limit/i.test(message)) {
      const size = await sharp(file, { limitInputPixels: false })
        .metadata()
        .then((m) => (m.width && m.height ? `${m.width} x ${m.height} = ${m.width * m.height} pixels` : 'too many pixels'))
        .catch(() => 'too many pixels');
      throw new FghError(`${where}: ${size}, over the limit of ${limit} (FGH_MAX_IMAGE_PIXELS)`);
    }
    throw new FghError(`${where}: unreadable image (${message.split('\n')[0]})`);
  }
}
