import sharp from 'sharp';
import { errorMessage, FghError } from '../util/errors.js';
import type { RgbImage } from './pixels.js';

/**
 * Decoding with sharp; the transforms themselves live in pixels.ts (shared with the browser page).
 * EXIF orientation is ignored, as PIL does.
 */
export * from './pixels.js';

/** Decodes any format sharp reads to 8-bit RGB (grey expanded, alpha dropped like PIL's convert('RGB')). */
export async function decodeRgb(file: string | Buffer, opts: { honourExif?: boolean } = {}): Promise<RgbImage> {
  try {
    let img = sharp(file, { failOn: 'error' });
    if (opts.honourExif) img = img.rotate();
    const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (e) {
    const where = typeof file === 'string' ? file : 'image buffer';
    throw new FghError(`${where}: unreadable image (${errorMessage(e).split('\n')[0]})`);
  }
}

