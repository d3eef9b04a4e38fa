import { FghError } from '../util/errors.js';

/** SEMICON's code split and attention exponent: plain numbers the CLI checks before loading TensorFlow.js. */

/** Code bits from the global and from each of the three local vectors (reference rule). */
export function semiconSplit(bits: number): { global: number; local: number } {
  const global = Math.floor(bits / 2) + (bits === 32 ? 1 : 0);
  const local = Math.floor(bits / 6);
  if (!Number.isInteger(bits) || bits < 6 || global + 3 * local !== bits) {
    throw new FghError(`SEMICON cannot make ${bits}-bit codes: its projections split bits as bits/2 global + 3 x bits/6 local (12, 24, 32, 48, 36, ...)`);
  }
  return { global, local };
}

/** The exponent of the attention mask in the authors' code (0.3 in the paper). */
export const SEMICON_ALPHA = 0.15;
