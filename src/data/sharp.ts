import type Sharp from 'sharp';

let loaded: typeof Sharp | undefined;

/** sharp (libvips), loaded on first use: commands that read no image do not pay for loading it. */
export async function loadSharp(): Promise<typeof Sharp> {
  loaded ??= (await import('sharp')).default;
  return loaded;
}
