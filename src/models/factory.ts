import { FghError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { loadModelCheckpoint, readCheckpointConfig, type CheckpointConfig } from '../weights/checkpoint.js';
import type { HashingModel, HashMethod } from './hashing.js';
import { ResNet } from './resnet.js';
import { Semicon, semiconSplit } from './semicon.js';
import { Srlh } from './srlh.js';

/** Builds models from what a checkpoint's config.json says, so no command repeats the wiring. */

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

export type LoadedModel =
  | { kind: 'hashing'; model: HashingModel; config: CheckpointConfig }
  | { kind: 'backbone'; model: ResNet; config: CheckpointConfig };

/** Reads a checkpoint directory and returns the model it holds with its weights (strict). */
export async function loadCheckpointModel(dir: string): Promise<LoadedModel> {
  const config = await readCheckpointConfig(dir);
  if (config.method === 'backbone') {
    const model = new ResNet(new Rng(0), config.arch).assignNames();
    await loadBackbone(dir, model);
    return { kind: 'backbone', model, config };
  }
  if (config.bits === null) throw new FghError(`${dir}: config.json has no "bits" for a ${config.method} checkpoint`);
  const model = createHashingModel({ method: config.method, bits: config.bits, classes: config.classes, ...(config.attentionAlpha !== undefined ? { attentionAlpha: config.attentionAlpha } : {}) });
  if (model.arch !== config.arch) throw new FghError(`${dir}: ${config.method} uses ${model.arch}, but config.json says ${config.arch}`);
  try {
    await loadModelCheckpoint(dir, model);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { kind: 'hashing', model, config };
}

/** A backbone checkpoint may carry the ImageNet classifier (`fc.*`): the extractor ignores it. */
async function loadBackbone(dir: string, model: ResNet): Promise<void> {
  try {
    const { report } = await loadModelCheckpoint(dir, model, { strict: false });
    if (report.missing.length > 0) throw new FghError(`${dir}: missing ${report.missing.length} tensor(s), e.g. ${report.missing[0]}`);
    const unexpected = report.unexpected.filter((n) => !n.startsWith('fc.'));
    if (unexpected.length > 0) throw new FghError(`${dir}: unexpected tensor(s) for ${model.arch}, e.g. ${unexpected[0]}`);
  } catch (e) {
    model.dispose();
    throw e;
  }
}
