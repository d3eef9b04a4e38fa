import { allocCodes, type Codes } from '../../src/retrieval/codes.js';
import type { Rng } from '../../src/util/rng.js';

/** A numeric `--name N` option of a bench script, or its default. */
export function numberArg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

/** `n` uniformly random codes of `bits` bits (whole 32-bit words of random bits). */
export function randomCodes(rng: Rng, n: number, bits: number): Codes {
  const c = allocCodes(bits, n);
  const words = new Uint32Array(c.data.buffer, c.data.byteOffset, c.data.length / 4);
  for (let i = 0; i < words.length; i++) words[i] = rng.nextU32();
  return c;
}
