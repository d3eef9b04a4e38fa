import { FghError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { createHashingModel } from '../models/factory.js';
import type { HashingModel } from '../models/hashing.js';
import { ResNet } from '../models/resnet.js';
import { loadModelCheckpoint, readCheckpointConfig, type CheckpointConfig } from './checkpoint.js';

/** The model a checkpoint directory holds, built from its config.json, with its weights. */

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
