import { FghError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import type { HashingModel, HashMethod } from './hashing.js';
import { Semicon, semiconSplit } from './semicon.js';
import { Srlh } from './srlh.js';

/** Builds hashing models from their method, bits and classes (what a checkpoint's config.json says), so no command repeats the wiring. */

export interface HashingModelSpec {
  method: HashMethod;
  bits: number;
  /** sRLH's classifier size; SEMICON has no classifier. */
  classes: number | null;
  seed?: number;
  /** SEMICON's attention exponent (config "attentionAlpha"; absent: the authors' 0.15). */
  attentionAlpha?: number;
}

export function createHashingModel(spec: HashingModelSpec): HashingModel {
  const rng = new Rng(spec.seed ?? 0);
  if (!Number.isInteger(spec.bits) || spec.bits < 1) throw new FghError(`bits must be a positive integer, got ${spec.bits}`);
  if (spec.method === 'srlh') {
    if (spec.classes === null || !Number.isInteger(spec.classes) || spec.classes < 1) {
      throw new FghError('an sRLH model needs its number of classes (config "classes")');
    }
    return new Srlh(rng, { bits: spec.bits, numClasses: spec.classes });
  }
  semiconSplit(spec.bits); // refuses code lengths SEMICON cannot split, with its own message
  return new Semicon(rng, { bits: spec.bits, ...(spec.classes !== null ? { numClasses: spec.classes } : {}), ...(spec.attentionAlpha !== undefined ? { alpha: spec.attentionAlpha } : {}) });
}
